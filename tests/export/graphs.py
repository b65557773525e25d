"""Small hand-built Q/DQ graphs for the rules checker (one keyword breaks one rule)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _init(name, array, dtype=None):
    if dtype is not None:
        return helper.make_tensor(name, dtype, array.shape, array.flatten().tolist())
    return numpy_helper.from_array(array, name)


def qdq_conv_model(
    *,
    act_zero_point=0,
    act_dtype=np.int8,
    act_scale_per_channel=False,
    weight_axis=0,
    weight_per_channel=True,
    op="Conv",
    weight_int4=False,
    input_qdq=True,
    scale_value=0.02,
    scale_from_input=False,
    opset=17,
    residual=False,
    initializers_as_inputs=False,
) -> onnx.ModelProto:
    """x -> Q -> DQ -> {Conv|ConvTranspose}(DQ(w), DQ(b)) -> Q -> DQ [-> Add x] -> y.

    Every keyword breaks one rule when moved off its default.
    """
    c_in, c_out = 4, 6
    w_shape = (c_out, c_in, 3, 3) if op == "Conv" else (c_in, c_out, 3, 3)
    rng = np.random.default_rng(0)
    weights = rng.integers(-8, 8, size=w_shape).astype(np.int8)
    channels = w_shape[weight_axis]
    inits = [
        _init("w_int", weights, TensorProto.INT4 if weight_int4 else None),
        _init("w_scale", np.full((channels,) if weight_per_channel else (), 0.01, np.float32)),
        _init("b_int", np.arange(c_out, dtype=np.int32)),
        _init("b_scale", np.full((c_out,) if weight_per_channel and weight_axis == 0 else (), 2e-4, np.float32)),
        _init("act_zp", np.array(act_zero_point, dtype=act_dtype)),
        _init("out_scale", np.array(0.05, np.float32)),
        _init("out_zp", np.array(0, dtype=np.int8)),
    ]
    act_scale = np.full((c_in,) if act_scale_per_channel else (), scale_value, np.float32)
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c_in, 8, 8])]
    if scale_from_input:
        inputs.append(helper.make_tensor_value_info("act_scale", TensorProto.FLOAT, []))
    else:
        inits.append(_init("act_scale", act_scale))
    nodes = []
    if input_qdq:
        nodes += [
            helper.make_node("QuantizeLinear", ["x", "act_scale", "act_zp"], ["x_q"], name="in_q"),
            helper.make_node("DequantizeLinear", ["x_q", "act_scale", "act_zp"], ["x_dq"], name="in_dq"),
        ]
        data = "x_dq"
    else:
        data = "x"
    nodes += [
        helper.make_node("DequantizeLinear", ["w_int", "w_scale"], ["w"], name="w_dq", axis=weight_axis),
        helper.make_node("DequantizeLinear", ["b_int", "b_scale"], ["b"], name="b_dq", axis=0),
        helper.make_node(op, [data, "w", "b"], ["y_f"], name="layer", pads=[1, 1, 1, 1]),
        helper.make_node("QuantizeLinear", ["y_f", "out_scale", "out_zp"], ["y_q"], name="out_q"),
        helper.make_node("DequantizeLinear", ["y_q", "out_scale", "out_zp"], ["y_dq"], name="out_dq"),
    ]
    output = "y_dq"
    if residual:
        # Adds a float skip tensor (no Q/DQ of its own) to the dequantized output.
        inputs.append(helper.make_tensor_value_info("skip", TensorProto.FLOAT, [1, c_out, 8, 8]))
        nodes.append(helper.make_node("Add", ["y_dq", "skip"], ["y_res"], name="residual_add"))
        output = "y_res"
    graph = helper.make_graph(
        nodes, "g", inputs, [helper.make_tensor_value_info(output, TensorProto.FLOAT, [1, 6, 8, 8])], inits
    )
    if initializers_as_inputs:
        graph.input.append(helper.make_tensor_value_info("w_scale", TensorProto.FLOAT, [w_shape[weight_axis]]))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
