"""`silu_as_quick_gelu`: x * Sigmoid(x) becomes one QuickGelu(alpha=1) that ONNX Runtime
computes to the same floats; a Sigmoid read elsewhere stays."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from gan_brevitas.export.passes import silu_as_quick_gelu

ort = pytest.importorskip("onnxruntime")


def _silu(gate_first: bool, gate_also_output: bool = False) -> onnx.ModelProto:
    mul_inputs = ["gate", "x"] if gate_first else ["x", "gate"]
    nodes = [helper.make_node("Sigmoid", ["x"], ["gate"]), helper.make_node("Mul", mul_inputs, ["y"])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4, 8, 8])]
    if gate_also_output:
        outputs.append(helper.make_tensor_value_info("gate", TensorProto.FLOAT, [2, 4, 8, 8]))
    graph = helper.make_graph(nodes, "silu", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4, 8, 8])],
                              outputs)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


@pytest.mark.parametrize("gate_first", [False, True])
def test_silu_becomes_one_quick_gelu_with_the_same_values(gate_first):
    model = _silu(gate_first)
    x = np.random.default_rng(0).normal(0, 4, (2, 4, 8, 8)).astype(np.float32)
    expected = _run(model, x)
    assert silu_as_quick_gelu(model) == 1
    onnx.checker.check_model(model)
    assert [(n.op_type, n.domain) for n in model.graph.node] == [("QuickGelu", "com.microsoft")]
    np.testing.assert_allclose(_run(model, x), expected, rtol=1e-6, atol=1e-6)


def test_a_sigmoid_read_elsewhere_stays():
    model = _silu(False, gate_also_output=True)
    assert silu_as_quick_gelu(model) == 0
    assert [n.op_type for n in model.graph.node] == ["Sigmoid", "Mul"]
