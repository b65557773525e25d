"""The TensorRT rules checker: one graph built to break each rule, plus clean and bad inputs."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from gan_brevitas.errors import ExportError
from gan_brevitas.export.rules import RULES, check_tensorrt


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


def _rules(model):
    report = check_tensorrt(model)
    return report, {(v.rule, v.node) for v in report.violations}


def test_clean_graph_passes():
    report, found = _rules(qdq_conv_model())
    assert report.quantized and report.ok and not found
    onnx.checker.check_model(qdq_conv_model(), full_check=True)  # the builder makes valid graphs


@pytest.mark.parametrize(
    "knobs, rule, node",
    [
        (dict(act_zero_point=3), "symmetric-zero-point", "in_q"),
        (dict(act_dtype=np.uint8), "int8-type", "in_dq"),
        (dict(act_scale_per_channel=True), "activation-per-channel", "in_q"),
        (dict(weight_axis=1), "weight-axis", "w_dq"),
        (dict(op="ConvTranspose", weight_axis=1), "conv-transpose-axis", "w_dq"),
        (dict(weight_int4=True, opset=21), "4-bit-weight", "w_dq"),
        (dict(scale_value=0.0), "constant-qparams", "in_q"),
        (dict(scale_from_input=True), "constant-qparams", "in_dq"),
        (dict(opset=12), "opset", "w_dq"),
        (dict(input_qdq=False), "unquantized-compute-input", "layer"),
        (dict(residual=True), "residual-add", "residual_add"),
        (dict(initializers_as_inputs=True), "initializer-inputs", "<graph inputs>"),
    ],
    ids=lambda p: p if isinstance(p, str) else None,
)
def test_each_rule_is_caught_at_its_node(knobs, rule, node):
    model = qdq_conv_model(**knobs)
    if rule != "opset":  # opset 12 has no per-axis DequantizeLinear: that graph is invalid ONNX
        onnx.checker.check_model(model, full_check=True)
    report, found = _rules(model)
    assert (rule, node) in found, report.format()
    violation = next(v for v in report.violations if v.rule == rule and v.node == node)
    # The message names the node, the rule and the fix.
    text = str(violation)
    assert node in text and rule in text and RULES[rule].fix in text
    assert report.ok == (RULES[rule].severity != "error")
    assert rule in report.format() and node in report.format()


def test_every_rule_has_a_breaking_graph():
    covered = {
        "symmetric-zero-point", "int8-type", "activation-per-channel", "weight-axis", "conv-transpose-axis",
        "4-bit-weight", "constant-qparams", "opset", "unquantized-compute-input", "residual-add",
        "initializer-inputs",
    }
    assert covered == set(RULES)


def test_conv_transpose_axis_0_and_per_tensor_are_fine():
    for knobs in (dict(op="ConvTranspose", weight_axis=0), dict(op="ConvTranspose", weight_per_channel=False)):
        report, found = _rules(qdq_conv_model(**knobs))
        assert report.ok, report.format()


def test_float_model_has_nothing_to_check(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"], name="relu")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    path = tmp_path / "float.onnx"
    onnx.save(helper.make_model(graph), path)
    report = check_tensorrt(path)
    assert not report.quantized and report.ok and not report.violations
    assert "float model, there is nothing to check" in report.format()


def test_not_a_model(tmp_path):
    path = tmp_path / "notes.onnx"
    path.write_text("this is not a protobuf")
    with pytest.raises(ExportError, match="is not an ONNX model"):
        check_tensorrt(path)
    with pytest.raises(ExportError, match="does not exist"):
        check_tensorrt(tmp_path / "missing.onnx")
