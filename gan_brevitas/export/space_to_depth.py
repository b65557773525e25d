"""Narrow large-kernel convs of the ONNX Runtime and OpenVINO targets as space-to-depth convs.

A generator's last conv writes an RGB image at the output resolution from a large kernel
(CycleGAN: 7x7, 64 -> 3; SRGAN: 9x9, 64 -> 3). The int8 kernels of both engines (ONNX
Runtime's QLinearConv and ConvInteger, OpenVINO's brgconv) work on blocks of 16 output
channels, so with 3 they run at a fifth of their speed, and this one conv was 60-77% of a
quantized generator's time on ONNX Runtime (77 ms of 100 ms for SRGAN at 192 px output, slower
than the float conv) and 32-40% on OpenVINO (the 128 px photo-to-sketch translator).

`narrow_convs_as_space_to_depth` computes such a conv on the input rearranged into
``BLOCK x BLOCK`` pixel blocks (SpaceToDepth): a conv with ``BLOCK^2`` times the input and
output channels and a kernel of about ``k / BLOCK`` taps per side, whose output DepthToSpace
puts back in place:

    x_q -> [Pad] -> SpaceToDepth -> DQ -> Conv(W') -> DepthToSpace   (was: x_q -> DQ -> Conv(W))

W' holds every weight of W once, at the place its input pixel lands, and zeros elsewhere, so
the integer products and sums are the same ones: the rewrite is exact (the output differs
from the original graph's only by float summation order). The Pad (bottom / right, with the
input's zero point) is there only when the input size is not a multiple of ``BLOCK``; those
rows meet only zero weights. The input sizes come from one ONNX Runtime run of the graph on a
zero input (shape inference cannot follow the exporter's shape arithmetic). The Q/DQ moves
run again after it, so a quantized output's QuantizeLinear moves above the DepthToSpace and
ONNX Runtime fuses DQ -> Conv -> Q into QLinearConv; a float output (the default float tail)
goes on to `conv_integer`. Measured on
ONNX Runtime 1.32, 1 thread: 64 -> 3 channels 9x9 at 192 px, ConvInteger 77 -> 21 ms,
QLinearConv 79 -> 5 ms; 7x7 at 128 px, 19 -> 9 ms and 17 -> 2 ms; a 3x3 kernel gets slower (the
zero taps cost more than the wider blocks gain), so only kernels of ``MIN_KERNEL`` and up change.
On OpenVINO 2026.4 (whole models, batch 1, 1 thread, interleaved): the photo-to-sketch translator
at 128 px 10.9 -> 9.6 ms, SRGAN x4 at 48 px 18.3 -> 13.5 ms, outputs identical.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import onnx

from gan_brevitas.export.conv_integer import constant_array, dequantize_parts, replace_node

log = logging.getLogger(__name__)

#: Pixel block side: 16 x 3 output channels fill ONNX Runtime's 16-channel blocks three times.
BLOCK = 4
#: Convs with at most this many output channels are rewritten (BLOCK^2 x 4 = 64).
MAX_OUT_CHANNELS = 4
#: ... and with kernels at least this large on both sides.
MIN_KERNEL = 5


@dataclass(frozen=True)
class AxisPlan:
    """One spatial axis of the rewrite: input size padded to a multiple of the block, the new
    kernel size, and the new conv's begin / end padding (in blocks)."""

    padded: int
    kernel: int
    begin: int
    end: int
    pad_begin: int  # the original conv's
    block: int

    def tap(self, phase: int, i: int) -> tuple[int, int]:
        """(new kernel tap, position inside the block) that original tap ``i`` reads for the
        output phase ``phase`` (output index = block * block index + phase)."""
        r = phase + i - self.pad_begin
        return r // self.block + self.begin, r % self.block


