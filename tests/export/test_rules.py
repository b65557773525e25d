"""The TensorRT rules checker: one graph built to break each rule, plus clean and bad inputs."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from gan_brevitas.errors import ExportError
from gan_brevitas.export.rules import RULES, check_tensorrt
from tests.export.graphs import qdq_conv_model


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
