"""Graph passes applied to the QCDQ ONNX after Brevitas exports it.

* `remove_initializer_inputs`: Brevitas (TorchScript exporter) may list initializers as graph
  inputs; ONNX Runtime then treats them as overridable and cannot constant-fold the weight
  DequantizeLinear, and the int8 model runs slower than fp32.
* `move_qdq_across_data_movement`: Pad (reflect), DepthToSpace, Slice, Reshape ... run on the
  8-bit tensor (Q hoisted above them, DQ sunk below): exact, and a quarter of the traffic.
* `remove_requantize`: DequantizeLinear -> QuantizeLinear with the same scale, zero point and
  type is the identity on the 8-bit tensor (quantizers aligned by `quant.align`): both go.
* `concat_int8`: Concat(DQ(a), DQ(b)) -> Q on one grid becomes Concat(a, b) on the 8-bit
  tensors (exact: concatenation only moves elements).
* `prelu_as_leaky_relu`: a PRelu with one slope is a LeakyRelu (exact); ONNX Runtime fuses
  DQ -> LeakyRelu -> Q into its int8 QLinearLeakyRelu, PRelu has no int8 kernel.
* `prelu_as_min_mul_add`: a PRelu with one slope per channel becomes x + (slope - 1) * min(x, 0)
  (the same values up to float rounding, far below the quantization step that follows);
  ONNX Runtime's PRelu kernel broadcasts the slopes slowly (39% of the suite's compact SR net's
  time on 2 threads; 18.4 vs 30.5 ms for the whole net with the rewrite).
* `silu_as_quick_gelu`: x * Sigmoid(x) becomes ONNX Runtime's one-op QuickGelu(alpha=1) (the
  same MLAS logistic): ONNX Runtime gives each consumer of a DequantizeLinear its own copy, so
  the two-op form dequantized the tensor twice and never fused (SRGAN SiLU blocks).
* `merge_slices`: a Slice that only feeds another Slice on other axes joins it (exact: the same
  elements are kept). The exporter writes the sub-pixel ConvTranspose crop ``y[..., a:b, c:d]``
  as two Slices, each a kernel call and a copy in ONNX Runtime.
* `fold_weight_clips`: Brevitas writes a weight of fewer than 8 bits as an int8 constant -> Clip
  to its range -> DequantizeLinear; the Clip of the constant becomes the clipped constant (exact),
  the int8 weight pattern ONNX Runtime and OpenVINO look for (with the Clip they ran those convs in
  float).
* `pack_int4`: weights of at most 4 bits, exported as int8 + Clip, become ONNX INT4
  initializers (opset 21), two values per byte: about 8x smaller than fp32.
* `cast_float_parts_fp16`: the float parts (normalisation, attention, activations, Tanh) run
  in fp16 between explicit Casts; the int8 parts (Q -> DQ -> Conv -> Q) stay as they are.
  TensorRT 11 networks are strongly typed: the graph, not a builder flag, sets the precision.
* `set_metadata`: the quantization record (method, config, bits, target) in metadata_props.
* `fold_weight_quantize`: a weight exported as float -> QuantizeLinear (ModelOpt's graphs)
  becomes the int8 initializer the QuantizeLinear would compute.
* `drop_zero_weight_zero_points`: a weight DequantizeLinear's all-zero zero point input is
  dropped (0 is the default: exact). OpenVINO reads an explicit zero point as a Subtract on
  the weights, and its CPU plugin then ran the conv / ConvTranspose in f32.
"""

from __future__ import annotations

import logging
from typing import Mapping, Optional

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from gan_brevitas.errors import ExportError
from gan_brevitas.export.graph import WEIGHTED_OPS, GraphIndex, attribute, opset_version

log = logging.getLogger(__name__)

INT4_MIN_OPSET = 21
METADATA_PREFIX = "gan_brevitas."


def drop_zero_weight_zero_points(model_proto: onnx.ModelProto) -> int:
    """Drop the all-zero zero point of every DequantizeLinear of a constant (weight) tensor, in
    place; returns how many were dropped.

    Exact: a missing zero point is 0 and the output type is the input's. Why: OpenVINO turns
    an explicit weight zero point into a Subtract on the weights, and its CPU plugin then ran
    the layer in f32 (suite sketch translator, every conv with per-channel zero points and both
    ConvTransposes; without the zero points all of them ran int8).
    """
    import onnx_ir as ir
    import onnx_ir.passes.common

    model = ir.from_proto(model_proto)
    dropped = 0
    for node in ir.traversal.RecursiveGraphIterator(model.graph):
        if node.op_type != "DequantizeLinear" or len(node.inputs) < 3 or node.inputs[2] is None:
            continue
        weight, zero_point = node.inputs[0], node.inputs[2]
        if weight is None or weight.const_value is None or zero_point.const_value is None:
            continue
        if not np.any(zero_point.const_value.numpy()):
            node.resize_inputs(2)
            dropped += 1
    if dropped:
        ir.passes.common.RemoveUnusedNodesPass()(model)  # the dropped zero points too
        model_proto.CopyFrom(ir.to_proto(model))
    return dropped


