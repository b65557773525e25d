"""`tanh_tails_on_ranges`: a float-output 8-bit conv that feeds a Tanh runs as one int8
QLinearConv on the nested pre-Tanh ranges; after the Tanh the ONNX Runtime output stays within
the documented bound (half a step times the Tanh's slope) of the fake-quant model, biases
included, on pre-Tanh values inside, across and beyond both ranges."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from gan_brevitas import recipes
from gan_brevitas.export.tanh_tail import TANH_RANGES
from tests.helpers import engine_exact_config

ort = pytest.importorskip("onnxruntime")
#: The module docstring's bound (0.42 x 4/254) plus float rounding.
BOUND = 0.0068


LAST_LAYERS = {
    "3x3": lambda: nn.Conv2d(16, 3, 3, padding=1),  # 3 output channels: padded to 16, sliced back
    "7x7": lambda: nn.Conv2d(16, 3, 7, padding=3),  # narrow large kernel: computed on 4x4 pixel blocks
    "transposed": lambda: nn.ConvTranspose2d(16, 3, 4, 2, 1),  # sub-pixel: DepthToSpace + Slice before the Tanh
}


def _tail_model(last: str) -> nn.Module:
    torch.manual_seed(0)
    layer = LAST_LAYERS[last]()
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), layer, nn.Tanh()).eval()
    with torch.no_grad():
        # pre-Tanh values spread over about +-8: inside, across and beyond both ranges
        layer.weight.copy_(torch.randn(layer.weight.shape) * 8 / layer.weight[0].numel() ** 0.5)
        layer.bias.uniform_(-0.5, 0.5)
    return model


def _export(model: nn.Module, tmp_path, size: int = 16, **config):
    calib = torch.rand(8, 3, size, size) * 2 - 1
    qmodel = recipes.quantize(model, inputs=calib, progress=False, config=engine_exact_config(**config))
    report = recipes.export(qmodel, tmp_path / "g.onnx", "onnxruntime", example_input=calib[:1])
    test = torch.rand(4, 3, size, size) * 2 - 1
    session = ort.InferenceSession(str(report.path), providers=["CPUExecutionProvider"])
    got = np.concatenate([session.run(None, {report.input_name: test[i : i + 1].numpy()})[0] for i in range(4)])
    with torch.no_grad():
        expected = qmodel(test).numpy()
    return report, [n.op_type for n in onnx.load(str(report.path)).graph.node], got, expected


def _optimized_ops(path, tmp_path) -> list[str]:
    """The op types of the graph ONNX Runtime runs (after its fusions)."""
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    options.log_severity_level = 3
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return [node.op_type for node in onnx.load(options.optimized_model_filepath).graph.node]


@pytest.mark.parametrize("last", list(LAST_LAYERS))
def test_a_tanh_tail_runs_as_one_int8_conv_within_the_bound(tmp_path, last):
    report, ops, got, expected = _export(_tail_model(last), tmp_path)
    assert any(str(TANH_RANGES) in note for note in report.conversions)
    assert "ConvInteger" not in ops and ops.count("Split") == 1 and ops[-1] == "Tanh"
    assert "Conv" not in _optimized_ops(report.path, tmp_path)  # ONNX Runtime fused every conv into QLinearConv
    assert np.abs(got - expected).max() <= BOUND
    assert np.abs(np.arctanh(np.clip(expected, -0.9999, 0.9999))).max() > TANH_RANGES[-1]  # every range was used


def test_a_conv_whose_output_is_also_read_elsewhere_keeps_the_conv_integer(tmp_path):
    class TwoHeads(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU())
            self.head = nn.Conv2d(16, 16, 3, padding=1)

        def forward(self, x):
            y = self.head(self.body(x))
            return torch.tanh(y) + y

    report, ops, got, expected = _export(TwoHeads().eval(), tmp_path)
    assert not any(str(TANH_RANGES) in note for note in report.conversions)
    assert "ConvInteger" in ops
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_a_grouped_tail_conv_keeps_the_conv_integer(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 4, 3, padding=1, groups=2),
                          nn.Tanh()).eval()
    report, ops, got, expected = _export(model, tmp_path)
    assert not any(str(TANH_RANGES) in note for note in report.conversions)
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_a_signed_input_keeps_the_conv_integer(tmp_path):
    # ONNX Runtime does not fuse an int8-input QDQ conv here: the ranges would run as a float Conv
    report, ops, got, expected = _export(_tail_model("3x3"), tmp_path, act_scheme="symmetric")
    assert not any(str(TANH_RANGES) in note for note in report.conversions)
    assert "ConvInteger" in ops
    np.testing.assert_allclose(got, expected, atol=1e-4)
