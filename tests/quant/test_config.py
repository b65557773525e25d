import pytest

from gan_brevitas.errors import ConfigError
from gan_brevitas.quant.config import QuantConfig


@pytest.mark.parametrize("bits", [1, 9, 0, 16, 8.0, True, "8"])
def test_bad_bit_widths_rejected_at_construction(bits):
    with pytest.raises(ConfigError, match="weight_bits"):
        QuantConfig(weight_bits=bits)
    with pytest.raises(ConfigError, match="act_bits"):
        QuantConfig(act_bits=bits)


@pytest.mark.parametrize(
    "pair, match",
    [((0.5, 0.4), "below"), ((0.1, 0.1), "below"), ((-0.1, 0.9), r"\[0, 1\]"), ((0.0, 1.5), r"\[0, 1\]"),
     ((0.1,), "pair"), ("ab", "pair"), ((float("nan"), 0.9), r"\[0, 1\]")],
)
def test_bad_quantile_pairs_rejected(pair, match):
    with pytest.raises(ConfigError, match=match):
        QuantConfig(act_quantiles=pair)
    with pytest.raises(ConfigError, match=match):
        QuantConfig(weight_quantiles=pair)


def test_other_bad_values():
    with pytest.raises(ConfigError, match="act_scheme"):
        QuantConfig(act_scheme="affine")
    with pytest.raises(ConfigError, match="quantile_momentum"):
        QuantConfig(quantile_momentum=1.0)
    with pytest.raises(ConfigError, match="per_channel"):
        QuantConfig(per_channel="yes")
    with pytest.raises(ConfigError, match="skip"):
        QuantConfig(skip="model.1")


def test_json_round_trip_and_unknown_keys():
    cfg = QuantConfig(weight_bits=4, per_channel=True, act_range="minmax", skip=("model.26",))
    assert QuantConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(ConfigError, match="weigth_bits"):
        QuantConfig.from_dict({"weigth_bits": 4})


def test_minmax_means_full_quantile_range():
    cfg = QuantConfig(act_range="minmax", weight_range="minmax")
    assert cfg.effective_act_quantiles == (0.0, 1.0)
    assert cfg.effective_weight_quantiles == (0.0, 1.0)
    assert QuantConfig().effective_act_quantiles == (0.001, 0.999)
