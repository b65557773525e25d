"""GPTQ / Qronos: weights stay on the PTQ grid, the first layer's output error on the
calibration inputs falls below nearest rounding, on a ConvTranspose too (Brevitas turns those
away; a grouped one is named as left at nearest rounding), and the result saves, loads and keeps a
mixed-precision budget."""

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from gan_brevitas import recipes
from gan_brevitas.errors import ConfigError
from gan_brevitas.methods import GPTQ
from gan_brevitas.ptq.gptq import NEVER_RAN
from gan_brevitas.ptq.mixed_precision import effective_bits
from gan_brevitas.quant.config import QuantConfig
from gan_brevitas.quant.convert import quant_layers
from tests.helpers import dcgan_generator

_NOISE = torch.Generator().manual_seed(0)
# Smooth images: neighbouring pixels correlate, as in photos (on white noise the layer Hessians
# are diagonal and GPTQ rounds to nearest).
X = F.interpolate(torch.randn(32, 3, 4, 4, generator=_NOISE), size=12, mode="bilinear") + 0.05 * torch.randn(
    32, 3, 12, 12, generator=_NOISE)
Z = torch.randn(16, 16, generator=torch.Generator().manual_seed(0))
W4 = QuantConfig(weight_bits=4, bias_correction=False)


def tiny_translator(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.PReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
                         nn.ConvTranspose2d(16, 3, 4, 2, 1)).eval()


def _first_layer_error(qmodel: nn.Module, model: nn.Module) -> float:
    """Squared error, on the quantized calibration inputs, of the first conv with quantized
    weights vs with the float weights: what GPTQ minimises."""
    layer = next(layer for _, layer in quant_layers(qmodel))
    with torch.no_grad():
        x = layer.input_quant(X)
        x = getattr(x, "value", x)
        out = F.conv2d(x, layer.quant_weight().value, padding=1)
        return float(out.sub(F.conv2d(x, model[0].weight, padding=1)).pow(2).mean())


def _last_layer_error(qmodel: nn.Module, model: nn.Module) -> float:
    """The same for the last layer, a ConvTranspose, on the input the quantized model gives it."""
    layer = qmodel[4]
    with torch.no_grad():
        x = layer.input_quant(qmodel[:4](X))
        x = getattr(x, "value", x)
        out = F.conv_transpose2d(x, layer.quant_weight().value, stride=2, padding=1)
        return float(out.sub(F.conv_transpose2d(x, model[4].weight, stride=2, padding=1)).pow(2).mean())


@pytest.mark.parametrize("method", ["gptq", "qronos"])
def test_rounding_beats_nearest_on_the_same_grid(method):
    model = tiny_translator()
    nearest = recipes.quantize(model, "vanilla-ptq", config=W4, weight_scaling="learned", inputs=X, num_samples=32,
                               progress=False)
    rounded = recipes.quantize(model, method, config=W4, inputs=X, num_samples=32, progress=False)
    for (name, a), (_, b) in zip(quant_layers(nearest), quant_layers(rounded)):
        qa, qb = a.quant_weight(), b.quant_weight()
        assert torch.equal(qa.scale, qb.scale), name  # the grid did not move
        codes = qb.value / qb.scale
        assert torch.allclose(codes, codes.round(), atol=1e-4), name
        assert -8 <= codes.round().min() and codes.round().max() <= 7, name
    changed = [name for (name, a), (_, b) in zip(quant_layers(nearest), quant_layers(rounded))
               if not torch.equal(a.quant_weight().value, b.quant_weight().value)]
    assert changed == ["0", "2", "4"]
    assert _first_layer_error(rounded, model) < 0.9 * _first_layer_error(nearest, model)
    assert _last_layer_error(rounded, model) < 0.5 * _last_layer_error(nearest, model)  # nearest: 3.5x higher
    assert rounded[4].weight.is_contiguous()  # the output-major storage used while rounding is undone
    report = rounded.gptq_report
    assert (report.algorithm, report.rounded, report.nearest, report.samples) == (method, ["0", "2", "4"], {}, 32)


def test_a_grouped_conv_transpose_keeps_nearest_rounding():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.ConvTranspose2d(8, 4, 4, 2, 1, groups=2)).eval()
    per_tensor = QuantConfig(weight_bits=4, per_channel=False, bias_correction=False)  # Brevitas's per-channel
    nearest = recipes.quantize(model, "vanilla-ptq", config=per_tensor, weight_scaling="learned", inputs=X,
                               progress=False)  # grid does not fit a grouped ConvTranspose
    rounded = recipes.quantize(model, "gptq", config=per_tensor, inputs=X, progress=False)
    assert rounded.gptq_report.rounded == ["0"]
    assert list(rounded.gptq_report.nearest) == ["2"]
    assert "ConvTranspose2d with groups > 1: not rounded this way" in rounded.gptq_report.nearest["2"]
    assert torch.equal(rounded[2].quant_weight().value, nearest[2].quant_weight().value)


