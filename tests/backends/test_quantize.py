"""ModelOpt quantizes each reference generator and a DCGAN-style user generator; the report
names every conv-like layer; the presets, the plugin's registered modules and the calibration
loop do what they say."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import modelopt.torch.quantization as mtq
from gan_brevitas import QuantConfig, recipes
from gan_brevitas.models import float_parts
from gan_brevitas.models.sagan import SelfAttention
from gan_brevitas.models.stylegan import Blur
from gan_brevitas.backends import is_modelopt_model
from gan_brevitas.backends import modelopt as mo
from gan_brevitas.backends import modelopt_modules as mm
from gan_brevitas.backends import modelopt_presets as presets
from gan_brevitas.quant.convert import fold_for_quantization
from gan_brevitas.backends.modelopt_report import describe_rows
from tests.backends.conftest import DEMO_NAMES, NAMES

CONV_LIKE = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)


def _called(model: nn.Module, x: torch.Tensor) -> set[str]:
    names: set[str] = set()
    handles = [m.register_forward_pre_hook(lambda m, a, n=n: names.add(n)) for n, m in model.named_modules()]
    with torch.no_grad():
        model(x)
    for handle in handles:
        handle.remove()
    return names


@pytest.mark.parametrize("name", NAMES + DEMO_NAMES)
def test_generator_is_quantized_by_modelopt(float_generators, int8_models, name):
    model, x = float_generators[name]
    qmodel = int8_models[name]
    assert is_modelopt_model(qmodel)
    assert qmodel.gan_brevitas.method == "modelopt-int8"
    with torch.no_grad():
        got = qmodel(x[:4])
        want = fold_for_quantization(model)(x[:4])
    got, want = (got[0], want[0]) if isinstance(got, tuple) else (got, want)
    error = float((got - want).norm() / want.norm())
    assert 0 < error < 0.2, error  # really quantized, and still the same images


@pytest.mark.parametrize("name", NAMES + DEMO_NAMES)
def test_report_lists_every_conv_like_layer(float_generators, int8_models, name):
    """Every Conv / ConvTranspose / Linear of the folded generator has a row; those that run
    are quantized by ModelOpt (8-bit, per channel); the others say why they stayed float."""
    model, x = float_generators[name]
    folded = fold_for_quantization(model)
    rows = {row.name: row for row in describe_rows(int8_models[name])}
    ran = _called(folded, x[:1])
    for layer_name, layer in folded.named_modules():
        if not isinstance(layer, CONV_LIKE):
            continue
        row = rows[layer_name]
        if layer_name in ran:
            assert row.kind == type(layer).__name__ and row.weight_bits == "8", row
            assert row.per_channel == "yes (axis 0)" and row.activations.startswith("in s8 sym s="), row
        else:
            assert row.kind == "float" and "never ran during calibration" in row.note, row
    for part, _ in float_parts(folded):  # known float parts are reported (attention/blur: own rows)
        assert part in rows
    assert recipes.describe(int8_models[name]).splitlines()[0].startswith("layer")


def test_sagan_attention_matmuls_are_quantized(int8_models):
    qmodel = int8_models["sagan"]
    for attention in (qmodel.attn1, qmodel.attn2):
        assert isinstance(attention, mm.QuantSelfAttention)
        for quantizer in presets.BMM_QUANTIZERS:
            q = getattr(attention, quantizer)
            assert q.is_enabled and q.num_bits == 8 and torch.isfinite(q.amax).all()
    rows = {row.name: row for row in describe_rows(qmodel)}
    assert rows["attn1"].kind == "SelfAttention" and "softmax s8 sym" in rows["attn1"].activations


class AttentionThenBlur(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attention = SelfAttention(16)
        self.blur = Blur(16)
        with torch.no_grad():
            self.attention.gamma.fill_(0.7)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blur(self.attention(x)[0])


def test_registered_modules_equal_the_float_ones_with_quantizers_off():
    """QuantSelfAttention / QuantBlur rewrite the forward: with quantizers off it is exact."""
    torch.manual_seed(0)
    model = AttentionThenBlur().eval()
    x = torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        want = model(x)
    qmodel = mo.modelopt_ptq(
        fold_for_quantization(model), None, x, num_samples=2, progress=False, quantize_blur=True
    )
    assert isinstance(qmodel.attention, mm.QuantSelfAttention) and isinstance(qmodel.blur, mm.QuantBlur)
    assert qmodel.blur.weight_quantizer.is_enabled and qmodel.blur.input_quantizer.is_enabled
    with torch.no_grad():
        assert not torch.equal(qmodel(x), want)
        with mo.quantizers_disabled(qmodel):
            assert torch.equal(qmodel(x), want)
    rows = {row.name: row for row in describe_rows(qmodel)}
    assert rows["blur"].kind == "Blur" and rows["blur"].weight_bits == "8"
    assert rows["attention"].kind == "SelfAttention"


def test_blur_stays_float_by_default_and_says_why(int8_models):
    rows = describe_rows(int8_models["stylegan"])
    blur = [row for row in rows if "Blur" in row.note]
    assert blur and all(row.kind == "float" and "quantize_blur=True" in row.note for row in blur)


def test_w4a8_quantizes_conv_weights_to_4_bits(float_generators):
    model, x = float_generators["sagan"]
    qmodel = recipes.quantize(model, "modelopt-w4a8", inputs=x, num_samples=len(x), progress=False)
    for name, layer in qmodel.named_modules():
        if isinstance(layer, nn.modules.conv._ConvNd):
            q = layer.weight_quantizer
            assert q.is_enabled and q.num_bits == 4 and q.axis == 0, name
            with torch.no_grad():
                levels = (q(layer.weight.detach()) / (q.amax / q.maxbound)).round()
            assert levels.min() >= -8 and levels.max() <= 7, name
    stylegan, z = float_generators["stylegan"]
    q_style = recipes.quantize(stylegan, "modelopt-w4a8", inputs=z, num_samples=len(z), progress=False)
    assert q_style.style[1].weight_quantizer.num_bits == 8  # Linear layers keep 8 bits


def test_percentile_calibration_clips_activation_ranges(float_generators, int8_models):
    model, x = float_generators["cyclegan"]
    qmodel = recipes.quantize(model, "modelopt-int8-percentile", inputs=x, num_samples=len(x), progress=False)
    clipped = 0
    for (name, q_max), (_, q_pct) in zip(int8_models["cyclegan"].named_modules(), qmodel.named_modules()):
        if name.endswith("input_quantizer") and q_max.is_enabled:
            assert q_pct.amax <= q_max.amax * (1 + 1e-6), name
            clipped += int(q_pct.amax < q_max.amax)
        if name.endswith("weight_quantizer") and q_max.is_enabled:
            assert torch.equal(q_pct.amax, q_max.amax), name  # weights keep max
    assert clipped > 0


def test_presets_follow_modelopt_int8_default():
    """Our base weight / input settings are INT8_DEFAULT_CFG's (8 bits, axis 0, per tensor)."""
    default = {e["quantizer_name"]: e.get("cfg") for e in mtq.INT8_DEFAULT_CFG["quant_cfg"] if "cfg" in e}
    config = presets.PRESETS["int8"].modelopt_config(nn.Sequential(nn.Conv2d(3, 3, 1)))
    ours = {e["quantizer_name"]: e["cfg"] for e in config["quant_cfg"] if "cfg" in e and "parent_class" not in e}
    assert ours["*weight_quantizer"] == default["*weight_quantizer"]
    assert ours["*input_quantizer"] == default["*input_quantizer"]
    assert config["algorithm"] == mtq.INT8_DEFAULT_CFG["algorithm"] == "max"


