"""TensorRT's explicit-quantization rules as a static pass over any ONNX graph.

Why static: an engine build needs TensorRT and a GPU, and its errors (or, worse, silently wrong
results, e.g. a uint8 zero point read as int8, per-output-channel ConvTranspose scales) come
late. These rules come from TensorRT's documentation (its explicit-quantization guide); each
violation names the node, the rule and the fix, so an export that TensorRT would reject fails
at export time.

Severity "error": TensorRT rejects the graph or computes wrong values. "warning": it runs but
not as int8 where the graph intends it (or not as fast as it could).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Optional

import numpy as np
import onnx
from onnx import TensorProto

from gan_brevitas.export.graph import (
    QUANT_OPS,
    WEIGHTED_OPS,
    GraphIndex,
    ModelLike,
    attribute,
    load_model,
    node_label,
    opset_version,
)


@dataclass(frozen=True)
class Rule:
    """One TensorRT rule: its id, severity, what it requires, and the usual fix."""

    id: str
    severity: str
    requires: str
    fix: str


RULES: dict[str, Rule] = {
    rule.id: rule
    for rule in (
        Rule(
            "symmetric-zero-point",
            "error",
            "Q/DQ zero points must be 0 (TensorRT supports symmetric quantization only)",
            "quantize with QuantConfig(act_scheme='symmetric'), or export with target='tensorrt' "
            "and calibration inputs (re-calibrates symmetric activations)",
        ),
        Rule(
            "int8-type",
            "error",
            "quantized tensors must be int8 (a uint8 zero point is silently read as int8)",
            "use signed activations: QuantConfig(act_scheme='symmetric') or export with target='tensorrt'",
        ),
        Rule(
            "activation-per-channel",
            "error",
            "activations must be quantized per tensor (per-channel scales are for weights only)",
            "use per-tensor activation quantizers (the QuantConfig activation quantizers are)",
        ),
        Rule(
            "weight-axis",
            "error",
            "per-channel weight scales must lie on the output-channel axis (axis 0 for Conv)",
            "quantize weights per output channel (QuantConfig(per_channel=True)) or per tensor",
        ),
        Rule(
            "conv-transpose-axis",
            "error",
            "ConvTranspose weights must be per tensor or per-channel on axis 0 (TensorRT does not "
            "support per-output-channel ConvTranspose scales, axis 1)",
            "export with target='tensorrt' and conv_transpose='auto' (the default: rewrites the "
            "ConvTranspose exactly as Conv + DepthToSpace) or quantize ConvTranspose weights per tensor",
        ),
        Rule(
            "4-bit-weight",
            "error",
            "TensorRT has no 4-bit convolution: weights must be int8",
            "export 4-bit weights as int8 + Clip (export(..., int4=False), the default)",
        ),
        Rule(
            "constant-qparams",
            "error",
            "Q/DQ scales and zero points must be build-time constants with positive finite scales",
            "re-export: scales come from calibrated quantizers (check the model was calibrated)",
        ),
        Rule(
            "opset",
            "error",
            "per-axis Q/DQ needs ONNX opset >= 13",
            "export with opset 13 or newer (the default is 17)",
        ),
        Rule(
            "unquantized-compute-input",
            "warning",
            "Conv, ConvTranspose, Gemm and MatMul need Q/DQ on both the data input and the weight "
            "to run as int8",
            "quantize both inputs (gan_brevitas quantizes every mapped layer's input and output) or "
            "neither; a fixed float filter such as StyleGAN's Blur is expected to stay float",
        ),
        Rule(
            "residual-add",
            "warning",
            "a residual Add should have Q/DQ on both inputs (or on none) so it can fuse",
            "quantize the other input of the Add as well, or neither",
        ),
        Rule(
            "initializer-inputs",
            "warning",
            "initializers listed as graph inputs are treated as overridable, which blocks constant "
            "folding of weight Q/DQ",
            "remove initializers from graph.input (gan_brevitas export does this)",
        ),
    )
}


@dataclass(frozen=True)
class Violation:
    """One broken rule at one node."""

    node: str
    op_type: str
    rule: str
    detail: str

    @property
    def severity(self) -> str:
        return RULES[self.rule].severity

    @property
    def fix(self) -> str:
        return RULES[self.rule].fix

    def __str__(self) -> str:
        return f"{self.severity}: {self.node} [{self.op_type}] breaks '{self.rule}': {self.detail}. Fix: {self.fix}."


@dataclass(frozen=True)
class RulesReport:
    """Everything `check_tensorrt` found in one graph."""

    source: str
    opset: int
    quant_nodes: int
    violations: tuple[Violation, ...]

    @property
    def quantized(self) -> bool:
        """False for a float graph (no Q/DQ): there is nothing to check."""
        return self.quant_nodes > 0

    @property
    def errors(self) -> tuple[Violation, ...]:
        return tuple(v for v in self.violations if v.severity == "error")

    @property
    def warnings(self) -> tuple[Violation, ...]:
        return tuple(v for v in self.violations if v.severity == "warning")

    @property
    def ok(self) -> bool:
        """True when TensorRT accepts the graph as int8 (no error-level violation)."""
        return not self.errors

    def format(self) -> str:
        if not self.quantized:
            return (
                f"{self.source}: no QuantizeLinear/DequantizeLinear nodes: this is a float model, "
                "there is nothing to check against TensorRT's int8 rules."
            )
        head = (
            f"{self.source}: opset {self.opset}, {self.quant_nodes} Q/DQ nodes, "
            f"{len(self.errors)} error(s), {len(self.warnings)} warning(s)"
        )
        return "\n".join([head] + format_violations(self.violations))


def format_violations(violations: tuple[Violation, ...] | list[Violation]) -> list[str]:
    """Lines grouping violations by rule: the rule, its fix, then every node that breaks it."""
    lines: list[str] = []
    for rule_id in dict.fromkeys(v.rule for v in violations):
        rule = RULES[rule_id]
        hits = [v for v in violations if v.rule == rule_id]
        lines.append(f"{rule.severity} '{rule.id}' at {len(hits)} node(s): {rule.requires}")
        lines.append(f"  fix: {rule.fix}")
        lines += [f"  {v.node} [{v.op_type}]: {v.detail}" for v in hits]
    return lines


def _elem_type(index: GraphIndex, node: onnx.NodeProto) -> Optional[int]:
    """The integer type a Q produces / a DQ consumes (None if unknown)."""
    if node.op_type == "QuantizeLinear":
        if len(node.input) > 2 and node.input[2]:
            return index.constant_dtype(node.input[2])
        output_dtype = attribute(node, "output_dtype", 0)
        return int(output_dtype) if output_dtype else TensorProto.UINT8  # ONNX's default
    source = index.weight_source(node.input[0])
    if source is not None:
        return index.constant_dtype(source)
    producer = index.producer.get(node.input[0])
    if producer is not None and producer.op_type == "QuantizeLinear":
        return _elem_type(index, producer)
    if len(node.input) > 2 and node.input[2]:
        return index.constant_dtype(node.input[2])
    return None


def _check_qparams(index: GraphIndex, node: onnx.NodeProto) -> Iterator[Violation]:
    label = node_label(node)
    scale = index.constant(node.input[1])
    if scale is None:
        yield Violation(label, node.op_type, "constant-qparams", f"scale {node.input[1]!r} is computed at run time")
        return
    if not (np.all(np.isfinite(scale)) and np.all(scale > 0)):
        yield Violation(label, node.op_type, "constant-qparams", "scale has zero, negative or non-finite values")
    if len(node.input) > 2 and node.input[2]:
        zero_point = index.constant(node.input[2])
        if zero_point is None:
            yield Violation(label, node.op_type, "constant-qparams", "zero point is computed at run time")
        elif np.any(zero_point.astype(np.int64) != 0):
            values = np.unique(zero_point)
            shown = ", ".join(str(v) for v in values[:4]) + (", ..." if len(values) > 4 else "")
            yield Violation(label, node.op_type, "symmetric-zero-point", f"zero point {shown}")


def _check_type(index: GraphIndex, node: onnx.NodeProto, feeds_bias: bool) -> Iterator[Violation]:
    label = node_label(node)
    elem = _elem_type(index, node)
    if elem in (TensorProto.INT4, TensorProto.UINT4):
        yield Violation(label, node.op_type, "4-bit-weight", f"{TensorProto.DataType.Name(elem)} weights")
    elif elem == TensorProto.INT32 and feeds_bias:
        return
    elif elem is not None and elem != TensorProto.INT8:
        yield Violation(
            label, node.op_type, "int8-type", f"quantized type is {TensorProto.DataType.Name(elem)}, not INT8"
        )


def _output_channel_axis(op: onnx.NodeProto, rank: int) -> int:
    if op.op_type in ("Conv", "ConvTranspose"):
        return 0
    if op.op_type == "Gemm":
        return 0 if attribute(op, "transB", 0) else 1
    return rank - 1  # MatMul: [..., in, out]


def _check_granularity(index: GraphIndex, node: onnx.NodeProto, is_weight: bool) -> Iterator[Violation]:
    scale = index.constant(node.input[1])
    if scale is None or scale.size <= 1:
        return
    label = node_label(node)
    if not is_weight:
        yield Violation(label, node.op_type, "activation-per-channel", f"{scale.size} scales on an activation")
        return
    if node.op_type != "DequantizeLinear":
        return
    source = index.weight_source(node.input[0])
    weight = index.constant(source) if source is not None else None
    rank = weight.ndim if weight is not None else 4
    axis = int(attribute(node, "axis", 1)) % max(rank, 1)
    for consumer in index.consumers.get(node.output[0], []):
        if consumer.op_type not in WEIGHTED_OPS or list(consumer.input).index(node.output[0]) != 1:
            continue
        if consumer.op_type == "ConvTranspose":
            if axis != 0:
                yield Violation(
                    label, node.op_type, "conv-transpose-axis",
                    f"per-channel weight scales of ConvTranspose {node_label(consumer)!r} on axis {axis}",
                )
        else:
            expected = _output_channel_axis(consumer, rank)
            if axis != expected:
                yield Violation(
                    label, node.op_type, "weight-axis",
                    f"per-channel weight scales of {consumer.op_type} {node_label(consumer)!r} on axis {axis}, "
                    f"expected {expected}",
                )


def _from_dequantize(index: GraphIndex, name: str) -> bool:
    producer = index.producer.get(name)
    return producer is not None and producer.op_type == "DequantizeLinear"


def _check_compute(index: GraphIndex, node: onnx.NodeProto) -> Iterator[Violation]:
    if len(node.input) < 2:
        return
    data_q = _from_dequantize(index, node.input[0])
    weight_q = _from_dequantize(index, node.input[1])
    if data_q != weight_q:
        which = "weight" if data_q else "data input"
        yield Violation(node_label(node), node.op_type, "unquantized-compute-input", f"the {which} has no Q/DQ")


def _check_add(index: GraphIndex, node: onnx.NodeProto) -> Iterator[Violation]:
    inputs = [name for name in node.input if name and not index.is_constant(name)]
    if len(inputs) != 2:
        return
    quantized = [_from_dequantize(index, name) for name in inputs]
    if quantized[0] != quantized[1]:
        yield Violation(node_label(node), node.op_type, "residual-add", "only one input comes from a DequantizeLinear")


def check_tensorrt(source: ModelLike) -> RulesReport:
    """Check an ONNX model (path or ModelProto) against TensorRT's explicit-quantization rules.

    Raises ExportError when ``source`` is not an ONNX model. A float model gives a report
    with ``quantized == False`` and no violations.
    """
    model = load_model(source, external_data=False)
    label = str(source) if not isinstance(source, onnx.ModelProto) else (model.graph.name or "<model>")
    index = GraphIndex.build(model.graph)
    violations: list[Violation] = []
    quant_nodes = [node for node in model.graph.node if node.op_type in QUANT_OPS]
    opset = opset_version(model)
    if not quant_nodes:
        return RulesReport(label, opset, 0, ())

    for node in quant_nodes:
        data = node.input[0]
        is_weight = node.op_type == "DequantizeLinear" and index.weight_source(data) is not None
        feeds_bias = is_weight and any(
            c.op_type in WEIGHTED_OPS and len(c.input) > 2 and c.input[2] == node.output[0]
            for c in index.consumers.get(node.output[0], [])
        )
        violations += _check_qparams(index, node)
        violations += _check_type(index, node, feeds_bias)
        violations += _check_granularity(index, node, is_weight)
        scale = index.constant(node.input[1])
        if opset < 13 and scale is not None and scale.size > 1:
            violations.append(Violation(node_label(node), node.op_type, "opset", f"opset {opset} with per-axis scales"))
    for node in model.graph.node:
        if node.op_type in WEIGHTED_OPS:
            violations += _check_compute(index, node)
        elif node.op_type == "Add":
            violations += _check_add(index, node)
    listed = [i.name for i in model.graph.input if i.name in index.initializers]
    if listed:
        shown = ", ".join(listed[:3]) + (", ..." if len(listed) > 3 else "")
        violations.append(
            Violation("<graph inputs>", "graph", "initializer-inputs", f"{len(listed)} initializer(s) listed: {shown}")
        )
    order = {"error": 0, "warning": 1}
    violations.sort(key=lambda v: order[v.severity])
    return RulesReport(label, opset, len(quant_nodes), tuple(violations))