def test_a_grid_recomputed_from_the_weights_is_refused():
    with pytest.raises(ConfigError, match="gptq rounds every weight onto a fixed grid"):
        recipes.quantize(tiny_translator(), "gptq", inputs=X, weight_scaling="stats")
    with pytest.raises(ConfigError, match="algorithm must be one of"):
        GPTQ(algorithm="gpfq")
    with pytest.raises(ConfigError, match="batch_size must be a positive integer"):
        GPTQ(batch_size=0)


@pytest.mark.parametrize("method", ["gptq", "qronos"])
def test_result_saves_loads_and_describes(tmp_path, method):
    model = tiny_translator()
    qmodel = recipes.quantize(model, method, config=QuantConfig(weight_bits=4), inputs=X, num_samples=16,
                              progress=False)
    assert not any("weight_orig" in key for key in qmodel.state_dict())  # Qronos's float copy is gone
    recipes.save(qmodel, tmp_path / "q.safetensors")
    loaded = recipes.load(tmp_path / "q.safetensors", model=tiny_translator())
    with torch.no_grad():
        assert torch.equal(loaded(X[:4]), qmodel(X[:4]))
    assert f"method {method}" in recipes.describe(loaded)
    assert f"weight_scaling='learned': set by {method}" in recipes.describe(loaded)
    recipes.export(qmodel, tmp_path / "q.onnx", "onnxruntime", example_input=X[:1])
    session = ort.InferenceSession(str(tmp_path / "q.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: X[:1].numpy()})[0]
    with torch.no_grad():
        expected = qmodel(X[:1]).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)  # the rounded weights are what runs


class _WithUnusedBranch(nn.Module):
    """A translator with a layer its forward never calls (as StyleGAN's blocks above the
    output size)."""

    def __init__(self) -> None:
        super().__init__()
        self.body, self.unused = tiny_translator(), nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x):
        return self.body(x)


def test_a_layer_that_never_ran_is_saved_and_loads_back(tmp_path):
    torch.manual_seed(0)
    qmodel = recipes.quantize(_WithUnusedBranch(), inputs=X, num_samples=16, progress=False)
    assert qmodel.gptq_report.nearest == {"unused": NEVER_RAN}
    recipes.save(qmodel, tmp_path / "q.safetensors")
    torch.manual_seed(0)
    loaded = recipes.load(tmp_path / "q.safetensors", model=_WithUnusedBranch())
    with torch.no_grad():
        assert torch.equal(loaded.unused.quant_weight().value, qmodel.unused.quant_weight().value)
        assert torch.equal(loaded(X[:4]), qmodel(X[:4]))


def test_mixed_precision_refined_by_gptq_keeps_its_budget():
    qmodel = recipes.quantize(dcgan_generator(), "mixed-precision", config=QuantConfig(act_range="minmax"),
                              inputs=Z, effective_bits=5.0, bits=(4, 8), protect_ends=False, num_samples=8,
                              sensitivity_samples=4, refine="gptq", progress=False)
    bits = {name: int(layer.quant_weight().bit_width) for name, layer in quant_layers(qmodel)}
    params = {name: layer.weight.numel() for name, layer in quant_layers(qmodel)}
    assert effective_bits(bits, params) <= 5.0
    assert qmodel.gan_brevitas.config.weight_scaling == "learned"
    assert qmodel.gptq_report.algorithm == "gptq"


def test_a_layer_with_too_few_input_rows_keeps_nearest_rounding(caplog):
    nearest = recipes.quantize(dcgan_generator(), "vanilla-ptq", weight_bits=4, weight_scaling="learned", inputs=Z,
                               progress=False)
    with caplog.at_level("WARNING", logger="gan_brevitas.ptq.gptq"):
        rounded = recipes.quantize(dcgan_generator(), "gptq", weight_bits=4, inputs=Z, progress=False)
    report = rounded.gptq_report
    assert report.rounded == ["7"] and set(report.nearest) == {"1", "4"}  # 16 latents: 4096 rows for 256 columns
    assert "16 calibration input rows for 16 weight columns" in report.nearest["1"]  # a 16-value latent, 16 latents
    assert "give more calibration inputs" in caplog.text
    assert torch.equal(rounded.get_submodule("1").quant_weight().value, nearest.get_submodule("1").quant_weight().value)
    enough = recipes.quantize(dcgan_generator(), "gptq", weight_bits=4, inputs=torch.randn(64, 16), progress=False)
    assert enough.gptq_report.rounded == ["1", "4", "7"]


def test_hessians_that_would_not_fit_in_memory_are_refused_up_front(monkeypatch):
    from gan_brevitas import limits
    from gan_brevitas.errors import ResourceLimitError

    monkeypatch.setattr(limits, "available_memory_bytes", lambda: 1000)  # 27^2 + 144^2 + 256^2 floats do not fit
    with pytest.raises(ResourceLimitError, match=r"gptq's layer Hessians \(3 layers.*256 x 256.*vanilla-ptq"):
        recipes.quantize(tiny_translator(), inputs=X, num_samples=16, progress=False)
    monkeypatch.setenv(limits.OVERRIDE_ENV_VAR, "1")
    assert recipes.quantize(tiny_translator(), inputs=X, num_samples=16, progress=False).gptq_report.rounded
