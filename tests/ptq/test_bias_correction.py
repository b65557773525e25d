"""Bias correction: exact on one linear layer, lower output error on a small conv net."""

import pytest
import torch
from torch import nn

from gan_brevitas import recipes
from gan_brevitas.ptq.bias_correction import correct_biases
from gan_brevitas.ptq.calibrate import calibrate_activations
from gan_brevitas.quant.config import QuantConfig
from gan_brevitas.quant.convert import quantize_model


def _accumulator(layer, x):
    """The quantized linear layer's output before its output quantizer."""
    return nn.functional.linear(layer.input_quant(x), layer.quant_weight().value, layer.bias)


@pytest.mark.parametrize("per_channel", [False, True])
def test_one_linear_layer_mean_error_is_zero_after_correction(per_channel):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 8)).eval()
    with torch.no_grad():
        model[0].weight.copy_(torch.distributions.Laplace(0.0, 0.3).sample((8, 16)))
    x = torch.randn(64, 16) * 2 + 0.5
    config = QuantConfig(weight_bits=3, per_channel=per_channel, act_range="minmax", weight_range="minmax",
                         quantize_bias=False)
    qmodel = quantize_model(model, config)
    calibrate_activations(qmodel, model, x, config, num_samples=64, progress=False)
    with torch.no_grad():
        before = (_accumulator(qmodel[0], x) - model(x)).mean(0)
        correct_biases(qmodel, model, x, num_samples=64, batch_size=16)
        after = (_accumulator(qmodel[0], x) - model(x)).mean(0)
    assert before.abs().max() > 1e-2  # 3-bit weights shift the output
    assert after.abs().max() < 1e-6
    # the correction sits in the bias: the weights did not move
    assert torch.equal(qmodel[0].weight, model[0].weight)


def _net():
    torch.manual_seed(3)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
        nn.ConvTranspose2d(16, 8, 4, 2, 1), nn.ReLU(),
        nn.Conv2d(8, 3, 3, padding=1, bias=False), nn.Tanh(),
    ).eval()


def test_bias_correction_lowers_output_error_on_a_conv_net():
    model = _net()
    x = torch.rand(32, 3, 12, 12) + 0.2
    errors = {}
    for flag in (False, True):
        q = recipes.quantize(model, "vanilla-ptq", config=QuantConfig(weight_bits=4, bias_correction=flag),
                             inputs=x, num_samples=32, progress=False)
        with torch.no_grad():
            errors[flag] = float((q(x) - model(x)).square().mean())
    assert errors[True] < 0.9 * errors[False]


def test_bias_correction_survives_save_and_load(tmp_path):
    model = _net()
    x = torch.rand(16, 3, 12, 12)
    q = recipes.quantize(model, "vanilla-ptq", config=QuantConfig(weight_bits=4, bias_correction=True),
                         inputs=x, num_samples=16, progress=False)
    recipes.save(q, tmp_path / "q.safetensors")
    loaded = recipes.load(tmp_path / "q.safetensors", model=_net())
    assert loaded.gan_brevitas.config.bias_correction
    with torch.no_grad():
        assert torch.equal(loaded(x), q(x))


def test_the_default_recipe_is_gptq_on_per_channel_mse_with_bias_correction_and_paper_stays_available():
    model = _net()
    x = torch.rand(16, 3, 12, 12)
    default = recipes.quantize(model, inputs=x, num_samples=16, progress=False)
    config = default.gan_brevitas.config
    assert default.gan_brevitas.method == "gptq"
    assert (config.per_channel, config.weight_range, config.act_range, config.bias_correction) == (True, "mse", "mse", True)
    assert config.weight_scaling == "learned"  # GPTQ rounds onto stored step sizes
    paper = recipes.quantize(model, config="paper", inputs=x, num_samples=16, progress=False)
    assert paper.gan_brevitas.config == QuantConfig.paper()
    assert paper.gan_brevitas.method == "vanilla-ptq"  # the paper's own method
    with torch.no_grad():
        reference = model(x)
        assert (default(x) - reference).square().mean() < (paper(x) - reference).square().mean()


def test_a_later_layer_absorbs_the_shift_of_an_earlier_layer_without_bias():
    """Sequential against the float network: layer 0 has no bias to correct, so layer 1's bias
    takes the shift layer 0's 3-bit weights add, and the model's mean output matches float's."""
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(16, 16, bias=False), nn.Linear(16, 8)).eval()
    with torch.no_grad():
        model[0].weight.copy_(torch.distributions.Laplace(0.0, 0.3).sample((16, 16)))
    x = torch.randn(64, 16) + 1.0
    config = QuantConfig(weight_bits=3, act_range="minmax", weight_range="minmax", quantize_bias=False)
    qmodel = quantize_model(model, config)
    calibrate_activations(qmodel, model, x, config, num_samples=64, progress=False)
    assert not qmodel[1].output_quant.is_quant_enabled  # the last layer hands its result on in float
    with torch.no_grad():
        before = (qmodel(x) - model(x)).mean(0)
        correct_biases(qmodel, model, x, num_samples=64, batch_size=64)
        after = (qmodel(x) - model(x)).mean(0)
    assert before.abs().max() > 1e-2
    assert after.abs().max() < 1e-5
