"""Per-channel PReLU between 8-bit tensors, computed on 8 bits (ONNX Runtime target).

ONNX Runtime has no int8 PRelu kernel: in a QDQ graph every per-channel PReLU runs in float
between a DequantizeLinear and a QuantizeLinear (on the suite's compact SR net those float islands
took ~40% of the profiled time). For slopes ``a <= 1``, ``PReLU(x) = max(x, a * x)`` (``min``
for ``a >= 1``), and a quantizer is monotone, so

    Q_out(PReLU(x)) = Max(Q_out(x), Q_out(a * x))     (Min for a >= 1)

Both operands are 8-bit requantizations of the 8-bit input ``q`` (grid ``s_in, z_in``) onto the
output grid: a depthwise 1x1 QLinearConv whose weight is the sign of the slope (+1, -1 or 0) with
the slope's magnitude as its per-channel weight scale computes ``round(a * s_in * (q - z_in) /
s_out) + z_out``; ``Q_out(x)`` is the same with slope 1 (or ``q`` itself when both grids are the
same). Max / Min of two 8-bit tensors on one grid is exact; with slopes on both sides of 1 a
per-channel cap picks the one or the other (`_select`). The result equals the QDQ graph's up to the
float rounding of the requantization scale (one step at exact ties).
"""

from __future__ import annotations

import numpy as np
import onnx

from gan_brevitas.export.passes import channel_slopes, ir_constant

QUANTIZED_TYPES = (np.uint8, np.int8)


def _grid(node: "object") -> "tuple[np.ndarray, np.ndarray] | None":
    """(scale, zero point) of a per-tensor Q or DQ node with constant parameters; None otherwise."""
    if len(node.inputs) < 3:
        return None
    scale, zero = ir_constant(node.inputs[1]), ir_constant(node.inputs[2])
    if scale is None or zero is None or scale.size != 1 or zero.size != 1 or zero.dtype not in QUANTIZED_TYPES:
        return None
    return scale.reshape(()), zero.reshape(())


def _match(node: "object") -> "tuple | None":
    """(dequantize, slopes, quantize) when ``node`` is a per-channel PRelu of a 4-D tensor with
    constant slopes, read from a per-tensor DequantizeLinear and read only by one per-tensor QuantizeLinear of the same
    8-bit type; None otherwise."""
    if node.op_type != "PRelu" or node.domain not in ("", "ai.onnx"):
        return None
    x, slopes = node.inputs[0], channel_slopes(node)
    dequantize = x.producer() if x is not None else None
    users = list(node.outputs[0].uses())
    if (slopes is None or dequantize is None
            or dequantize.op_type != "DequantizeLinear" or len(users) != 1 or node.outputs[0].is_graph_output()
            or x.shape is None or len(x.shape) != 4):  # QLinearConv needs N, C, H, W
        return None
    quantize = users[0].node
    if quantize.op_type != "QuantizeLinear" or quantize.outputs[0].is_graph_output():
        return None
    grid_in, grid_out = _grid(dequantize), _grid(quantize)
    if grid_in is None or grid_out is None or grid_in[1].dtype != grid_out[1].dtype:
        return None
    return dequantize, slopes, quantize


def _requantize(ir: "object", graph: "object", name: str, q: "object", dequantize: "object",
                quantize: "object", slopes: np.ndarray) -> "object":
    """A depthwise 1x1 QLinearConv computing Q_out(slopes * DQ_in(q)) per channel."""
    channels = slopes.size
    sign = np.sign(slopes).astype(np.int8).reshape(channels, 1, 1, 1)
    magnitude = np.where(slopes == 0, 1.0, np.abs(slopes)).astype(np.float32)
    constants = {"weight": sign, "weight_scale": magnitude, "weight_zero": np.zeros(channels, np.int8)}
    values = {}
    for key, array in constants.items():
        values[key] = ir.Value(name=f"{name}.{key}", const_value=ir.tensor(array))
        graph.register_initializer(values[key])
    inputs = [q, dequantize.inputs[1], dequantize.inputs[2], values["weight"], values["weight_scale"],
              values["weight_zero"], quantize.inputs[1], quantize.inputs[2]]
    return ir.node("QLinearConv", inputs, attributes={"group": channels, "kernel_shape": [1, 1]}, name=name)


def _select(ir: "object", graph: "object", name: str, positive: "object", scaled: "object",
            slopes: np.ndarray, dtype: np.dtype) -> list:
    """Max(x, a x) where every slope is <= 1, Min(x, a x) where every slope is >= 1. Mixed:
    Max(low, Min(high, cap)) with low = Min(x, a x), high = Max(x, a x) and a per-channel cap at
    the type's top (keeps high) or bottom (keeps low): four 8-bit elementwise ops (Where with a
    channel mask was 8x slower in ONNX Runtime)."""
    if np.all(slopes <= 1):
        return [ir.node("Max", [positive, scaled], name=f"{name}.max")]
    if np.all(slopes >= 1):
        return [ir.node("Min", [positive, scaled], name=f"{name}.min")]
    info = np.iinfo(dtype)
    cap = np.where(slopes <= 1, info.max, info.min).astype(dtype).reshape(1, -1, 1, 1)
    cap_value = ir.Value(name=f"{name}.cap", const_value=ir.tensor(cap))
    graph.register_initializer(cap_value)
    high = ir.node("Max", [positive, scaled], name=f"{name}.high")
    low = ir.node("Min", [positive, scaled], name=f"{name}.low")
    capped = ir.node("Min", [high.outputs[0], cap_value], name=f"{name}.capped")
    chosen = ir.node("Max", [low.outputs[0], capped.outputs[0]], name=f"{name}.chosen")
    return [high, low, capped, chosen]


def prelu_on_int8(model_proto: onnx.ModelProto) -> int:
    """Rewrite every matching per-channel PRelu (see the module docstring) in place; returns how many."""
    import onnx_ir as ir
    import onnx_ir.passes.common

    model = ir.from_proto(onnx.shape_inference.infer_shapes(model_proto))  # each PRelu input's rank
    rewritten = 0
    for node in list(model.graph):
        matched = _match(node)
        if matched is None:
            continue
        dequantize, slopes, quantize = matched
        name = node.name or node.outputs[0].name
        q = dequantize.inputs[0]
        scaled = _requantize(ir, model.graph, f"{name}.slope", q, dequantize, quantize, slopes)
        added = [scaled]
        same_grid = all(np.array_equal(a, b) for a, b in zip(_grid(dequantize), _grid(quantize)))
        if same_grid:
            positive = q
        else:
            identity = _requantize(ir, model.graph, f"{name}.identity", q, dequantize, quantize,
                                   np.ones_like(slopes))
            added.append(identity)
            positive = identity.outputs[0]
        added += _select(ir, model.graph, name, positive, scaled.outputs[0], slopes, _grid(quantize)[1].dtype)
        model.graph.insert_after(quantize, added)
        ir.convenience.replace_all_uses_with(quantize.outputs[0], added[-1].outputs[0])
        rewritten += 1
    if rewritten:
        onnx_ir.passes.common.RemoveUnusedNodesPass()(model)
        model_proto.CopyFrom(ir.to_proto(model))
    return rewritten
