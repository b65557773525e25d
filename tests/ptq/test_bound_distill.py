"""Bound distillation: only the quantizers train, the loss falls, options are checked, and the
result saves, loads and describes like any quantized model."""

import copy

import pytest
import torch
from torch import nn

from gan_brevitas import recipes
from gan_brevitas.errors import ConfigError
from gan_brevitas.methods import BoundDistill, MixedPrecision
from gan_brevitas.ptq.bound_distill import BoundDistillOptions, distill_bounds
from gan_brevitas.ptq.mixed_precision import effective_bits
from gan_brevitas.quant.config import QuantConfig
from gan_brevitas.quant.convert import fold_for_quantization, quant_layers
from tests.helpers import dcgan_generator

X = torch.randn(16, 3, 12, 12, generator=torch.Generator().manual_seed(0))
Z = torch.randn(16, 16, generator=torch.Generator().manual_seed(0))
FAST = QuantConfig(act_range="minmax", weight_range="minmax", weight_bits=3, weight_scaling="learned",
                   bias_correction=False)


def tiny_translator(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.PReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(8, 3, 3, padding=1)).eval()


def _start(model: nn.Module) -> tuple[nn.Module, nn.Module]:
    qmodel = recipes.quantize(model, "vanilla-ptq", config=FAST, inputs=X, num_samples=16, progress=False)
    return qmodel, fold_for_quantization(model).eval()


def test_only_quantizer_parameters_train_and_the_loss_falls():
    qmodel, float_model = _start(tiny_translator())
    weights = {name: p.detach().clone() for name, p in qmodel.named_parameters() if "_quant" not in name}
    quantizers = {name: p.detach().clone() for name, p in qmodel.named_parameters() if "_quant" in name}
    assert {name.rsplit(".", 1)[-1] for name in weights} == {"weight", "bias"}
    options = BoundDistillOptions(steps=40, lr=1e-2, batch_size=16, num_samples=16, revert_if_worse=False,
                                  progress=False)
    report = distill_bounds(qmodel, float_model, X, options)
    after = dict(qmodel.named_parameters())
    assert all(torch.equal(after[name], value) for name, value in weights.items())
    assert any(not torch.equal(after[name], value) for name, value in quantizers.items())
    assert report.loss_after < 0.9 * report.loss_before
    assert report.parameters == sum(p.numel() for name, p in after.items() if "weight_quant" in name) + 2 * 4


def test_a_run_that_ends_worse_gives_the_start_back():
    qmodel, float_model = _start(tiny_translator())
    before = copy.deepcopy(qmodel.state_dict())
    options = BoundDistillOptions(steps=5, lr=0.9, batch_size=16, num_samples=16, progress=False)  # far too high
    report = distill_bounds(qmodel, float_model, X, options)
    assert report.reverted and report.loss_after == report.loss_before
    assert all(torch.equal(qmodel.state_dict()[k], v) for k, v in before.items())


def test_options_are_checked_with_a_suggestion():
    with pytest.raises(ConfigError, match=r"unknown bound-distill option 'step' \(did you mean 'steps'\?\)"):
        recipes.quantize(tiny_translator(), "bound-distill", inputs=X, step=3)
    with pytest.raises(ConfigError, match="loss must be 'output' or 'output\\+blocks'"):
        BoundDistill(loss="l1")
    with pytest.raises(ConfigError, match="lr is relative"):
        BoundDistill(lr=2.0)
    with pytest.raises(ConfigError, match="steps must be a positive integer"):
        BoundDistill(steps=0)
    with pytest.raises(ConfigError, match="refine must be one of"):
        MixedPrecision(effective_bits=5.0, refine="brecq")


@pytest.mark.parametrize("loss", ["output", "output+blocks"])
def test_result_saves_loads_and_describes(tmp_path, loss):
    model = dcgan_generator()
    qmodel = recipes.quantize(model, BoundDistill(steps=4, num_samples=8, batch_size=4, loss=loss, progress=False),
                              config=QuantConfig(weight_bits=4), inputs=Z)
    assert qmodel.gan_brevitas.method == "bound-distill"
    assert qmodel.gan_brevitas.config.weight_scaling == "learned"
    assert not hasattr(qmodel, "biases_corrected")
    recipes.save(qmodel, tmp_path / "bd.safetensors")
    loaded = recipes.load(tmp_path / "bd.safetensors", model=dcgan_generator())
    with torch.no_grad():
        assert torch.equal(loaded(Z[:4]), qmodel(Z[:4]))
    assert "method bound-distill" in recipes.describe(loaded)
    assert "weight_scaling='learned': set by bound-distill" in recipes.describe(loaded)


@pytest.mark.parametrize("refine", ["bound-distill", "ste-brecq"])
def test_mixed_precision_refined_by_bound_distillation_keeps_its_bits(tmp_path, refine):
    model = dcgan_generator()
    qmodel = recipes.quantize(model, "mixed-precision", config=QuantConfig(act_range="minmax"), inputs=Z,
                              effective_bits=5.0, bits=(4, 8), protect_ends=False, num_samples=8,
                              sensitivity_samples=4, refine=refine, refine_steps=3, progress=False)
    bits = {name: int(layer.quant_weight().bit_width) for name, layer in quant_layers(qmodel)}
    params = {name: layer.weight.numel() for name, layer in quant_layers(qmodel)}
    assert effective_bits(bits, params) <= 5.0
    config = qmodel.gan_brevitas.config
    if refine == "bound-distill":
        assert qmodel.bound_distill_report.steps == 3 and config.weight_scaling == "learned"
    else:
        assert [block.steps for block in qmodel.brecq_report.blocks] == [3] * len(qmodel.brecq_report.blocks)
    recipes.save(qmodel, tmp_path / "mp.safetensors")
    loaded = recipes.load(tmp_path / "mp.safetensors", model=dcgan_generator())
    assert {name: int(layer.quant_weight().bit_width) for name, layer in quant_layers(loaded)} == bits
    with torch.no_grad():
        assert torch.equal(loaded(Z[:4]), qmodel(Z[:4]))