def test_skip_keeps_a_layer_float_and_reports_it(float_generators):
    model, x = float_generators["dcgan"]
    qmodel = recipes.quantize(model, "modelopt-int8", config=QuantConfig(skip=("7",)), inputs=x,
                              num_samples=len(x), progress=False)
    assert not qmodel[7].weight_quantizer.is_enabled and not qmodel[7].input_quantizer.is_enabled
    rows = {row.name: row for row in describe_rows(qmodel)}
    assert rows["7"].kind == "float" and "skip" in rows["7"].note
    assert rows["1"].weight_bits == "8"


def test_calibration_loop_reads_the_inputs_once():
    calls: list[int] = []

    def sampler(batch_size: int) -> torch.Tensor:
        calls.append(batch_size)
        return torch.randn(batch_size, 4)

    seen: list[torch.Tensor] = []
    loop = mm.CalibrationLoop(sampler, num_samples=10, batch_size=4)
    model = nn.Linear(4, 2)
    model.register_forward_pre_hook(lambda m, a: seen.append(a[0]))
    loop(model)
    loop(model)
    assert calls == [4, 4, 4]
    assert [len(b) for b in seen] == [4, 4, 2, 4, 4, 2]
    assert all(torch.equal(a, b) for a, b in zip(seen[:3], seen[3:]))


def test_modelopt_save_restore_round_trip(float_generators, int8_models, tmp_path):
    import modelopt.torch.opt as mto

    model, x = float_generators["sagan"]
    mto.save(int8_models["sagan"], tmp_path / "q.pth")
    restored = mto.restore(fold_for_quantization(model), tmp_path / "q.pth")
    assert isinstance(restored.attn1, mm.QuantSelfAttention)
    with torch.no_grad():
        assert torch.equal(restored(x)[0], int8_models["sagan"](x)[0])


class _PReluResidual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, 8, 3, padding=1)
        self.act = nn.PReLU(8)
        self.body = nn.Conv2d(8, 8, 3, padding=1)
        self.tail = nn.Conv2d(8, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.head(x))
        return self.tail(h + self.body(h))


def test_report_names_what_modelopt_left_float_and_no_brevitas_rows():
    """The PReLU and the residual add run float under ModelOpt's preset (it quantizes conv
    inputs and weights only); every conv is quantized, none reported as unmapped."""
    torch.manual_seed(0)
    x = torch.rand(8, 3, 8, 8)
    qmodel = recipes.quantize(_PReluResidual().eval(), "modelopt-int8", inputs=x, num_samples=8, progress=False)
    rows = {row.name: row for row in describe_rows(qmodel)}
    floats = {name: row.note for name, row in rows.items() if row.kind == "float"}
    assert {"head", "body", "tail"} <= {name for name, row in rows.items() if row.weight_bits == "8"}
    assert any(name.startswith("act") and "PReLU" in note for name, note in floats.items()), floats
    assert [note for name, note in floats.items() if "add" in note and "runs float" in note], floats
    assert not any("no quantized mapping" in note or "config.skip" in note for note in floats.values()), floats
