import copy

import pytest
import torch
from torch import nn

from gan_brevitas import QuantConfig, recipes
from gan_brevitas.errors import CalibrationError, ConfigError, ConversionError
from gan_brevitas.quant.convert import fold_batch_norms, quant_layers
from tests.helpers import dcgan_generator, relative_error

Z = torch.randn(64, 16, generator=torch.Generator().manual_seed(1))


def _ptq(model, config, inputs=Z, n=32):
    return recipes.quantize(model, "vanilla-ptq", config=config, inputs=inputs, num_samples=n, progress=False)


def test_batchnorm_folding_is_exact():
    model = dcgan_generator()
    folded = fold_batch_norms(copy.deepcopy(model))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    with torch.no_grad():
        torch.testing.assert_close(folded(Z), model(Z), atol=1e-5, rtol=1e-5)


def test_dcgan_user_generator_w8_is_close_and_much_closer_than_w4():
    model = dcgan_generator()
    with torch.no_grad():
        ref = model(Z)
        err8 = relative_error(_ptq(model, QuantConfig.paper(weight_bits=8))(Z), ref)
        err4 = relative_error(_ptq(model, QuantConfig.paper(weight_bits=4))(Z), ref)
    assert err8 < 0.05
    assert err8 < 0.5 * err4


def test_every_compute_layer_has_input_and_output_quantizers():
    qmodel = _ptq(dcgan_generator(), QuantConfig.paper())
    layers = dict(quant_layers(qmodel))
    assert sorted(layers) == ["1", "4", "7"]
    for layer in layers.values():
        assert layer.input_quant.is_quant_enabled and layer.output_quant.is_quant_enabled
    table = recipes.describe(qmodel)
    assert "QuantConvTranspose2d" in table and "Tanh" in table


def test_quantizing_twice_leaves_the_float_generator_bit_identical():
    model = dcgan_generator()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _ptq(model, QuantConfig.paper(weight_bits=8))
    _ptq(model, QuantConfig.paper(weight_bits=4, per_channel=True))
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(isinstance(m, nn.BatchNorm2d) for m in (model[2], model[5]))


class HeavyTailed(nn.Module):
    """A hidden layer with one outlier unit (60x larger than the rest) whose values a
    saturating nonlinearity then squashes: the heavy tail of the activation distribution
    carries almost no information, so min-max ranges waste the grid on it."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.fc = nn.Linear(512, 512)
        self.out = nn.Linear(512, 256)
        with torch.no_grad():
            self.fc.weight[:1].mul_(60)

    def forward(self, z):
        return torch.tanh(self.out(torch.tanh(self.fc(z))))


def test_quantile_ranges_beat_min_max_on_heavy_tailed_activations():
    model = HeavyTailed().eval()
    z = torch.randn(256, 512, generator=torch.Generator().manual_seed(5))
    # Per-channel weights, so the outlier unit's weight row does not dominate the comparison.
    minmax = QuantConfig.paper(act_range="minmax", per_channel=True)
    quantile = QuantConfig.paper(act_range="quantile", act_quantiles=(0.001, 0.999), per_channel=True)
    with torch.no_grad():
        ref = model(z)
        err_minmax = relative_error(_ptq(model, minmax, z, 200)(z), ref)
        err_quantile = relative_error(_ptq(model, quantile, z, 200)(z), ref)
    assert err_quantile < 0.85 * err_minmax


def test_skip_keeps_layers_float():
    qmodel = _ptq(dcgan_generator(), QuantConfig.paper(skip=("7", "ConvTranspose2d_nomatch")))
    assert [name for name, _ in quant_layers(qmodel)] == ["1", "4"]
    assert "config.skip" in recipes.describe(qmodel)


def test_sampler_and_iterable_inputs_work_like_a_tensor():
    model = dcgan_generator()
    gen = torch.Generator().manual_seed(1)
    q_sampler = _ptq(model, QuantConfig.paper(), inputs=lambda b: torch.randn(b, 16, generator=gen))
    q_iter = _ptq(model, QuantConfig.paper(), inputs=[Z[:10], Z[10:40]])
    with torch.no_grad():
        assert relative_error(q_sampler(Z), model(Z)) < 0.05
        assert relative_error(q_iter(Z), model(Z)) < 0.05


def test_empty_calibration_data_is_an_error():
    with pytest.raises(CalibrationError, match="empty"):
        _ptq(dcgan_generator(), QuantConfig.paper(), inputs=[])
    with pytest.raises(CalibrationError, match="empty"):
        _ptq(dcgan_generator(), QuantConfig.paper(), inputs=torch.empty(0, 16))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_calibration_data_is_an_error(bad):
    z = Z.clone()
    z[3, 2] = bad
    with pytest.raises(CalibrationError, match="batch 3 contains 1 NaN/Inf"):
        _ptq(dcgan_generator(), QuantConfig.paper(), inputs=z)


def test_bad_method_config_and_model_errors():
    with pytest.raises(ConfigError, match="unknown method 'ptq'"):
        recipes.quantize(dcgan_generator(), "ptq", inputs=Z)
    with pytest.raises(ConfigError, match="inputs"):
        recipes.quantize(dcgan_generator(), "vanilla-ptq")
    with pytest.raises(ConfigError, match="QuantConfig"):
        recipes.quantize(dcgan_generator(), "vanilla-ptq", config={"weight_bits": 4}, inputs=Z)
    with pytest.raises(ConversionError, match="no Conv2d"):
        _ptq(nn.Sequential(nn.Tanh()), QuantConfig.paper())
    qmodel = _ptq(dcgan_generator(), QuantConfig.paper())
    with pytest.raises(ConversionError, match="already quantized"):
        _ptq(qmodel, QuantConfig.paper())


def test_config_fields_can_be_given_as_keywords():
    qmodel = recipes.quantize(dcgan_generator(), "vanilla-ptq", inputs=Z, num_samples=4, progress=False,
                              weight_bits=4, per_channel=True)
    assert qmodel.gan_brevitas.config.weight_bits == 4 and qmodel.gan_brevitas.config.per_channel
    with pytest.raises(ConfigError, match="weight_bits=1"):
        recipes.quantize(dcgan_generator(), "vanilla-ptq", inputs=Z, weight_bits=1)
