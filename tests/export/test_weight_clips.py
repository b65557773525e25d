"""`fold_weight_clips`: a sub-8-bit weight, which Brevitas writes as int8 -> Clip -> DequantizeLinear,
is stored as the clipped int8 constant, so ONNX Runtime and OpenVINO run its conv on int8
kernels (with the Clip they ran it in float); the values do not change."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from gan_brevitas import QuantConfig, recipes
from gan_brevitas.export.passes import fold_weight_clips

ort = pytest.importorskip("onnxruntime")


def _clipped_weight(bounds=("low", "high")) -> onnx.ModelProto:
    weight = np.arange(-12, 12, dtype=np.int8).reshape(4, 6)
    inits = [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(np.int8(-8), "low"),
             numpy_helper.from_array(np.int8(7), "high"), numpy_helper.from_array(np.float32(0.5), "scale")]
    nodes = [helper.make_node("Clip", ["w", *bounds], ["wc"]),
             helper.make_node("DequantizeLinear", ["wc", "scale"], ["wd"]),
             helper.make_node("MatMul", ["x", "wd"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 6])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


@pytest.mark.parametrize("bounds", [("low", "high"), ("low",), ("", "high")])
def test_a_clipped_constant_weight_becomes_the_clipped_constant(bounds):
    model = _clipped_weight(bounds)
    x = np.random.default_rng(0).normal(size=(2, 4)).astype(np.float32)
    expected = _run(model, x)
    assert fold_weight_clips(model) == 1
    onnx.checker.check_model(model)
    assert [n.op_type for n in model.graph.node] == ["DequantizeLinear", "MatMul"]
    np.testing.assert_array_equal(_run(model, x), expected)


def _w4_model() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(16, 3, 3, padding=1), nn.Tanh()).eval()
    x = torch.rand(8, 3, 16, 16) * 2 - 1
    return recipes.quantize(model, inputs=x, progress=False, config=QuantConfig(weight_bits=4)), x


def test_a_4_bit_model_runs_on_int8_kernels_in_onnx_runtime(tmp_path):
    qmodel, x = _w4_model()
    report = recipes.export(qmodel, tmp_path / "g.onnx", "onnxruntime", example_input=x[:1])
    assert report.warnings == () and any("Clip folded" in note for note in report.conversions)
    assert "Clip" not in [n.op_type for n in onnx.load(str(report.path)).graph.node]
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    session = ort.InferenceSession(str(report.path), options, providers=["CPUExecutionProvider"])
    assert "Conv" not in [n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node]  # all QLinearConv
    got = np.concatenate([session.run(None, {report.input_name: x[i : i + 1].numpy()})[0] for i in range(2)])
    with torch.no_grad():
        expected = qmodel(x[:2]).numpy()
    assert np.abs(got - expected).max() <= 0.0068  # the Tanh tail's bound; the weights are the same integers


def test_a_4_bit_model_runs_every_conv_in_int8_on_openvino(tmp_path):
    pytest.importorskip("openvino")
    qmodel, x = _w4_model()
    report = recipes.export(qmodel, tmp_path / "g.onnx", "openvino", example_input=x[:1], inputs=x)
    assert report.warnings == ()  # the export compiles the file and warns about any conv not in int8
