"""QATOptions: the paper's defaults per model, overrides, validation, JSON round trip."""

import pytest

from gan_brevitas.errors import ConfigError
from gan_brevitas.qat.options import PAPER_DEFAULTS, QATOptions, detect_preset
from gan_brevitas import recipes


def test_paper_defaults_per_model():
    style = QATOptions.build("lsq-qat", "stylegan")
    assert (style.epochs, style.batch_size, style.lr_weights, style.lr_quant) == (200, 8, 1e-5, 1e-6)
    assert style.schedule == "lsq" and style.betas == (0.5, 0.999) and style.num_train == 10_000
    assert (style.adv_weight, style.content_weight, style.style_weight) == (0.01, 3.0, 3e4)
    sagan = QATOptions.build("lsq-qat", "sagan")
    assert (sagan.batch_size, sagan.lr_quant) == (64, 1e-7)
    cycle = QATOptions.build("lsq-qat", "cyclegan")
    assert (cycle.epochs, cycle.schedule, cycle.ma_epochs) == (100, "ma-lsq", 50)
    assert [cycle.phase(e) for e in (0, 49, 50, 99)] == ["ma", "ma", "lsq", "lsq"]
    ma = QATOptions.build("ma-qat", "stylegan")
    assert ma.schedule == "ma" and [ma.phase(e) for e in (49, 50)] == ["ma", "frozen"]
    assert set(PAPER_DEFAULTS) == {"stylegan", "sagan", "cyclegan", "generic"}


def test_overrides_and_short_runs_keep_both_phases():
    opts = QATOptions.build("lsq-qat", "cyclegan", epochs=4, lr_quant=3e-6)
    assert (opts.epochs, opts.ma_epochs, opts.lr_quant) == (4, 2, 3e-6)  # 50 of 100 -> 2 of 4
    assert QATOptions.build("ma-qat", "stylegan", epochs=8).ma_epochs == 2  # 50 of 200 -> 2 of 8
    assert QATOptions.build("ma-qat", "stylegan", epochs=8, ma_epochs=5).ma_epochs == 5
    opts = QATOptions.build("lsq-qat", "stylegan", betas=[0.9, 0.99], resume=False, out_dir="x")
    assert QATOptions.from_json(opts.to_json()) == opts


@pytest.mark.parametrize(
    "changes, fragment",
    [
        ({"epochs": 0}, "epochs must be a positive integer"),
        ({"epochs": -3}, "epochs must be a positive integer"),
        ({"loss": "l1"}, "loss='l1'"),
        ({"schedule": "ma"}, "for 'ma' use method 'ma-qat'"),
        ({"epochs": 2, "ma_epochs": 3}, "ma_epochs=3 exceeds epochs=2"),
        ({"schedule": "ma-lsq", "epochs": 2, "ma_epochs": 2}, "0 < ma_epochs < epochs"),
        ({"steps": 10}, "unknown lsq-qat option(s) ['steps']"),
        ({"resume": True}, "resume=True needs out_dir"),
        ({"betas": (0.5, 1.5)}, "betas"),
    ],
)
def test_bad_options_raise_config_error(changes, fragment):
    with pytest.raises(ConfigError) as info:
        QATOptions.build("lsq-qat", "generic", **changes)
    assert fragment in str(info.value)


def test_methods_are_registered_and_presets_detected():
    assert {"ma-qat", "lsq-qat"} <= set(recipes.method_names())
    assert detect_preset(recipes.build_generator("sagan", image_size=16, z_dim=8, conv_dim=8)) == "sagan"
    assert detect_preset(object()) == "generic"
