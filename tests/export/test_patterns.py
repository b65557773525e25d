"""Each layer pattern of real generators, exported for ONNX Runtime and for OpenVINO: the engine's
output matches the fake-quant model within one output step, and the int8 parts are fused."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gan_brevitas import recipes
from tests.helpers import engine_exact_config
from gan_brevitas.deploy.parity import parity
from gan_brevitas.export.qcdq import ExportOptions, prepare_for_target

pytest.importorskip("openvino")

C = 16  # wide enough for ONNX Runtime's int8 conv (see export.narrow)


def conv(cin: int = C, cout: int = C) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=1)


class Residual(nn.Module):
    """x + conv(relu(conv(x))), the SR / CycleGAN residual block (functional add)."""

    def __init__(self) -> None:
        super().__init__()
        self.head = conv(3, C)
        self.body = nn.Sequential(conv(), nn.ReLU(), conv())
        self.tail = conv(C, C)

    def forward(self, x: Tensor) -> Tensor:
        h = self.head(x)
        return self.tail(h + self.body(h))


class Concat(nn.Module):
    """A U-Net style skip: conv(cat([h, conv(h)]))."""

    def __init__(self) -> None:
        super().__init__()
        self.head = conv(3, C)
        self.branch = conv()
        self.tail = conv(2 * C, C)

    def forward(self, x: Tensor) -> Tensor:
        h = self.head(x)
        return self.tail(torch.cat([h, self.branch(h)], dim=1))


class Interpolate(nn.Module):
    """Nearest upsampling through F.interpolate between two convs."""

    def __init__(self) -> None:
        super().__init__()
        self.head = conv(3, C)
        self.tail = conv()

    def forward(self, x: Tensor) -> Tensor:
        return self.tail(F.interpolate(self.head(x), scale_factor=2, mode="nearest"))


def _channel_prelu() -> nn.PReLU:
    """One slope per channel, some above 1 and some negative (trained SR nets have both)."""
    prelu = nn.PReLU(C)
    with torch.no_grad():
        prelu.weight.copy_(torch.linspace(-0.5, 1.5, C))
    return prelu


PATTERNS = {
    "prelu": lambda: nn.Sequential(conv(3, C), nn.PReLU(), conv()),
    "prelu_channels": lambda: nn.Sequential(conv(3, C), _channel_prelu(), conv()),
    "leaky_relu": lambda: nn.Sequential(conv(3, C), nn.LeakyReLU(0.2), conv()),
    "silu": lambda: nn.Sequential(conv(3, C), nn.SiLU(), conv()),
    "pixel_shuffle": lambda: nn.Sequential(conv(3, 4 * C), nn.PixelShuffle(2), nn.PReLU(), conv()),
    "upsample": lambda: nn.Sequential(conv(3, C), nn.Upsample(scale_factor=2), nn.ReLU(), conv()),
    "interpolate": Interpolate,
    "add": Residual,
    "concat": Concat,
    "instance_norm": lambda: nn.Sequential(conv(3, C), nn.InstanceNorm2d(C), nn.ReLU(), conv()),
    "conv_transpose": lambda: nn.Sequential(conv(3, C), nn.ReLU(), nn.ConvTranspose2d(C, C, 4, 2, 1), nn.ReLU(), conv()),
    "conv_transpose_odd": lambda: nn.Sequential(conv(3, C), nn.ReLU(), nn.ConvTranspose2d(C, C, 3, 2, 1), nn.ReLU(), conv()),
}


#: pattern -> the ONNX Runtime int8 op its activation / join must become (no float island).
INT8_ELEMENTWISE = {"prelu": "QLinearLeakyRelu", "leaky_relu": "QLinearLeakyRelu",
                    "pixel_shuffle": "QLinearLeakyRelu", "add": "QLinearAdd"}


def _images(n: int, seed: int) -> Tensor:
    return torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.fixture(scope="module")
def quantized_patterns():
    out = {}
    for name, build in PATTERNS.items():
        torch.manual_seed(0)
        model = build().eval()
        calib = _images(8, 0)
        # quantize_tail: every layer's output on the 8-bit grid, so every conv can be an int8 kernel
        # (the default leaves the last output float, which ONNX Runtime then runs as a float conv).
        out[name] = recipes.quantize(model, config=engine_exact_config(quantize_tail=True), inputs=calib, num_samples=8,
                                     progress=False)
    return out


@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_onnxruntime_matches_fake_quant_within_one_step(name, quantized_patterns, tmp_path):
    from gan_brevitas.export.ort import int8_kernel_report

    qmodel = quantized_patterns[name]
    path = tmp_path / f"{name}.onnx"
    exported = recipes.export(qmodel, path, "onnxruntime", example_input=_images(1, 1))
    assert not [w for w in exported.warnings if "in float, not int8" in w], exported.warnings
    report = parity(qmodel, path, _images(4, 2), n=4)
    assert report.mae <= report.output_step, report.format()
    kernels = int8_kernel_report(path)
    assert kernels.all_int8
    if name == "prelu_channels":  # no int8 PRelu in ONNX Runtime: requantizations and Max / Min on 8 bits
        assert not {"PRelu", "Mul", "Add"} & set(kernels.optimized_ops), kernels.optimized_ops
        assert {"Max", "Min"} <= set(kernels.optimized_ops) and kernels.optimized_ops["DequantizeLinear"] == 1
    if name == "silu":  # one fused op, the tensor dequantized once
        assert "QuickGelu" in kernels.optimized_ops and "Sigmoid" not in kernels.optimized_ops, kernels.optimized_ops
        assert kernels.optimized_ops["DequantizeLinear"] == 2, kernels.optimized_ops  # the SiLU's input, the output
    if name in INT8_ELEMENTWISE:  # the activation / add runs on the 8-bit tensors too
        assert INT8_ELEMENTWISE[name] in kernels.optimized_ops, kernels.optimized_ops
        assert not {"PRelu", "LeakyRelu", "Add"} & set(kernels.optimized_ops), kernels.optimized_ops


@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_openvino_matches_fake_quant_within_one_step(name, quantized_patterns, tmp_path):
    qmodel = quantized_patterns[name]
    calib = _images(8, 0)
    path = tmp_path / f"{name}.onnx"
    report = recipes.export(qmodel, path, "openvino", inputs=calib, num_samples=8)
    # The export re-calibrates the asymmetric model as symmetric; the same preparation gives
    # the fake-quant model the file was made from.
    options = ExportOptions(target="openvino", num_samples=8)
    deployed, _, _ = prepare_for_target(qmodel, options, calib, calib[:1])
    result = parity(deployed, path, _images(4, 2), n=4, engine="openvino")
    assert result.mae <= result.output_step, result.format()
    assert not [w for w in report.warnings if "not int8" in w], report.warnings
    rewritten = any("ConvTranspose -> Conv + PixelShuffle" in c for c in report.conversions)
    assert rewritten == (name == "conv_transpose_odd"), report.conversions  # 2H - 1 outputs: rewritten


def test_default_float_tail_runs_as_conv_integer_on_onnxruntime(tmp_path):
    """The default leaves the last conv's output float (quality): the ONNX Runtime export runs
    that conv as an int8 ConvInteger with a float result, so every quantized conv is an int8
    kernel, nothing is reported float, and the file computes what the fake-quant model does."""
    from gan_brevitas.export.ort import int8_kernel_report

    torch.manual_seed(0)
    qmodel = recipes.quantize(PATTERNS["add"]().eval(), inputs=_images(8, 0), num_samples=8, progress=False,
                              config=engine_exact_config())
    path = tmp_path / "add.onnx"
    exported = recipes.export(qmodel, path, "onnxruntime", example_input=_images(1, 1))
    assert not [w for w in exported.warnings if "not int8" in w], exported.warnings
    assert [c for c in exported.conversions if "ConvInteger" in c and "/tail/" in c], exported.conversions
    report = parity(qmodel, path, _images(4, 2), n=4)
    assert report.mae <= 1e-3 * report.output_step, report.format()  # exact up to float rounding
    kernels = int8_kernel_report(path)
    assert kernels.all_int8 and kernels.optimized_ops.get("ConvInteger") == 1, kernels.format()