#: The uint8 zero point that holds the signed int8 grid: q_u8 = q_i8 + 128.
_SIGNED_AS_UINT8 = "gan_brevitas.uint8_zero_point_128"


#: What a uint8 zero-point-128 tensor may feed in OpenVINO without leaving its int8 kernels
#: (an MVN or a ConvTranspose reading one ran in f32).
_UINT8_READERS = ("Conv", "Add")


def _dequantize_after_pads(index: GraphIndex, quantize: onnx.NodeProto, node: onnx.NodeProto) -> Optional[onnx.NodeProto]:
    """The DequantizeLinear (same scale and zero point as ``quantize``) that ``node`` leads to
    through reflect / edge Pads, each read by one node only; None if it leads elsewhere."""
    while node.op_type == "Pad" and _moves_data(index, node, ("Pad",)):
        users = index.consumers.get(node.output[0], [])
        if len(users) != 1 or node.output[0] in index.graph_outputs:
            return None
        node = users[0]
    if node.op_type != "DequantizeLinear" or len(node.input) < 3 or not (
            _same_constant(index, quantize.input[1], node.input[1])
            and _same_constant(index, quantize.input[2], node.input[2])):
        return None
    return node


def _signed_conv_input(index: GraphIndex, quantize: onnx.NodeProto) -> Optional[list[onnx.NodeProto]]:
    """[Q, its DQs] when ``quantize`` is a per-tensor int8 QuantizeLinear with zero point 0 whose
    every reader is a DequantizeLinear (through Pads) feeding only convs and adds, at least one
    a conv; None otherwise."""
    if len(quantize.input) < 3 or quantize.output[0] in index.graph_outputs:
        return None
    zero_point, scale = index.constant(quantize.input[2]), index.constant(quantize.input[1])
    if zero_point is None or scale is None or zero_point.dtype != np.int8 or zero_point.size != 1 or int(zero_point) != 0:
        return None
    dequantizers = [_dequantize_after_pads(index, quantize, user) for user in index.consumers.get(quantize.output[0], [])]
    if not dequantizers or any(dq is None or dq.output[0] in index.graph_outputs for dq in dequantizers):
        return None
    readers = [user.op_type for dq in dequantizers for user in index.consumers.get(dq.output[0], [])]
    if "Conv" not in readers or any(op not in _UINT8_READERS for op in readers):
        return None
    return [quantize, *dequantizers]


def signed_conv_inputs_as_uint8(model_proto: onnx.ModelProto) -> int:
    """Hold every signed int8 conv input (zero point 0) as uint8 with zero point 128, in place;
    returns how many Q/DQ pairs changed.

    Exact: the same 256 levels, q_u8 = q_i8 + 128, and reflect / edge Pads between them only copy
    values. A quantized tensor changes only where every reader of it is a conv or an add. Why: OpenVINO runs a conv whose quantized input reaches it through a Pad in its
    signed-input kernel when the input is int8, about 10% slower than the uint8 one (VNNI
    multiplies uint8 by int8); with a uint8 zero point it takes the uint8 kernel, as it does
    for NNCF's model (CycleGAN-9: the 9 residual-block convs after a reflection pad).
    """
    index = GraphIndex.build(model_proto.graph)
    chains = [chain for node in model_proto.graph.node if node.op_type == "QuantizeLinear"
              for chain in [_signed_conv_input(index, node)] if chain is not None]
    if chains:
        model_proto.graph.initializer.append(numpy_helper.from_array(np.array(128, np.uint8), _SIGNED_AS_UINT8))
    for chain in chains:
        for node in chain:
            node.input[2] = _SIGNED_AS_UINT8
    if chains:
        _drop_unused_initializers(model_proto)
    return len(chains)


def remove_initializer_inputs(model: onnx.ModelProto) -> int:
    """Drop initializers from graph.input (in place); returns how many were listed."""
    names = {init.name for init in model.graph.initializer}
    keep = [i for i in model.graph.input if i.name not in names]
    removed = len(model.graph.input) - len(keep)
    if removed:
        del model.graph.input[:]
        model.graph.input.extend(keep)
    return removed


def set_metadata(model: onnx.ModelProto, values: Mapping[str, str]) -> None:
    """Store ``values`` as metadata_props under the ``gan_brevitas.`` prefix (in place)."""
    existing = {p.key: p for p in model.metadata_props}
    for key, value in values.items():
        full = METADATA_PREFIX + key
        if full in existing:
            existing[full].value = value
        else:
            entry = model.metadata_props.add()
            entry.key, entry.value = full, value


