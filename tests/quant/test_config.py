import pytest

from gan_brevitas.errors import ConfigError
from gan_brevitas.quant.config import QuantConfig


@pytest.mark.parametrize("bits", [1, 9, 0, 16, 8.0, True, "8"])
def test_bad_bit_widths_rejected_at_construction(bits):
    with pytest.raises(ConfigError, match="weight_bits"):
        QuantConfig.paper(weight_bits=bits)
    with pytest.raises(ConfigError, match="act_bits"):
        QuantConfig.paper(act_bits=bits)


@pytest.mark.parametrize(
    "pair, match",
    [((0.5, 0.4), "below"), ((0.1, 0.1), "below"), ((-0.1, 0.9), r"\[0, 1\]"), ((0.0, 1.5), r"\[0, 1\]"),
     ((0.1,), "pair"), ("ab", "pair"), ((float("nan"), 0.9), r"\[0, 1\]")],
)
def test_bad_quantile_pairs_rejected(pair, match):
    with pytest.raises(ConfigError, match=match):
        QuantConfig.paper(act_quantiles=pair)
    with pytest.raises(ConfigError, match=match):
        QuantConfig.paper(weight_quantiles=pair)


def test_other_bad_values():
    with pytest.raises(ConfigError, match="act_scheme"):
        QuantConfig.paper(act_scheme="affine")
    with pytest.raises(ConfigError, match="quantile_momentum"):
        QuantConfig.paper(quantile_momentum=1.0)
    with pytest.raises(ConfigError, match="per_channel"):
        QuantConfig.paper(per_channel="yes")
    with pytest.raises(ConfigError, match="skip"):
        QuantConfig.paper(skip="model.1")


def test_json_round_trip_and_unknown_keys():
    cfg = QuantConfig.paper(weight_bits=4, per_channel=True, act_range="minmax", skip=("model.26",))
    assert QuantConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(ConfigError, match="weigth_bits"):
        QuantConfig.from_dict({"weigth_bits": 4})


def test_minmax_means_full_quantile_range():
    cfg = QuantConfig.paper(act_range="minmax", weight_range="minmax")
    assert cfg.effective_act_quantiles == (0.0, 1.0)
    assert cfg.effective_weight_quantiles == (0.0, 1.0)
    assert QuantConfig.paper().effective_act_quantiles == (0.001, 0.999)


def test_per_layer_settings_validate_apply_in_order_and_round_trip():
    cfg = QuantConfig.paper(layers={"net.*": {"weight_bits": 4, "weight_quantiles": [0.01, 0.99]},
                              "net.0": {"weight_bits": 6, "weight_range": "mse"}})
    assert cfg.for_layer("net.0").weight_bits == 6 and cfg.for_layer("net.0").weight_range == "mse"
    assert cfg.for_layer("net.1").weight_bits == 4 and cfg.for_layer("net.1").weight_quantiles == (0.01, 0.99)
    assert cfg.for_layer("head").weight_bits == 8 and cfg.for_layer("head").layers == ()
    assert QuantConfig.from_json(cfg.to_json()) == cfg
    assert hash(cfg) == hash(QuantConfig.from_dict(cfg.to_dict()))
    with pytest.raises(ConfigError, match=r"layers\['net.0'\]: \['act_bits'\] cannot be set per layer"):
        QuantConfig.paper(layers={"net.0": {"act_bits": 4}})
    with pytest.raises(ConfigError, match=r"layers\['net.0'\]: weight_bits=9"):
        QuantConfig.paper(layers={"net.0": {"weight_bits": 9}})
    with pytest.raises(ConfigError, match="layers must map layer names"):
        QuantConfig.paper(layers="net.0")


def test_paper_preset_is_the_papers_scheme():
    paper = QuantConfig.paper()
    assert (paper.per_channel, paper.weight_range, paper.weight_quantiles) == (False, "quantile", (0.0001, 0.9999))
    assert (paper.act_scheme, paper.act_range, paper.act_quantiles) == ("asymmetric", "quantile", (0.001, 0.999))
    assert (paper.quantile_momentum, paper.bias_correction) == (0.99, False)
    assert QuantConfig.paper(weight_bits=4).weight_bits == 4
