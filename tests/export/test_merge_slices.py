"""`merge_slices`: two Slices on different axes become one Slice keeping the same elements;
Slices on a shared axis, with steps, with mixed-sign axes or read elsewhere stay; the
sub-pixel ConvTranspose crop exports as one Slice for ONNX Runtime."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from gan_brevitas import recipes
from gan_brevitas.export.passes import merge_slices

ort = pytest.importorskip("onnxruntime")
SHAPE = [2, 3, 9, 10]


def _two_slices(first_axes, second_axes, *, first_also_output=False, steps=None) -> onnx.ModelProto:
    inits = [numpy_helper.from_array(np.array(v, np.int64), name) for name, v in (
        ("s1", [1] * len(first_axes)), ("e1", [-1] * len(first_axes)), ("a1", first_axes),
        ("s2", [2] * len(second_axes)), ("e2", [7] * len(second_axes)), ("a2", second_axes))]
    second_inputs = ["mid", "s2", "e2", "a2"]
    if steps is not None:
        inits.append(numpy_helper.from_array(np.array(steps, np.int64), "st"))
        second_inputs.append("st")
    nodes = [helper.make_node("Slice", ["x", "s1", "e1", "a1"], ["mid"]), helper.make_node("Slice", second_inputs, ["y"])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["a", "b", "c", "d"])]
    if first_also_output:
        outputs.append(helper.make_tensor_value_info("mid", TensorProto.FLOAT, ["a", "b", "c", "d"]))
    graph = helper.make_graph(nodes, "slices", [helper.make_tensor_value_info("x", TensorProto.FLOAT, SHAPE)],
                              outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _first_read_twice() -> onnx.ModelProto:
    """The first Slice feeds the second Slice and an Identity: merging would lose the Identity's input."""
    model = _two_slices([2], [3])
    model.graph.node.append(helper.make_node("Identity", ["mid"], ["also"]))
    model.graph.output.append(helper.make_tensor_value_info("also", TensorProto.FLOAT, ["a", "b", "c", "d"]))
    return model


def _run(model: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})


@pytest.mark.parametrize("first_axes, second_axes", [([2], [3]), ([-1], [-2]), ([0, 1], [3])])
def test_slices_on_different_axes_merge_into_one_with_the_same_elements(first_axes, second_axes):
    model = _two_slices(first_axes, second_axes)
    x = np.arange(np.prod(SHAPE), dtype=np.float32).reshape(SHAPE)
    expected = _run(model, x)[0]
    assert merge_slices(model) == 1
    onnx.checker.check_model(model)
    assert [n.op_type for n in model.graph.node] == ["Slice"]
    np.testing.assert_array_equal(_run(model, x)[0], expected)


@pytest.mark.parametrize("case", ["shared axis", "mixed signs", "read elsewhere", "read twice", "steps"])
def test_slices_that_cannot_merge_stay(case):
    model = {"shared axis": lambda: _two_slices([2], [2]), "mixed signs": lambda: _two_slices([2], [-1]),
             "read elsewhere": lambda: _two_slices([2], [3], first_also_output=True),
             "read twice": _first_read_twice,
             "steps": lambda: _two_slices([2], [3], steps=[2])}[case]()
    assert merge_slices(model) == 0
    assert [n.op_type for n in model.graph.node if n.op_type == "Slice"] == ["Slice", "Slice"]


def test_the_sub_pixel_conv_transpose_crop_is_one_slice_on_onnx_runtime(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.ConvTranspose2d(8, 4, 4, 2, 1)).eval()
    calib = torch.rand(8, 3, 8, 8) * 2 - 1
    qmodel = recipes.quantize(model, inputs=calib, progress=False)
    path = tmp_path / "g.onnx"
    recipes.export(qmodel, path, "onnxruntime", example_input=calib[:1])
    nodes = onnx.load(str(path)).graph.node
    shuffled = {n.output[0] for n in nodes if n.op_type == "DepthToSpace"}
    crops = [n for n in nodes if n.op_type == "Slice" and n.input[0] in shuffled]
    assert len(crops) == 1 and not any(n.op_type == "Slice" and n.input[0] == crops[0].output[0] for n in nodes)
    with torch.no_grad():
        expected = qmodel(calib[:2]).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = np.concatenate([session.run(None, {session.get_inputs()[0].name: calib[i : i + 1].numpy()})[0] for i in range(2)])
    assert got.shape == expected.shape == (2, 4, 16, 16)
    np.testing.assert_allclose(got, expected, atol=0.05)
