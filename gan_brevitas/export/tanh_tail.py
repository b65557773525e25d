"""A float-output conv that feeds a Tanh, computed as one int8 conv on two output ranges.

The default float tail keeps the last conv's result unquantized (8 bits on the pre-Tanh values
lose about 1 dB on the suite's translator). ONNX Runtime has no fast int8 conv with a float
output: `conv_integer` runs it as ConvInteger, 3.5x slower than QLinearConv on the translator's
blocked RGB conv (4.3 vs 1.2 ms at 1 thread), a fifth of the whole network's time.

A Tanh needs fine steps only where it is steep. So the conv is computed once with its output
channels repeated for each of the nested pre-Tanh ranges [-1, 1] and [-4, 4]: the copy for
range r gets the weight scales divided by ``bound_r / bound_0``, so one per-tensor output grid
(step 1/127, zero point 128) is a grid of step ``bound_r / 127`` for that copy (written as QDQ
nodes, which ONNX Runtime fuses into one QLinearConv). The copies are split apart, moved by the
same data-movement ops the conv output went through (DepthToSpace, Slice ... on 8 bits),
dequantized, and each value is taken from the finest copy that did not clip. The error after the Tanh is at most half a step times the Tanh's slope: 1/254 on [-1, 1],
0.42 x 4/254 = 0.0066 beyond, and 1 - tanh(4) = 0.0007 where the coarse copy clips: about 0.4
of one level of an 8-bit image. Measured on the suite (PSNR of the Tanh output vs the float
model): the translator and the DCGAN lose under 0.01 dB against the float tail, SRGAN 0.2 dB
(46.98 -> 46.77). The bias is the int32 bias of every copy. No calibration is needed: the
bounds follow from the Tanh alone.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import onnx

from gan_brevitas.export.conv_integer import activation_parts, constant_array, conv_bias, runs_float, weight_parts

#: Nested symmetric pre-Tanh ranges, finest first.
TANH_RANGES = (1.0, 4.0)
#: Ops that only move elements, through which a conv output may reach its Tanh.
_MOVES = ("DepthToSpace", "Slice", "Reshape", "Transpose", "Identity", "Squeeze", "Unsqueeze")
_ZERO_POINT = 128  # uint8: codes 0..255 hold -128..127 steps


def _path_to_tanh(conv: Any) -> Optional[list[Any]]:
    """The data-movement nodes from ``conv`` to a Tanh, each the only user of its input, with
    that Tanh last; None when the conv output goes anywhere else."""
    path, value = [], conv.outputs[0]
    while True:
        uses = list(value.uses())
        if len(uses) != 1 or value.is_graph_output():
            return None
        node = uses[0][0]
        if node.op_type == "Tanh" and node.domain in ("", "ai.onnx"):
            return path + [node]
        if node.op_type not in _MOVES or node.domain not in ("", "ai.onnx") or uses[0][1] != 0:
            return None
        path.append(node)
        value = node.outputs[0]


def _constant(ir: Any, graph: Any, name: str, values: np.ndarray) -> Any:
    value = ir.Value(name=name, const_value=ir.tensor(values))
    graph.register_initializer(value)
    return value


def _copies_conv(ir: Any, model: Any, conv: Any, name: str) -> Optional[list[Any]]:
    """DequantizeLinear (weights, bias) -> Conv -> QuantizeLinear computing every range's copy of
    ``conv``'s output channels on one uint8 grid: QDQ nodes, which ONNX Runtime fuses into one
    QLinearConv and other readers (OpenVINO) take as they are. None when ``conv`` does not fit,
    or its input is int8 (ONNX Runtime fuses the pattern only for uint8 inputs)."""
    weight, activation = weight_parts(conv), activation_parts(conv)
    has_bias = len(conv.inputs) > 2 and conv.inputs[2] is not None
    bias = conv_bias(conv)
    if weight is None or activation is None or (has_bias and bias is None):
        return None
    zero_point = constant_array(activation[1])
    if zero_point is None or zero_point.dtype != np.uint8:
        return None  # ONNX Runtime leaves an int8-input QDQ conv unfused here: a float Conv, slower than ConvInteger
    values, weight_scale = weight
    x_scale = np.float32(activation[2])
    ratios = [bound / TANH_RANGES[0] for bound in TANH_RANGES]
    scales = np.concatenate([(weight_scale.astype(np.float64) / r).astype(np.float32) for r in ratios])
    if bias is None:
        bias = np.zeros(values.shape[0], np.float32)
    # every copy sums the same integers: in the copy scaled by 1 / r both the products and the bias
    # stand for 1 / r of their value, so the bias is the same integer in every copy
    integer_bias = np.tile(np.round(bias.astype(np.float64) / (x_scale * weight_scale.astype(np.float64))), len(ratios))
    if np.any(np.abs(integer_bias) >= 2**31):
        return None
    g = model.graph
    weights = ir.node("DequantizeLinear", [_constant(ir, g, f"{name}.weights", np.concatenate([values] * len(ratios))),
                                           _constant(ir, g, f"{name}.weight_scales", scales)],
                      attributes={"axis": 0}, name=f"{name}.weights_dequantize")
    biases = ir.node("DequantizeLinear", [_constant(ir, g, f"{name}.bias", integer_bias.astype(np.int32)),
                                          _constant(ir, g, f"{name}.bias_scales", (x_scale * scales).astype(np.float32))],
                     attributes={"axis": 0}, name=f"{name}.bias_dequantize")
    copies = ir.node("Conv", [conv.inputs[0], weights.outputs[0], biases.outputs[0]], attributes=dict(conv.attributes),
                     name=f"{name}.ranges")
    quantized = ir.node("QuantizeLinear", [copies.outputs[0],
                                           _constant(ir, g, f"{name}.y_scale", np.array(TANH_RANGES[0] / 127, np.float32)),
                                           _constant(ir, g, f"{name}.y_zero_point", np.array(_ZERO_POINT, np.uint8))],
                        name=f"{name}.ranges_quantize")
    return [weights, biases, copies, quantized]


def _moved_copy(ir: Any, part: Any, path: list[Any], name: str) -> list[Any]:
    """``path``'s data-movement nodes applied to one copy (their other inputs are shared constants)."""
    nodes, value = [], part
    for index, node in enumerate(path):
        moved = ir.node(node.op_type, [value, *node.inputs[1:]], attributes=dict(node.attributes),
                        name=f"{name}.move{index}", domain=node.domain)
        nodes.append(moved)
        value = moved.outputs[0]
    return nodes


