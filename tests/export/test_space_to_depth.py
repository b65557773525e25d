"""`space_to_depth`: a narrow large-kernel conv computed on pixel blocks gives the very same
integers (the weight rearrangement on its own, and exported graphs run by ONNX Runtime, with a
float tail and with a quantized output), and only eligible convs change."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gan_brevitas import QuantConfig, recipes
from gan_brevitas.export import qcdq
from gan_brevitas.export.ort import OrtGenerator
from gan_brevitas.export.space_to_depth import plan_axis, space_to_depth_weight


def _blocks(x: torch.Tensor, block: int) -> torch.Tensor:
    """ONNX SpaceToDepth: channel (by * block + bx) * C + c."""
    n, c, h, w = x.shape
    return x.reshape(n, c, h // block, block, w // block, block).permute(0, 3, 5, 1, 2, 4).reshape(
        n, block * block * c, h // block, w // block)


def _unblocks(y: torch.Tensor, block: int) -> torch.Tensor:
    """ONNX DepthToSpace, mode DCR."""
    n, c, h, w = y.shape
    c //= block * block
    return y.reshape(n, block, block, c, h, w).permute(0, 3, 4, 1, 5, 2).reshape(n, c, h * block, w * block)


@pytest.mark.parametrize("size,kernel,pad_begin,pad_end,block", [
    (16, 7, 3, 3, 4), (22, 7, 0, 0, 4), (16, 9, 4, 4, 4), (12, 5, 2, 2, 2), (18, 3, 1, 1, 2), (16, 5, 1, 3, 4),
])  # fmt: skip
def test_blocked_conv_gives_the_same_integers(size, kernel, pad_begin, pad_end, block):
    rng = np.random.default_rng(size + kernel)
    weight = rng.integers(-127, 128, (3, 5, kernel, kernel)).astype(np.float64)
    x = torch.tensor(rng.integers(0, 256, (2, 5, size, size)).astype(np.float64))
    reference = F.conv2d(F.pad(x, (pad_begin, pad_end, pad_begin, pad_end)), torch.tensor(weight))
    plan = plan_axis(size, kernel, pad_begin, pad_end, block)
    blocked = space_to_depth_weight(weight, plan, plan)
    assert blocked.shape == (3 * block * block, 5 * block * block, plan.kernel, plan.kernel)
    assert np.count_nonzero(blocked) == np.count_nonzero(weight) * block * block  # each weight once per phase
    padded = F.pad(x, (0, plan.padded - size, 0, plan.padded - size), value=7.0)  # any value: zero weights
    y = F.conv2d(F.pad(_blocks(padded, block), (plan.begin, plan.end, plan.begin, plan.end)), torch.tensor(blocked))
    assert torch.equal(_unblocks(y, block), reference)


def test_output_sizes_off_the_block_are_refused():
    assert plan_axis(21, 5, 0, 0, 4) is None  # 17 outputs
    assert plan_axis(18, 7, 3, 3, 4) is None  # 18 outputs


class RgbHead(nn.Module):
    """conv -> ReLU -> the RGB conv a generator ends with (optionally after a reflection pad)."""

    def __init__(self, kernel: int = 7, reflect: bool = False, output: nn.Module | None = None) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.pad = nn.ReflectionPad2d(kernel // 2) if reflect else nn.Identity()
        self.rgb = nn.Conv2d(8, 3, kernel, padding=0 if reflect else kernel // 2)
        self.output = output if output is not None else nn.Tanh()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(self.rgb(self.pad(self.body(x))))


def _export_both(model: nn.Module, tmp_path, monkeypatch, **quant) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(ops of the rewritten graph, its ONNX Runtime output, the output without the rewrite)."""
    torch.manual_seed(0)
    x = torch.rand(6, 3, 16, 16) * 2 - 1
    qmodel = recipes.quantize(model.eval(), inputs=x, num_samples=6, progress=False, config=QuantConfig(**quant))
    recipes.export(qmodel, tmp_path / "blocked.onnx", "onnxruntime", example_input=x[:1])
    with monkeypatch.context() as patch:
        patch.setattr(qcdq, "narrow_convs_as_space_to_depth", lambda model_proto: [])
        recipes.export(qmodel, tmp_path / "plain.onnx", "onnxruntime", example_input=x[:1])
    test = x[:3].numpy()
    outputs = [OrtGenerator(tmp_path / f"{name}.onnx", threads=1)(test) for name in ("blocked", "plain")]
    ops = [node.op_type for node in onnx.load(str(tmp_path / "blocked.onnx")).graph.node]
    return ops, outputs[0], outputs[1]


@pytest.mark.parametrize("reflect", [False, True])
def test_float_tail_conv_runs_blocked_with_identical_output(reflect, tmp_path, monkeypatch):
    # a Hardtanh output: a Tanh would take the float conv to `tanh_tail` instead of ConvInteger
    ops, blocked, plain = _export_both(RgbHead(reflect=reflect, output=nn.Hardtanh()), tmp_path, monkeypatch)
    assert {"SpaceToDepth", "DepthToSpace", "ConvInteger"} <= set(ops), ops
    np.testing.assert_allclose(blocked, plain, rtol=0, atol=1e-6)  # same integers; float rounding only


def test_quantized_output_conv_runs_blocked_with_identical_output(tmp_path, monkeypatch):
    ops, blocked, plain = _export_both(RgbHead(), tmp_path, monkeypatch, quantize_tail=True)
    assert {"SpaceToDepth", "DepthToSpace"} <= set(ops) and "ConvInteger" not in ops, ops
    assert np.array_equal(blocked, plain)  # QLinearConv on the same integers, requantized the same


def test_small_kernels_are_left_alone(tmp_path, monkeypatch):
    ops, blocked, plain = _export_both(RgbHead(kernel=3), tmp_path, monkeypatch)
    assert "SpaceToDepth" not in ops and np.array_equal(blocked, plain)