def plan_axis(size: int, kernel: int, pad_begin: int, pad_end: int, block: int = BLOCK) -> Optional[AxisPlan]:
    """The rewrite along one axis of a stride-1 conv, or None when its output size is not a
    multiple of ``block`` (or the new conv would need a negative padding)."""
    out = size + pad_begin + pad_end - kernel + 1
    if out <= 0 or out % block:
        return None
    low = (0 - pad_begin) // block
    high = (block - 1 + kernel - 1 - pad_begin) // block
    padded = -(-size // block) * block
    new_kernel = high - low + 1
    end = out // block - padded // block + low + new_kernel - 1
    if end < 0:
        return None
    return AxisPlan(padded=padded, kernel=new_kernel, begin=-low, end=end, pad_begin=pad_begin, block=block)


def space_to_depth_weight(weight: np.ndarray, rows: AxisPlan, cols: AxisPlan) -> np.ndarray:
    """W' of the module docstring: output channel (a * block + b) * C_out + o reads input
    channel (by * block + bx) * C_in + c (SpaceToDepth's and DepthToSpace's DCR order)."""
    block = rows.block
    c_out, c_in, kh, kw = weight.shape
    out = np.zeros((block * block * c_out, block * block * c_in, rows.kernel, cols.kernel), weight.dtype)
    for a in range(block):
        for i in range(kh):
            u, by = rows.tap(a, i)
            for b in range(block):
                for j in range(kw):
                    v, bx = cols.tap(b, j)
                    o0, c0 = (a * block + b) * c_out, (by * block + bx) * c_in
                    out[o0 : o0 + c_out, c0 : c0 + c_in, u, v] = weight[:, :, i, j]
    return out


def eligible(out_channels: int, kernel: tuple[int, ...], stride: tuple[int, ...], dilation: tuple[int, ...],
             groups: int) -> bool:
    """Whether a 2-D conv of this form is rewritten (its spatial sizes permitting)."""
    return (out_channels <= MAX_OUT_CHANNELS and len(kernel) == 2 and min(kernel) >= MIN_KERNEL
            and all(s == 1 for s in stride) and all(d == 1 for d in dilation) and groups == 1)


def _ints(node: Any, name: str, default: list[int]) -> list[int]:
    attr = node.attributes.get(name)
    return list(attr.as_ints()) if attr is not None else default


@dataclass(frozen=True)
class _Conv:
    """What the rewrite reads off one conv: the 8-bit input (and its dequantizer's scale and
    zero point values), the 8-bit weight with its scale and zero point, the bias (values, and
    scale and zero point when it is dequantized), the input size and the plans."""

    x: Any
    x_scale: Any
    x_zero_point: Any
    weight: np.ndarray
    weight_scale: np.ndarray
    weight_zero_point: Optional[np.ndarray]
    bias: Optional[tuple[np.ndarray, Optional[np.ndarray], Optional[np.ndarray]]]
    size: tuple[int, int]
    rows: AxisPlan
    cols: AxisPlan


def _eligible_conv(conv: Any) -> bool:
    """An eligible conv (`eligible`) on a dequantized per-tensor 8-bit input with a dequantized
    8-bit constant weight (per tensor or per output channel, zero point 0): sizes aside, one
    the rewrite can take."""
    if conv.op_type != "Conv" or conv.domain not in ("", "ai.onnx") or len(conv.inputs) < 2:
        return False
    activation, weight = dequantize_parts(conv.inputs[0]), dequantize_parts(conv.inputs[1])
    if activation is None or weight is None or activation[1].size != 1 or activation[2] is None:
        return False
    values = constant_array(weight[0])
    if values is None or values.ndim != 4 or values.dtype.type not in (np.int8, np.uint8) or (
            weight[1].size > 1 and weight[3] != 0) or (weight[2] is not None and np.any(weight[2])):
        return False  # the new kernel's empty taps hold 0: the weight's zero point must be 0
    group, auto_pad = conv.attributes.get("group"), conv.attributes.get("auto_pad")
    return (auto_pad is None or auto_pad.as_string() in ("", "NOTSET")) and eligible(
        values.shape[0], tuple(values.shape[2:]), tuple(_ints(conv, "strides", [1, 1])),
        tuple(_ints(conv, "dilations", [1, 1])), group.as_int() if group is not None else 1) and _read_bias(conv) is not False


def _read_conv(conv: Any, shape: tuple[int, ...]) -> Optional[_Conv]:
    """The parts of an `_eligible_conv` whose input of size ``shape`` allows the rewrite."""
    weight = dequantize_parts(conv.inputs[1])
    values = constant_array(weight[0])
    pads = _ints(conv, "pads", [0, 0, 0, 0])
    if len(shape) != 4:
        return None
    rows = plan_axis(shape[2], values.shape[2], pads[0], pads[2])
    cols = plan_axis(shape[3], values.shape[3], pads[1], pads[3])
    if rows is None or cols is None:
        return None
    dequantize = conv.inputs[0].producer()
    return _Conv(dequantize.inputs[0], dequantize.inputs[1], dequantize.inputs[2], values, weight[1], weight[2],
                 _read_bias(conv), (shape[2], shape[3]), rows, cols)  # fmt: skip


def _read_bias(conv: Any) -> Any:
    """(values, scale, zero point) of the bias (scale None: a float constant); None without
    one; False when it is neither a constant nor a dequantized constant."""
    if len(conv.inputs) < 3 or conv.inputs[2] is None:
        return None
    values = constant_array(conv.inputs[2])
    if values is not None:
        return values, None, None
    parts = dequantize_parts(conv.inputs[2])
    if parts is None or constant_array(parts[0]) is None:
        return False
    return constant_array(parts[0]), parts[1], parts[2]


def _tiled(values: np.ndarray, times: int) -> np.ndarray:
    """A per-channel array repeated for every block position (a single value stays one)."""
    return np.tile(values.reshape(-1), times) if values.size > 1 else values


class _Constants:
    """New initializers of one rewrite, named after the conv."""

    def __init__(self, model: Any, prefix: str) -> None:
        self.model, self.prefix = model, prefix

    def __call__(self, suffix: str, values: np.ndarray) -> Any:
        import onnx_ir as ir

        value = ir.Value(name=f"{self.prefix}.{suffix}", const_value=ir.tensor(values))
        self.model.graph.register_initializer(value)
        return value


def _dequantized(node: Any, constants: _Constants, suffix: str, values: np.ndarray, scale: np.ndarray,
                 zero_point: Optional[np.ndarray], times: int) -> Any:
    """DequantizeLinear of a new constant (per-channel parts tiled ``times``), axis 0."""
    import onnx_ir as ir

    inputs = [constants(suffix, values), constants(f"{suffix}_scale", _tiled(scale, times))]
    if zero_point is not None:
        inputs.append(constants(f"{suffix}_zero_point", _tiled(zero_point, times)))
    return ir.node("DequantizeLinear", inputs, attributes={"axis": 0}, name=f"{node.name}.{suffix}_dequantize")


def _rewrite(model: Any, conv: Any, parts: _Conv) -> None:
    """Replace ``conv`` by [Pad] -> SpaceToDepth -> DQ -> Conv(W') -> DepthToSpace."""
    import onnx_ir as ir

    name = conv.name or conv.outputs[0].name
    constants, block = _Constants(model, f"{name}.space_to_depth"), parts.rows.block
    times, added, x = block * block, [], parts.x
    extra = (parts.rows.padded - parts.size[0], parts.cols.padded - parts.size[1])
    if any(extra):
        pads = constants("pads", np.array([0, 0, 0, 0, 0, 0, *extra], np.int64))
        added.append(ir.node("Pad", [x, pads, parts.x_zero_point], attributes={"mode": "constant"}, name=f"{name}.pad"))
        x = added[-1].outputs[0]
    added.append(ir.node("SpaceToDepth", [x], attributes={"blocksize": block}, name=f"{name}.space_to_depth"))
    added.append(ir.node("DequantizeLinear", [added[-1].outputs[0], parts.x_scale, parts.x_zero_point],
                         name=f"{name}.input_dequantize"))
    inputs = [added[-1].outputs[0]]
    weight = space_to_depth_weight(parts.weight, parts.rows, parts.cols)
    added.append(_dequantized(conv, constants, "weight", weight, parts.weight_scale, parts.weight_zero_point, times))
    inputs.append(added[-1].outputs[0])
    if parts.bias is not None:
        values, scale, zero_point = parts.bias
        if scale is None:
            inputs.append(constants("bias", _tiled(values, times)))
        else:
            added.append(_dequantized(conv, constants, "bias", _tiled(values, times), scale, zero_point, times))
            inputs.append(added[-1].outputs[0])
    attributes = {"kernel_shape": [parts.rows.kernel, parts.cols.kernel], "strides": [1, 1], "dilations": [1, 1],
                  "group": 1, "pads": [parts.rows.begin, parts.cols.begin, parts.rows.end, parts.cols.end]}
    added.append(ir.node("Conv", inputs, attributes=attributes, name=f"{name}.blocks"))
    added.append(ir.node("DepthToSpace", [added[-1].outputs[0]], attributes={"blocksize": block, "mode": "DCR"},
                         name=f"{name}.depth_to_space"))
    replace_node(model, conv, added)


def runtime_shapes(model_proto: onnx.ModelProto, names: list[str]) -> dict[str, tuple[int, ...]]:
    """The shapes of the tensors ``names`` when ONNX Runtime runs the graph on one zero input
    (batch 1; the graph's other input dims must be fixed, else nothing is returned). Shape
    inference cannot follow the exporter's shape arithmetic (reflection pads, sliced sub-pixel
    outputs); running it can."""
    import onnxruntime as ort

    feeds = {}
    for graph_input in model_proto.graph.input:
        dims = [d.dim_value if d.HasField("dim_value") else None for d in graph_input.type.tensor_type.shape.dim]
        if not names or any(d is None for d in dims[1:]):
            return {}
        dtype = onnx.helper.tensor_dtype_to_np_dtype(graph_input.type.tensor_type.elem_type)
        feeds[graph_input.name] = np.zeros([1, *dims[1:]], dtype)
    probe = onnx.ModelProto()
    probe.CopyFrom(model_proto)
    del probe.graph.output[:]
    probe.graph.output.extend(onnx.ValueInfoProto(name=name) for name in names)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
        return {name: value.shape for name, value in zip(names, session.run(names, feeds))}
    except Exception as err:  # a graph ONNX Runtime cannot run as it stands (int4 weights): no rewrite
        log.info("space-to-depth rewrite skipped: ONNX Runtime could not run the graph to read sizes (%s)", err)
        return {}


def narrow_convs_as_space_to_depth(model_proto: onnx.ModelProto) -> list[str]:
    """Rewrite, in place, every eligible conv (see the module docstring) whose input and output
    sizes allow it; returns the rewritten convs' names."""
    import onnx_ir as ir
    import onnx_ir.passes.common

    model = ir.from_proto(model_proto)
    candidates = [conv for conv in model.graph if _eligible_conv(conv)]
    shapes = runtime_shapes(model_proto, list(dict.fromkeys(conv.inputs[0].name for conv in candidates)))
    rewritten = []
    for conv in candidates:
        parts = _read_conv(conv, shapes.get(conv.inputs[0].name, ()))
        if parts is not None:
            _rewrite(model, conv, parts)
            rewritten.append(conv.name)
    if rewritten:
        onnx_ir.passes.common.RemoveUnusedNodesPass()(model)
        model_proto.CopyFrom(ir.to_proto(model))
    return rewritten
