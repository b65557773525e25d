"""`prelu_on_int8`: a per-channel PRelu between a DequantizeLinear and a QuantizeLinear becomes
8-bit requantizations and Max / Min; ONNX Runtime's result equals the QDQ graph's on every code."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from gan_brevitas.export.prelu_int8 import prelu_on_int8

ort = pytest.importorskip("onnxruntime")

C = 8
SLOPES = {
    "at_most_one": np.linspace(-1.0, 1.0, C),
    "at_least_one": np.linspace(1.0, 2.5, C),
    "mixed": np.array([-1.3, -0.2, 0.0, 0.25, 0.99, 1.0, 1.4, 2.1]),
}


def _qdq_prelu(slopes: np.ndarray, dtype: type, same_grid: bool, second_reader: bool = False,
               slope_shape: tuple = (C, 1, 1), width: int = 16) -> onnx.ModelProto:
    """q -> DequantizeLinear -> PRelu(slopes) -> QuantizeLinear -> Identity (the graph output)."""
    zero_in, zero_out = (97, 40) if dtype is np.uint8 else (-31, 12)
    scale_in, scale_out = (0.0371, 0.0371) if same_grid else (0.0371, 0.0213)
    zero_out = zero_in if same_grid else zero_out
    elem = TensorProto.UINT8 if dtype is np.uint8 else TensorProto.INT8
    inits = [numpy_helper.from_array(np.array(v, dtype=t), name) for name, v, t in (
        ("s_in", scale_in, np.float32), ("z_in", zero_in, dtype), ("s_out", scale_out, np.float32),
        ("z_out", zero_out, dtype))]
    inits.append(numpy_helper.from_array(slopes.astype(np.float32).reshape(slope_shape), "slope"))
    nodes = [helper.make_node("DequantizeLinear", ["q", "s_in", "z_in"], ["x"]),
             helper.make_node("PRelu", ["x", "slope"], ["y"]),
             helper.make_node("QuantizeLinear", ["y", "s_out", "z_out"], ["qy"]),
             helper.make_node("Identity", ["qy"], ["out"])]
    outputs = [helper.make_tensor_value_info("out", elem, [1, C, 16, width])]
    if second_reader:
        nodes.append(helper.make_node("Relu", ["y"], ["other"]))
        outputs.append(helper.make_tensor_value_info("other", TensorProto.FLOAT, [1, C, 16, width]))
    graph = helper.make_graph(nodes, "prelu", [helper.make_tensor_value_info("q", elem, [1, C, 16, width])],
                              outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run(model: onnx.ModelProto, q: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"q": q})[0]


def _every_code(dtype: type) -> np.ndarray:
    info = np.iinfo(dtype)
    codes = np.arange(info.min, info.max + 1, dtype=np.int64)  # 256 codes, on every channel
    return np.broadcast_to(codes.reshape(1, 1, 16, 16), (1, C, 16, 16)).astype(dtype)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
@pytest.mark.parametrize("same_grid", [False, True])
@pytest.mark.parametrize("slopes", sorted(SLOPES))
def test_every_code_matches_the_qdq_graph(slopes, same_grid, dtype):
    model = _qdq_prelu(SLOPES[slopes], dtype, same_grid)
    q = _every_code(dtype)
    expected = _run(model, q)
    assert prelu_on_int8(model) == 1
    ops = [node.op_type for node in model.graph.node]
    assert "PRelu" not in ops and "DequantizeLinear" not in ops and "QuantizeLinear" not in ops, ops
    assert ops.count("QLinearConv") == (1 if same_grid else 2), ops
    differs = _run(model, q).astype(np.int64) != expected.astype(np.int64)
    assert np.abs(_run(model, q).astype(np.int64) - expected).max() <= 1
    # Only where the exact value lies half-way between two codes (float rounding breaks the tie)
    assert np.all(_at_a_tie(SLOPES[slopes], q, model)[differs]), np.argwhere(differs)[:4]


def _at_a_tie(slopes: np.ndarray, q: np.ndarray, model: onnx.ModelProto) -> np.ndarray:
    grid = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    s_in, z_in, s_out = (float(grid[name]) for name in ("s_in", "z_in", "s_out"))
    x = s_in * (q.astype(np.float64) - z_in)
    y = np.where(x >= 0, x, slopes.reshape(1, C, 1, 1) * x) / s_out
    return np.abs(np.abs(y - np.floor(y)) - 0.5) < 1e-4


def test_slopes_on_one_side_of_one_need_one_elementwise_op():
    below = _qdq_prelu(SLOPES["at_most_one"], np.uint8, False)
    above = _qdq_prelu(SLOPES["at_least_one"], np.uint8, False)
    prelu_on_int8(below), prelu_on_int8(above)
    assert [n.op_type for n in below.graph.node if n.op_type in ("Max", "Min")] == ["Max"]
    assert [n.op_type for n in above.graph.node if n.op_type in ("Max", "Min")] == ["Min"]


def test_a_prelu_output_read_by_a_float_op_is_left_alone():
    model = _qdq_prelu(SLOPES["mixed"], np.uint8, False, second_reader=True)
    before = model.SerializeToString()
    assert prelu_on_int8(model) == 0
    assert model.SerializeToString() == before


def test_slopes_along_another_axis_are_left_alone():
    from gan_brevitas.export.passes import prelu_as_min_mul_add

    model = _qdq_prelu(SLOPES["mixed"], np.uint8, False, slope_shape=(C,), width=C)  # one slope per column
    assert prelu_on_int8(model) == 0
    assert prelu_as_min_mul_add(model) == 0


def test_a_computed_slope_is_left_alone():
    model = _qdq_prelu(SLOPES["mixed"], np.uint8, False)
    slope = next(init for init in model.graph.initializer if init.name == "slope")
    model.graph.initializer.remove(slope)
    model.graph.input.append(helper.make_tensor_value_info("slope", TensorProto.FLOAT, [C, 1, 1]))
    assert prelu_on_int8(model) == 0


def test_the_profiler_counts_8bit_ops_as_int8_and_the_float_island_as_float(tmp_path):
    from gan_brevitas.export.ort import profile_time_share

    model = _qdq_prelu(SLOPES["mixed"], np.uint8, False)
    q = _every_code(np.uint8)
    onnx.save(model, tmp_path / "qdq.onnx")
    before = profile_time_share(tmp_path / "qdq.onnx", q, runs=2, threads=1)
    assert before.outside_int8 > 0.5 and {"PRelu", "DequantizeLinear"} <= {op for op, _ in before.top}, before
    prelu_on_int8(model)
    onnx.save(model, tmp_path / "int8.onnx")
    after = profile_time_share(tmp_path / "int8.onnx", q, runs=2, threads=1)
    assert after.outside_int8 == 0.0 and after.other_ms == 0.0 and after.int8_ms > 0.0, after


def test_time_share_splits_the_time_per_call_between_int8_kernels_and_the_rest():
    from gan_brevitas.export.ort import time_share

    share = time_share({"QLinearConv": 300.0, "InstanceNormalization": 80.0, "Tanh": 20.0},
                       lambda op: op.startswith("QLinear"), calls=2)
    assert share.outside_int8 == pytest.approx(0.25)
    assert (share.int8_ms, share.other_ms) == (pytest.approx(0.15), pytest.approx(0.05))
    assert share.top == (("InstanceNormalization", 0.2), ("Tanh", 0.05))


def test_prelu_after_a_linear_layer_keeps_its_float_form_and_exports(tmp_path):
    """A PReLU of a 2-D (batch, features) tensor has no 1x1-conv form: it is left to the float
    rewrite, and the file still computes what the fake-quant model does."""
    import torch
    from torch import nn

    from gan_brevitas import recipes
    from gan_brevitas.deploy.parity import parity
    from tests.helpers import engine_exact_config

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.PReLU(32), nn.Linear(32, 8)).eval()
    with torch.no_grad():
        model[1].weight.copy_(torch.linspace(-0.5, 1.5, 32))
    x = torch.randn(64, 16)
    qmodel = recipes.quantize(model, inputs=x, num_samples=64, progress=False, config=engine_exact_config())
    report = recipes.export(qmodel, tmp_path / "mlp.onnx", "onnxruntime", example_input=x[:1])
    assert not [c for c in report.conversions if "computed on 8 bits" in c], report.conversions
    result = parity(qmodel, tmp_path / "mlp.onnx", torch.randn(8, 16), n=8)
    assert result.mae <= result.output_step, result.format()