def read_metadata(model: onnx.ModelProto) -> dict[str, str]:
    """The ``gan_brevitas.`` metadata of a model, prefix removed."""
    return {
        p.key[len(METADATA_PREFIX):]: p.value for p in model.metadata_props if p.key.startswith(METADATA_PREFIX)
    }


def pack_int4(model: onnx.ModelProto) -> int:
    """Replace every int8 weight + Clip(-8..7 or narrower) feeding a DequantizeLinear by an INT4
    initializer (in place); returns the number of weights packed. Needs opset >= 21."""
    if opset_version(model) < INT4_MIN_OPSET:
        raise ExportError(f"INT4 weights need ONNX opset >= {INT4_MIN_OPSET}; export with opset={INT4_MIN_OPSET}.")
    graph = model.graph
    index = GraphIndex.build(graph)
    packed = 0
    clips = []
    for node in graph.node:
        if node.op_type != "DequantizeLinear":
            continue
        clip = index.producer.get(node.input[0])
        if clip is None or clip.op_type != "Clip" or len(clip.input) < 3:
            continue
        weight = index.constant(clip.input[0])
        low, high = index.constant(clip.input[1]), index.constant(clip.input[2])
        if weight is None or low is None or high is None or weight.dtype != np.int8:
            continue
        if int(low) < -8 or int(high) > 7:
            continue
        zero_point = index.constant(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if zero_point is not None and np.any(zero_point != 0):
            continue
        values = np.clip(weight, int(low), int(high))
        name = f"{clip.input[0]}_int4"
        graph.initializer.append(
            helper.make_tensor(name, TensorProto.INT4, values.shape, _pack_nibbles(values), raw=True)
        )
        node.input[0] = name
        if len(node.input) > 2:
            del node.input[2:]  # zero point 0 is the default; its type would have to be INT4 too
        clips.append(clip)
        packed += 1
    for clip in clips:
        graph.node.remove(clip)
    _drop_unused_initializers(model)
    return packed


def _pack_nibbles(values: np.ndarray) -> bytes:
    """Two signed 4-bit values per byte, first value in the low nibble (ONNX's INT4 layout)."""
    flat = values.astype(np.int8).ravel()
    if flat.size % 2:
        flat = np.append(flat, np.int8(0))
    nibbles = (flat & 0x0F).astype(np.uint8)
    return (nibbles[0::2] | (nibbles[1::2] << 4)).tobytes()


def _drop_unused_initializers(model: onnx.ModelProto) -> None:
    used = {name for node in model.graph.node for name in node.input}
    used |= {o.name for o in model.graph.output}
    keep = [init for init in model.graph.initializer if init.name in used]
    if len(keep) != len(model.graph.initializer):
        del model.graph.initializer[:]
        model.graph.initializer.extend(keep)


#: Ops that only move or copy elements: a per-tensor Q/DQ commutes with them exactly.
DATA_MOVEMENT = ("DepthToSpace", "SpaceToDepth", "Slice", "Reshape", "Transpose", "Squeeze", "Unsqueeze",
                  "Flatten", "Identity", "Pad", "Resize", "Upsample")


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _moves_data(index: GraphIndex, node: onnx.NodeProto, ops: tuple[str, ...] = DATA_MOVEMENT) -> bool:
    if node.op_type not in ops:
        return False
    if node.op_type == "Pad":
        # reflect / edge copy elements; a constant pad would need the zero point as its value.
        return _text(attribute(node, "mode", b"constant")) in ("reflect", "edge")
    if node.op_type in ("Resize", "Upsample"):
        return _text(attribute(node, "mode", b"nearest")) == "nearest"  # copies; linear modes mix values
    return True


def _per_tensor(index: GraphIndex, node: onnx.NodeProto) -> bool:
    scale = index.constant(node.input[1])
    return scale is not None and scale.size == 1 and not index.is_constant(node.input[0])


def _swap(first: onnx.NodeProto, second: onnx.NodeProto, middle: str) -> None:
    """``first -> second`` becomes ``second -> first`` (both read and write one tensor there);
    the tensor between them is renamed ``middle``, the chain's input and output keep their names."""
    output = second.output[0]
    second.input[0] = first.input[0]
    second.output[0] = middle
    first.input[0] = middle
    first.output[0] = output


def _hoist_quantize(index: GraphIndex, node: onnx.NodeProto, ops: tuple[str, ...]) -> bool:
    """A -> mover -> Q -> ...  becomes  A -> Q -> mover -> ... (returns whether it moved)."""
    mover = index.producer.get(node.input[0])
    if mover is None or not _moves_data(index, mover, ops):
        return False
    float_out = mover.output[0]
    if len(index.consumers.get(float_out, [])) != 1 or float_out in index.graph_outputs:
        return False
    _swap(mover, node, f"{float_out}/quantized")
    return True


def _sink_dequantize(index: GraphIndex, node: onnx.NodeProto, ops: tuple[str, ...]) -> bool:
    """... -> DQ -> mover -> B  becomes  ... -> mover -> DQ -> B (returns whether it moved)."""
    users = index.consumers.get(node.output[0], [])
    if len(users) != 1 or node.output[0] in index.graph_outputs:
        return False
    mover = users[0]
    if not _moves_data(index, mover, ops) or mover.input[0] != node.output[0]:
        return False
    if any(c.op_type in ("MatMul", "Gemm") for c in index.consumers.get(mover.output[0], [])):
        # Keep activation x activation products (attention) float: ONNX Runtime would fuse a
        # DQ right before them into MatMulIntegerToFloat, measured slower than its float
        # FusedMatMul on SAGAN's attention.
        return False
    _swap(node, mover, f"{mover.output[0]}/int8")
    return True


def move_qdq_across_data_movement(model: onnx.ModelProto, ops: tuple[str, ...] = DATA_MOVEMENT) -> int:
    """Run data-movement ops (Pad reflect, DepthToSpace, Slice, Reshape, ...) on the 8-bit
    tensor instead of the float one (in place): hoist each per-tensor QuantizeLinear above
    them and sink each DequantizeLinear below them. Exact (they only move elements, and
    quantization is elementwise with one scale) with a quarter of the memory traffic; ONNX
    Runtime otherwise runs, e.g., CycleGAN's reflection Pads and the sub-pixel DepthToSpace +
    Slice in float. Returns the number of moves.
    """
    graph = model.graph
    moves = 0
    while True:
        index = GraphIndex.build(graph)
        moved = False
        for node in graph.node:
            if node.op_type not in ("QuantizeLinear", "DequantizeLinear") or not _per_tensor(index, node):
                continue
            step = _hoist_quantize if node.op_type == "QuantizeLinear" else _sink_dequantize
            if step(index, node, ops):
                moved = True
                break  # the index is stale: rebuild it
        if not moved:
            break
        moves += 1
    if moves:
        _topological_sort(graph)
        del graph.value_info[:]
    return moves


def _same_constant(index: GraphIndex, a: str, b: str) -> bool:
    if a == b:
        return True
    va, vb = index.constant(a), index.constant(b)
    return va is not None and vb is not None and va.dtype == vb.dtype and np.array_equal(va, vb)


def _is_requantize(index: GraphIndex, dq: onnx.NodeProto, q: onnx.NodeProto) -> bool:
    """``q`` undoes ``dq`` exactly: same scale, zero point (so the same type) and axis."""
    if len(dq.input) < 3 or len(q.input) < 3 or not _same_constant(index, dq.input[1], q.input[1]):
        return False
    if not _same_constant(index, dq.input[2], q.input[2]):
        return False
    return attribute(dq, "axis", 1) == attribute(q, "axis", 1) or index.constant(q.input[1]).size == 1


def remove_requantize(model: onnx.ModelProto) -> int:
    """Drop every QuantizeLinear that re-quantizes a DequantizeLinear's output on the same grid
    (in place): its consumers read the 8-bit tensor directly. Returns how many were dropped."""
    graph = model.graph
    index = GraphIndex.build(graph)
    removed = []
    for q in graph.node:
        if q.op_type != "QuantizeLinear":
            continue
        dq = index.producer.get(q.input[0])
        if dq is None or dq.op_type != "DequantizeLinear" or not _is_requantize(index, dq, q):
            continue
        if q.output[0] in index.graph_outputs:
            continue
        for consumer in index.consumers.get(q.output[0], []):
            consumer.input[:] = [dq.input[0] if name == q.output[0] else name for name in consumer.input]
        removed.append(q)
    return _remove_nodes(graph, removed)


def _remove_nodes(graph: onnx.GraphProto, nodes: list[onnx.NodeProto]) -> int:
    """Remove ``nodes`` (already bypassed), then what only they fed; returns how many were removed."""
    for node in nodes:
        graph.node.remove(node)
    if nodes:
        _drop_dead_nodes(graph)
        del graph.value_info[:]
    return len(nodes)


def _drop_dead_nodes(graph: onnx.GraphProto) -> None:
    """Remove nodes none of whose outputs is used (DequantizeLinears left without consumers)."""
    while True:
        used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
        dead = [node for node in graph.node if not any(out in used for out in node.output)]
        if not dead:
            return
        for node in dead:
            graph.node.remove(node)


def _same_grid(index: GraphIndex, a: onnx.NodeProto, b: onnx.NodeProto) -> bool:
    return (len(a.input) >= 3 and len(b.input) >= 3 and _same_constant(index, a.input[1], b.input[1])
            and _same_constant(index, a.input[2], b.input[2]))


def concat_int8(model: onnx.ModelProto) -> int:
    """Concatenate the 8-bit tensors directly where every input of a Concat is dequantized on
    the grid its only consumer, a QuantizeLinear, quantizes to (in place). Returns the number
    of Concats moved."""
    graph = model.graph
    index = GraphIndex.build(graph)
    removed = []
    for node in graph.node:
        if node.op_type != "Concat" or node.output[0] in index.graph_outputs:
            continue
        users = index.consumers.get(node.output[0], [])
        if len(users) != 1 or users[0].op_type != "QuantizeLinear" or not _per_tensor(index, users[0]):
            continue
        q = users[0]
        dqs = [index.producer.get(name) for name in node.input]
        if not all(dq is not None and dq.op_type == "DequantizeLinear" and _same_grid(index, dq, q) for dq in dqs):
            continue
        node.input[:] = [dq.input[0] for dq in dqs]
        node.output[0] = q.output[0]
        removed.append(q)
    return _remove_nodes(graph, removed)


def _constant_through_reshapes(index: GraphIndex, name: str) -> "np.ndarray | None":
    """The values of ``name`` when it is a constant, possibly behind Unsqueeze / Reshape nodes
    (the exporter unsqueezes PReLU slopes); None otherwise."""
    for _ in range(4):
        value = index.constant(name)
        if value is not None:
            return value
        producer = index.producer.get(name)
        if producer is None or producer.op_type not in ("Unsqueeze", "Reshape", "Squeeze", "Identity"):
            return None
        name = producer.input[0]
    return None


def _slice_bounds(index: GraphIndex, node: onnx.NodeProto) -> "tuple[np.ndarray, np.ndarray, np.ndarray] | None":
    """(starts, ends, axes) of a Slice whose bounds and axes are constants and whose steps are 1;
    None otherwise."""
    if len(node.input) < 4 or not node.input[3]:
        return None  # no axes: they would depend on the rank
    if len(node.input) > 4 and node.input[4]:
        steps = _constant_through_reshapes(index, node.input[4])
        if steps is None or np.any(steps != 1):
            return None
    bounds = [_constant_through_reshapes(index, name) for name in node.input[1:4]]
    if any(b is None for b in bounds):
        return None
    return tuple(np.asarray(b, dtype=np.int64).reshape(-1) for b in bounds)  # type: ignore[return-value]


def _merge_slice_pair(index: GraphIndex, graph: onnx.GraphProto, second: onnx.NodeProto) -> bool:
    """Merge the Slice feeding ``second`` into it when both slice different axes (in place)."""
    first = index.producer.get(second.input[0])
    if first is None or first.op_type != "Slice" or first.output[0] in index.graph_outputs:
        return False
    if len(index.consumers.get(first.output[0], [])) != 1:
        return False
    a, b = _slice_bounds(index, first), _slice_bounds(index, second)
    if a is None or b is None:
        return False
    axes = np.concatenate([a[2], b[2]])
    if len(set(axes.tolist())) != len(axes) or not (np.all(axes >= 0) or np.all(axes < 0)):
        return False  # a shared axis, or signs mixed (disjointness would depend on the rank)
    names = []
    for role, values in zip(("starts", "ends", "axes"), (np.concatenate([a[0], b[0]]), np.concatenate([a[1], b[1]]), axes)):
        names.append(f"{second.output[0]}/merged_{role}")
        graph.initializer.append(numpy_helper.from_array(values, names[-1]))
    second.input[:] = [first.input[0], *names]
    graph.node.remove(first)
    return True


def _clip_bound(index: GraphIndex, clip: onnx.NodeProto, position: int) -> "tuple[bool, np.ndarray | None]":
    """(known, value) of a Clip's min (1) or max (2) input: known with None when it is absent."""
    if len(clip.input) <= position or not clip.input[position]:
        return True, None
    value = index.constant(clip.input[position])
    return value is not None, value


def fold_weight_clips(model: onnx.ModelProto) -> int:
    """Replace each Clip of a constant integer tensor by the clipped constant (in place, exact);
    returns how many were folded."""
    graph = model.graph
    index = GraphIndex.build(graph)
    folded = []
    for clip in graph.node:
        if clip.op_type != "Clip" or clip.output[0] in index.graph_outputs:
            continue
        values = index.constant(clip.input[0])
        (low_known, low), (high_known, high) = _clip_bound(index, clip, 1), _clip_bound(index, clip, 2)
        if values is None or values.dtype.kind not in "iu" or not (low_known and high_known):
            continue
        clipped = np.clip(values, values.min() if low is None else low, values.max() if high is None else high)
        graph.initializer.append(numpy_helper.from_array(clipped.astype(values.dtype), clip.output[0]))
        folded.append(clip)
    for clip in folded:
        graph.node.remove(clip)
    if folded:
        _drop_dead_nodes(graph)
        _drop_unused_initializers(model)
    return len(folded)


def merge_slices(model: onnx.ModelProto) -> int:
    """Merge each Slice that only feeds another Slice on other axes into it (in place, exact);
    returns how many Slices were merged away."""
    graph = model.graph
    merged = 0
    while True:
        index = GraphIndex.build(graph)
        done = next((True for node in graph.node if node.op_type == "Slice" and _merge_slice_pair(index, graph, node)), False)
        if not done:
            break
        merged += 1
    if merged:
        _drop_dead_nodes(graph)
        _drop_unused_initializers(model)
    return merged


def prelu_as_leaky_relu(model: onnx.ModelProto) -> int:
    """Replace each PRelu whose slope is one constant value by LeakyRelu(alpha) (in place,
    exact); returns how many were replaced. Per-channel slopes stay PRelu."""
    graph = model.graph
    index = GraphIndex.build(graph)
    replaced = 0
    for position, node in enumerate(list(graph.node)):
        if node.op_type != "PRelu":
            continue
        slope = _constant_through_reshapes(index, node.input[1])
        if slope is None or np.unique(slope).size != 1:
            continue
        leaky = helper.make_node("LeakyRelu", [node.input[0]], list(node.output), name=node.name or None,
                                 alpha=float(slope.ravel()[0]))
        graph.node.remove(node)
        graph.node.insert(position, leaky)
        replaced += 1
    if replaced:
        _drop_unused_initializers(model)
    return replaced


#: (op type, input index) pairs that must stay float32 whatever the data type.
_KEEP_FP32_INPUTS = {("Resize", 1), ("Resize", 2), ("Upsample", 1)}


def ir_constant(value: "object") -> "np.ndarray | None":
    """An onnx_ir value's contents when it is a constant, possibly behind the Unsqueeze / Reshape
    the exporter puts on PRelu slopes; None otherwise."""
    for _ in range(4):
        if value is None:
            return None
        if value.const_value is not None:
            return value.const_value.numpy()
        producer = value.producer()
        if producer is None or producer.op_type not in ("Unsqueeze", "Reshape", "Squeeze", "Identity"):
            return None
        value = producer.inputs[0]
    return None


def channel_slopes(node: "object") -> "np.ndarray | None":
    """A PRelu's slopes (flat) when they are constants, more than one, one per channel of its input
    (dim 1 of a shape-inferred input, laid out (C, 1, ..., 1) or (1, C, 1, ..., 1)); None otherwise."""
    x, slope = node.inputs[0], node.inputs[1]
    values = ir_constant(slope)
    if x is None or values is None or values.size < 2 or x.shape is None or len(x.shape) < 2:
        return None
    layout = slope.shape if slope.shape is not None else values.shape
    dims = [d if isinstance(d, int) else None for d in layout]
    trailing = len(x.shape) - 2
    if x.shape[1] != values.size or dims not in ([values.size] + [1] * trailing, [1, values.size] + [1] * trailing):
        return None
    return values.astype(np.float32).ravel()


def prelu_as_min_mul_add(model_proto: onnx.ModelProto) -> int:
    """Rewrite every per-channel PRelu as x + (slope - 1) * Min(x, 0), in place;
    returns how many. For x >= 0 the result is x exactly; for x < 0 it is slope * x up to float
    rounding (one ulp), which the next QuantizeLinear rounds away except at exact ties."""
    import onnx_ir as ir
    import onnx_ir.passes.common

    model = ir.from_proto(onnx.shape_inference.infer_shapes(model_proto))  # each PRelu input's rank
    rewritten = 0
    for node in list(model.graph):
        if node.op_type != "PRelu" or node.domain not in ("", "ai.onnx"):
            continue
        x, values = node.inputs[0], channel_slopes(node)
        if values is None or node.outputs[0].is_graph_output():
            continue
        channel_axis = (-1,) + (1,) * (len(x.shape) - 2)  # slopes along dim 1 of an N-D input
        name = node.name or node.outputs[0].name
        minus_one = ir.Value(name=f"{name}.slope_minus_one",
                             const_value=ir.tensor((values.astype(np.float32) - 1).reshape(channel_axis)))
        zero = ir.Value(name=f"{name}.zero", const_value=ir.tensor(np.zeros((1,), np.float32)))
        model.graph.register_initializer(minus_one)
        model.graph.register_initializer(zero)
        negative = ir.node("Min", [x, zero], name=f"{name}.min")
        scaled = ir.node("Mul", [negative.outputs[0], minus_one], name=f"{name}.mul")
        out = ir.node("Add", [x, scaled.outputs[0]], name=f"{name}.add")
        model.graph.insert_after(node, [negative, scaled, out])
        ir.convenience.replace_all_uses_with(node.outputs[0], out.outputs[0])
        model.graph.remove(node, safe=True)
        rewritten += 1
    if rewritten:
        onnx_ir.passes.common.RemoveUnusedNodesPass()(model)
        model_proto.CopyFrom(ir.to_proto(model))
    return rewritten


def silu_as_quick_gelu(model_proto: onnx.ModelProto) -> int:
    """Replace each Mul(x, Sigmoid(x)) whose Sigmoid feeds only that Mul by com.microsoft
    QuickGelu(x, alpha=1.0), in place; returns how many (ONNX Runtime target only)."""
    import onnx_ir as ir
    import onnx_ir.passes.common

    model = ir.from_proto(model_proto)
    rewritten = 0
    for node in list(model.graph):
        if node.op_type != "Mul" or node.domain not in ("", "ai.onnx") or len(node.inputs) != 2:
            continue
        for x, gate in (node.inputs, node.inputs[::-1]):
            sigmoid = gate.producer() if gate is not None else None
            if (sigmoid is not None and sigmoid.op_type == "Sigmoid" and sigmoid.inputs[0] is x
                    and len(gate.uses()) == 1 and not gate.is_graph_output()):
                break
        else:
            continue
        fused = ir.node("QuickGelu", [x], attributes={"alpha": 1.0}, domain="com.microsoft",
                        name=f"{node.name or node.outputs[0].name}.silu")
        model.graph.insert_after(node, fused)
        old, new = node.outputs[0], fused.outputs[0]
        new.type, new.shape = old.type, old.shape
        ir.convenience.replace_all_uses_with(old, new, replace_graph_outputs=True)
        model.graph.remove(node, safe=True)
        new.name = old.name  # a graph output keeps its name
        rewritten += 1
    if rewritten:
        model.opset_imports.setdefault("com.microsoft", 1)
        onnx_ir.passes.common.RemoveUnusedNodesPass()(model)
        model_proto.CopyFrom(ir.to_proto(model))
    return rewritten


def _int8_region(index: GraphIndex, node: onnx.NodeProto) -> bool:
    """Q/DQ and compute nodes fed by a dequantized weight keep float32 (TensorRT fuses them
    into int8 kernels; their float tensors exist only between the fused ops)."""
    if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
        return True
    if node.op_type in WEIGHTED_OPS and len(node.input) > 1:
        producer = index.producer.get(node.input[1])
        return producer is not None and producer.op_type == "DequantizeLinear"
    return False


def _tensor_types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    graph = inferred.graph
    types = {init.name: init.data_type for init in graph.initializer}
    for value in list(graph.input) + list(graph.output) + list(graph.value_info):
        if value.type.HasField("tensor_type"):
            types[value.name] = value.type.tensor_type.elem_type
    return types


class _HalfBorders:
    """The float16 copies made at the borders of the fp16 region: constants converted once (a
    new initializer), other float32 tensors cast once (a new Cast node, added at the end)."""

    def __init__(self, graph: onnx.GraphProto, index: GraphIndex) -> None:
        self.graph, self.index = graph, index
        self.new_nodes: list[onnx.NodeProto] = []
        self._constants: dict[str, str] = {}
        self._casts: dict[str, str] = {}

    def constant(self, name: str) -> str:
        if name not in self._constants:
            half_name = f"{name}/fp16"
            self.graph.initializer.append(numpy_helper.from_array(self.index.constant(name).astype(np.float16), half_name))
            self._constants[name] = half_name
        return self._constants[name]

    def cast(self, name: str) -> str:
        if name not in self._casts:
            self._casts[name] = f"{name}/to_fp16"
            self.new_nodes.append(helper.make_node("Cast", [name], [self._casts[name]], to=TensorProto.FLOAT16,
                                                   name=f"{name}/Cast_fp16"))
        return self._casts[name]


def _fp16_region(graph: onnx.GraphProto, index: GraphIndex, types: dict[str, int]) -> list[onnx.NodeProto]:
    """The ops that move to float16: every non-Constant op outside the int8 parts that reads or
    writes a float32 tensor."""
    return [
        node for node in graph.node
        if node.op_type != "Constant" and not _int8_region(index, node)
        and any(types.get(n) == TensorProto.FLOAT for n in list(node.input) + list(node.output) if n)
    ]


def _half_inputs(node: onnx.NodeProto, types: dict[str, int], region_ids: set[int], borders: _HalfBorders) -> None:
    """Point the float32 inputs that come from outside the region at float16 copies (inputs
    produced inside the region were renamed by their producer already)."""
    for i, name in enumerate(node.input):
        if not name or types.get(name) != TensorProto.FLOAT or (node.op_type, i) in _KEEP_FP32_INPUTS:
            continue
        producer = borders.index.producer.get(name)
        if borders.index.is_constant(name):
            node.input[i] = borders.constant(name)
        elif producer is None or id(producer) not in region_ids:
            node.input[i] = borders.cast(name)


def _half_attributes(node: onnx.NodeProto) -> None:
    """A Cast to float32 casts to float16 instead; a float32 ConstantOfShape value becomes float16."""
    if node.op_type == "Cast" and node.attribute[0].i == TensorProto.FLOAT:
        node.attribute[0].i = TensorProto.FLOAT16
    if node.op_type == "ConstantOfShape":
        for attr in node.attribute:
            if attr.name == "value" and attr.t.data_type == TensorProto.FLOAT:
                attr.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(attr.t).astype(np.float16)))


