"""`float_tail_as_conv_integer`: a float-output conv on dequantized 8-bit input and weight
becomes ConvInteger + dequantizing Mul (+ bias), computing the same values in ONNX Runtime."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from gan_brevitas.export.conv_integer import float_tail_as_conv_integer
from gan_brevitas.export.ort import OrtGenerator

RNG = np.random.default_rng(0)


def _graph(activation_type: int, *, groups: int = 1, stride: int = 1, bias: str = "int32",
           quantized_output: bool = False, as_graph_output: bool = False) -> onnx.ModelProto:
    """x -> Q -> DQ -> Conv(DQ(int8 weight, per-channel scale), bias) -> Tanh (or -> Q -> DQ)."""
    cin, cout = 8, 6
    zero = np.array(0 if activation_type == TensorProto.INT8 else 100,
                    np.int8 if activation_type == TensorProto.INT8 else np.uint8)
    weight = RNG.integers(-127, 128, (cout, cin // groups, 3, 3)).astype(np.int8)
    weight_scale = RNG.uniform(0.001, 0.01, cout).astype(np.float32)
    inits = [
        numpy_helper.from_array(np.array(0.02, np.float32), "x_scale"), numpy_helper.from_array(zero, "x_zero"),
        numpy_helper.from_array(weight, "w_q"), numpy_helper.from_array(weight_scale, "w_scale"),
        numpy_helper.from_array(np.zeros(cout, np.int8), "w_zero"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zero"], ["x_q"]),
        helper.make_node("DequantizeLinear", ["x_q", "x_scale", "x_zero"], ["x_dq"]),
        helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zero"], ["w_dq"], axis=0),
    ]
    conv_inputs = ["x_dq", "w_dq"]
    if bias == "int32":
        inits += [numpy_helper.from_array(RNG.integers(-5000, 5000, cout).astype(np.int32), "b_q"),
                  numpy_helper.from_array(weight_scale * np.float32(0.02), "b_scale")]
        nodes.append(helper.make_node("DequantizeLinear", ["b_q", "b_scale"], ["b_dq"], axis=0))
        conv_inputs.append("b_dq")
    elif bias == "float":
        inits.append(numpy_helper.from_array(RNG.normal(0, 0.1, cout).astype(np.float32), "b"))
        conv_inputs.append("b")
    conv_out = "y" if as_graph_output else "conv"
    nodes.append(helper.make_node("Conv", conv_inputs, [conv_out], name="tail_conv", pads=[1, 1, 1, 1],
                                  group=groups, strides=[stride, stride]))
    if quantized_output:
        inits.append(numpy_helper.from_array(np.array(0.05, np.float32), "y_scale"))
        nodes += [helper.make_node("QuantizeLinear", [conv_out, "y_scale"], ["y_q"]),
                  helper.make_node("DequantizeLinear", ["y_q", "y_scale"], ["y"])]
    elif not as_graph_output:
        nodes.append(helper.make_node("Tanh", [conv_out], ["y"]))
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, cin, 10, 10])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, cout, None, None])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run(model: onnx.ModelProto, path, x: np.ndarray) -> np.ndarray:
    onnx.save(model, str(path))
    return OrtGenerator(path, threads=1)(x)


@pytest.mark.parametrize("activation_type", [TensorProto.UINT8, TensorProto.INT8])
@pytest.mark.parametrize("groups,stride,bias", [(1, 1, "int32"), (2, 2, "float"), (1, 1, "none")])
def test_conv_integer_computes_the_float_conv(activation_type, groups, stride, bias, tmp_path):
    model = _graph(activation_type, groups=groups, stride=stride, bias=bias)
    x = RNG.uniform(-2, 2, (2, 8, 10, 10)).astype(np.float32)
    reference = _run(model, tmp_path / "float.onnx", x)
    assert float_tail_as_conv_integer(model) == ["tail_conv"]
    onnx.checker.check_model(model)
    ops = [node.op_type for node in model.graph.node]
    assert "ConvInteger" in ops and "Conv" not in ops, ops
    rewritten = _run(model, tmp_path / "integer.onnx", x)
    np.testing.assert_allclose(rewritten, reference, rtol=2e-6, atol=2e-6)  # float rounding only


def test_conv_integer_keeps_the_graph_output_name(tmp_path):
    model = _graph(TensorProto.UINT8, as_graph_output=True)
    x = RNG.uniform(-2, 2, (1, 8, 10, 10)).astype(np.float32)
    reference = _run(model, tmp_path / "float.onnx", x)
    assert float_tail_as_conv_integer(model) == ["tail_conv"]
    assert [o.name for o in model.graph.output] == ["y"]
    np.testing.assert_allclose(_run(model, tmp_path / "integer.onnx", x), reference, rtol=2e-6, atol=2e-6)  # float rounding only


def test_conv_with_quantized_output_is_left_to_qlinearconv():
    model = _graph(TensorProto.UINT8, quantized_output=True)
    before = model.SerializeToString()
    assert float_tail_as_conv_integer(model) == []
    assert model.SerializeToString() == before