def _rewrite(model: Any, conv: Any) -> bool:
    import onnx_ir as ir

    group = conv.attributes.get("group")
    if group is not None and group.as_int() != 1:
        return False  # the copies are stacked along the output channels, which groups would split
    path = _path_to_tanh(conv)
    if path is None:
        return False
    name = conv.name or conv.outputs[0].name
    copies = _copies_conv(ir, model, conv, name)
    if copies is None:
        return False
    channels = weight_parts(conv)[0].shape[0]
    g = model.graph
    sizes = _constant(ir, g, f"{name}.split_sizes", np.array([channels] * len(TANH_RANGES), np.int64))
    split = ir.node("Split", [copies[-1].outputs[0], sizes], attributes={"axis": 1}, num_outputs=len(TANH_RANGES),
                    name=f"{name}.split")
    added, dequantized = [*copies, split], []
    zero_point = _constant(ir, g, f"{name}.zero_point", np.array(_ZERO_POINT, np.uint8))
    for r, bound in enumerate(TANH_RANGES):
        moves = _moved_copy(ir, split.outputs[r], path[:-1], f"{name}.range{r}")
        moved = moves[-1].outputs[0] if moves else split.outputs[r]
        step = _constant(ir, g, f"{name}.range{r}.step", np.array(bound / 127, np.float32))
        dq = ir.node("DequantizeLinear", [moved, step, zero_point], name=f"{name}.range{r}.dequantize")
        added += [*moves, dq]
        dequantized.append((dq.outputs[0], bound))
    picks, chosen = _finest_unclipped(ir, g, name, dequantized)
    model.graph.insert_after(conv, added + picks)
    path[-1].replace_input_with(0, chosen)  # the conv and its moves are left unused, and removed
    return True


def _finest_unclipped(ir: Any, graph: Any, name: str, dequantized: list[tuple[Any, float]]) -> tuple[list[Any], Any]:
    """(Abs / Less / Where nodes, their result): each value from the finest copy that did not clip
    (a code strictly inside its range); ``dequantized``: (copy, bound), finest first."""
    nodes, chosen = [], dequantized[-1][0]
    for r in range(len(dequantized) - 2, -1, -1):
        value, bound = dequantized[r]
        limit = _constant(ir, graph, f"{name}.range{r}.inside", np.array(bound * 126.5 / 127, np.float32))
        magnitude = ir.node("Abs", [value], name=f"{name}.range{r}.abs")
        inside = ir.node("Less", [magnitude.outputs[0], limit], name=f"{name}.range{r}.inside")
        pick = ir.node("Where", [inside.outputs[0], value, chosen], name=f"{name}.range{r}.pick")
        nodes += [magnitude, inside, pick]
        chosen = pick.outputs[0]
    return nodes, chosen


def tanh_tails_on_ranges(model_proto: onnx.ModelProto) -> list[str]:
    """Rewrite, in place, every float-output 8-bit conv whose result reaches a Tanh only through
    data movement (see the module docstring); returns the rewritten convs' names."""
    import onnx_ir as ir
    import onnx_ir.passes.common

    model = ir.from_proto(model_proto)
    rewritten = [conv.name for conv in list(model.graph) if runs_float(conv) and _rewrite(model, conv)]
    if rewritten:
        onnx_ir.passes.common.RemoveUnusedNodesPass()(model)
        onnx_ir.passes.common.TopologicalSortPass()(model)
        # the copies' shapes: OpenVINO's reader needs the rank of a DepthToSpace input
        model_proto.CopyFrom(onnx.shape_inference.infer_shapes(ir.to_proto(model)))
    return rewritten