def _half_outputs(node: onnx.NodeProto, types: dict[str, int], region_ids: set[int], borders: _HalfBorders) -> None:
    """Rename each float32 output to its float16 name for the consumers inside the region; a Cast
    back to float32 keeps the old name for consumers outside it, for inputs that must stay
    float32 (a Resize's scales computed in the graph) and for graph outputs."""
    index = borders.index
    for j, name in enumerate(node.output):
        if types.get(name) != TensorProto.FLOAT:
            continue
        half_name = f"{name}/fp16"
        node.output[j] = half_name
        outside = [c for c in index.consumers.get(name, []) if id(c) not in region_ids]
        for consumer in index.consumers.get(name, []):
            if id(consumer) in region_ids:
                kept = [n == name and (consumer.op_type, i) in _KEEP_FP32_INPUTS for i, n in enumerate(consumer.input)]
                outside += [consumer] if any(kept) else []
                consumer.input[:] = [half_name if n == name and not keep else n
                                     for n, keep in zip(consumer.input, kept)]
        if outside or name in index.graph_outputs:
            borders.new_nodes.append(helper.make_node("Cast", [half_name], [name], to=TensorProto.FLOAT,
                                                      name=f"{name}/Cast_fp32"))


def cast_float_parts_fp16(model: onnx.ModelProto) -> int:
    """Run every float32 op outside the int8 parts in float16, with Casts at the borders
    (in place); graph inputs and outputs stay float32. Returns the number of ops moved to fp16.
    """
    graph = model.graph
    index = GraphIndex.build(graph)
    types = _tensor_types(model)
    region = _fp16_region(graph, index, types)
    region_ids = {id(node) for node in region}
    borders = _HalfBorders(graph, index)
    for node in region:
        _half_inputs(node, types, region_ids, borders)
        _half_attributes(node)
        _half_outputs(node, types, region_ids, borders)
    graph.node.extend(borders.new_nodes)
    _topological_sort(graph)
    del graph.value_info[:]
    _drop_unused_initializers(model)
    return len(region)


def _topological_sort(graph: onnx.GraphProto) -> None:
    """Reorder nodes so every input is produced before use (the added Casts went last)."""
    available = {i.name for i in graph.input} | {init.name for init in graph.initializer} | {""}
    pending = list(graph.node)
    ordered: list[onnx.NodeProto] = []
    while pending:
        progress = False
        remaining = []
        for node in pending:
            if all(name in available for name in node.input):
                ordered.append(node)
                available.update(node.output)
                progress = True
            else:
                remaining.append(node)
        if not progress:
            raise ExportError("internal error: the fp16 pass left a cycle or a dangling input in the graph.")
        pending = remaining
    del graph.node[:]
    graph.node.extend(ordered)


def _constant_array(graph: onnx.GraphProto, name: str) -> Optional[np.ndarray]:
    for init in graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    for node in graph.node:
        if node.op_type == "Constant" and name in node.output:
            return numpy_helper.to_array(node.attribute[0].t)
    return None


def fold_weight_quantize(model_proto: onnx.ModelProto) -> int:
    """Replace QuantizeLinear nodes of constant (weight) tensors by their int8 result (in place).

    An exporter that writes weights as float -> QuantizeLinear -> DequantizeLinear (ModelOpt's)
    leaves work that TensorRT, the rules checker and a 4x smaller file want done: the int8
    initializer -> DequantizeLinear form.
    Values are what QuantizeLinear computes: round-half-even(w / scale) + zero point,
    saturated (scale broadcast along ``axis``). Returns the number of folded nodes.
    """
    graph = model_proto.graph
    folded = 0
    for node in list(graph.node):
        if node.op_type != "QuantizeLinear":
            continue
        weight, scale = _constant_array(graph, node.input[0]), _constant_array(graph, node.input[1])
        zero_point = _constant_array(graph, node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if weight is None or scale is None or zero_point is None:
            continue
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        shape = [1] * weight.ndim
        if scale.size > 1:
            shape[axis % weight.ndim] = scale.size
        info = np.iinfo(zero_point.dtype)
        scaled = weight.astype(np.float32) / scale.astype(np.float32).reshape(shape)
        values = np.clip(np.rint(scaled) + zero_point.astype(np.float32).reshape(shape), info.min, info.max)
        graph.initializer.append(numpy_helper.from_array(values.astype(zero_point.dtype), node.output[0]))
        graph.node.remove(node)
        folded += 1
    used = {name for node in graph.node for name in node.input}
    for init in list(graph.initializer):
        if init.name not in used and init.name not in {o.name for o in graph.output}:
            graph.initializer.remove(init)
    for node in list(graph.node):
        if node.op_type == "Constant" and not any(out in used for out in node.output):
            graph.node.remove(node)
    return folded
