"""ONNX Runtime on the CPU: a generator runner and the int8-kernel check.

* `OrtGenerator` generates images from an exported ONNX file (int8 or fp32).
* `int8_kernel_report` asks ONNX Runtime for its optimized graph
  (``SessionOptions.optimized_model_filepath``) and tells which quantized convolutions became
  int8 kernels (QLinearConv / ConvInteger, QGemm / QLinearMatMul / MatMulInteger) and which
  fell back to float: a Q/DQ graph only runs fast when the fusion happens.

onnxruntime is imported lazily: the rest of the package works without it.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import onnx
import torch
from torch import Tensor

from gan_brevitas.errors import ExportError, MissingDependencyError
from gan_brevitas.export.graph import GraphIndex, load_model, node_label, opset_version
from gan_brevitas.inputs import InputSource, iter_batches

log = logging.getLogger(__name__)

#: ONNX Runtime ops that compute a convolution / matrix product in integers.
INT8_KERNELS = ("QLinearConv", "ConvInteger", "QGemm", "QLinearMatMul", "MatMulInteger", "DynamicQuantizeMatMul")
#: Ops that compute one in float (after ORT's fusions and layout changes).
FLOAT_KERNELS = ("Conv", "ConvTranspose", "FusedConv", "Gemm", "FusedGemm", "MatMul", "FusedMatMul")
_COMPUTE = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def _onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as err:
        raise MissingDependencyError(
            "onnxruntime is not installed: pip install onnxruntime (a dependency of gan-brevitas)."
        ) from err
    return onnxruntime


def make_session(
    path: str | os.PathLike,
    threads: Optional[int] = None,
    optimized_path: Optional[str] = None,
    optimize: bool = True,
) -> Any:
    """A CPU InferenceSession, with full graph optimizations unless ``optimize`` is False.

    Args:
        threads: intra-op threads (None: ONNX Runtime's default, one per physical core).
        optimized_path: where ONNX Runtime writes its optimized graph (for inspection).
        optimize: False runs the graph op by op as written (the ONNX reference semantics,
            no int8 fusion): slow, for checking what a graph means.
    """
    ort = _onnxruntime()
    model = load_model(path, external_data=False)  # a clear ExportError for files that are not models
    disabled = []
    if opset_version(model) >= 21:
        # ONNX Runtime 1.32 builds an invalid QuantizeLinear (int8 output_dtype with a uint8
        # zero point) when it propagates Q/DQ through Reshape/Slice in opset-21 graphs with
        # int8 activations; without the propagation the model loads and computes the same.
        disabled.append("QDQPropagationTransformer")
    options = ort.SessionOptions()
    options.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    )
    options.log_severity_level = 3  # the NCHWc "hardware specific" notice is expected here
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    if optimized_path is not None:
        options.optimized_model_filepath = str(optimized_path)
    try:
        return ort.InferenceSession(
            str(path), options, providers=["CPUExecutionProvider"], disabled_optimizers=disabled
        )
    except Exception as err:
        raise ExportError(f"ONNX Runtime cannot load {path}: {err}") from err


class OrtGenerator:
    """Runs an exported generator in ONNX Runtime on the CPU.

    ``gen(x)`` returns the first output (the image) as a numpy array; `generate` runs many
    inputs in batches and returns a float tensor, like ``gan_brevitas.metrics.generate``.
    """

    engine = "onnxruntime"

    def __init__(self, path: str | os.PathLike, threads: Optional[int] = None, optimize: bool = True) -> None:
        self.path = Path(path)
        self.session = make_session(self.path, threads, optimize=optimize)
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)

    def run(self, x: Tensor | np.ndarray) -> list[np.ndarray]:
        """All outputs for one input batch."""
        array = x.detach().cpu().float().numpy() if isinstance(x, Tensor) else np.asarray(x, dtype=np.float32)
        return self.session.run(None, {self.input_name: np.ascontiguousarray(array)})

    def __call__(self, x: Tensor | np.ndarray) -> np.ndarray:
        return self.run(x)[0]

    def generate(self, inputs: InputSource, n: int, batch_size: int = 8) -> Tensor:
        """Images [n, C, H, W] (float32, CPU) for ``n`` inputs read in batches."""
        images = [torch.from_numpy(self(batch)) for batch in iter_batches(inputs, n, batch_size)]
        return torch.cat(images)


@dataclass(frozen=True)
class KernelReport:
    """Which quantized convolutions / matmuls ONNX Runtime runs as int8 kernels.

    Attributes:
        quantized: compute nodes of the exported graph whose weight comes from a
            DequantizeLinear (what the exporter meant to run in int8).
        int8: those found as int8 kernels in ONNX Runtime's optimized graph.
        float_fallback: those still computed in float (Q/DQ around them were not fused).
        float_compute: compute nodes with float weights (e.g. StyleGAN's fixed Blur filter).
        optimized_ops: op-type counts of the optimized graph.
    """

    quantized: tuple[str, ...]
    int8: tuple[str, ...]
    float_fallback: tuple[str, ...]
    float_compute: tuple[str, ...]
    optimized_ops: dict[str, int]

    @property
    def all_int8(self) -> bool:
        return bool(self.quantized) and len(self.int8) == len(self.quantized)

    def format(self) -> str:
        lines = [f"{len(self.int8)}/{len(self.quantized)} quantized conv/matmul nodes run as int8 kernels"]
        lines += [f"  float fallback: {name}" for name in self.float_fallback]
        lines += [f"  float by design (float weights): {name}" for name in self.float_compute]
        kernels = {op: n for op, n in self.optimized_ops.items() if op in INT8_KERNELS + FLOAT_KERNELS}
        lines.append(f"  optimized graph kernels: {kernels}")
        return "\n".join(lines)


def _matches(original: str, optimized: str) -> bool:
    # ORT names a fused node after the node it replaces, plus a suffix ("..._token_5").
    return optimized == original or optimized.startswith(original + "_")


def int8_kernel_report(path: str | os.PathLike) -> KernelReport:
    """Build an ONNX Runtime session for ``path`` and inspect its optimized graph."""
    model = load_model(path)
    index = GraphIndex.build(model.graph)
    quantized, float_compute = [], []
    for node in model.graph.node:
        if node.op_type not in _COMPUTE or len(node.input) < 2:
            continue
        producer = index.producer.get(node.input[1])
        if producer is not None and producer.op_type == "DequantizeLinear":
            if index.weight_source(producer.input[0]) is not None:  # a quantized weight
                quantized.append(node_label(node))
        elif index.weight_source(node.input[1]) is not None:
            float_compute.append(node_label(node))
    with tempfile.TemporaryDirectory() as tmp:
        optimized_path = Path(tmp) / "optimized.onnx"
        make_session(path, threads=1, optimized_path=str(optimized_path))
        optimized = onnx.load(str(optimized_path))
    ops = Counter(node.op_type for node in optimized.graph.node)
    int8_names = [n.name for n in optimized.graph.node if n.op_type in INT8_KERNELS]
    int8 = [q for q in quantized if any(_matches(q, name) for name in int8_names)]
    return KernelReport(
        quantized=tuple(quantized),
        int8=tuple(int8),
        float_fallback=tuple(q for q in quantized if q not in int8),
        float_compute=tuple(float_compute),
        optimized_ops=dict(ops),
    )


def input_shape(path: str | os.PathLike, batch: int) -> tuple[str, tuple[int, ...]]:
    """(input name, concrete shape) of a model's first input with the batch dimension set."""
    model = load_model(path, external_data=False)
    initializers = {init.name for init in model.graph.initializer}
    first = next(i for i in model.graph.input if i.name not in initializers)
    dims = first.type.tensor_type.shape.dim
    shape = [batch if index == 0 else (d.dim_value or 1) for index, d in enumerate(dims)]
    unknown = [d.dim_param for index, d in enumerate(dims) if index > 0 and not d.dim_value]
    if unknown:
        raise ExportError(f"input {first.name!r} of {path} has symbolic non-batch dimensions {unknown}.")
    return first.name, tuple(shape)


#: ONNX Runtime ops that run on 8-bit tensors in integer arithmetic.
INT8_OPS = INT8_KERNELS + ("QLinearAdd", "QLinearConcat", "QLinearLeakyRelu", "QLinearMul", "QLinearSigmoid",
                           "QLinearAveragePool", "QLinearGlobalAveragePool")


@dataclass(frozen=True)
class TimeShare:
    """Where an engine spends its time: the share outside int8 kernels and its largest parts.

    Attributes:
        outside_int8: fraction of the summed op time spent outside int8 kernels.
        top: (op, fraction of the total) of the largest ops outside int8 kernels.
        int8_ms: milliseconds per call in int8 kernels (summed op times / calls).
        other_ms: milliseconds per call in every other op.
    """

    outside_int8: float
    top: tuple[tuple[str, float], ...]
    int8_ms: float
    other_ms: float

    def format(self) -> str:
        parts = ", ".join(f"{op} {share:.0%}" for op, share in self.top)
        return f"{self.outside_int8:.0%} of the time outside int8 kernels ({parts})"


def time_share(per_op: dict[str, float], is_int8: Any, calls: int, top: int = 5) -> TimeShare:
    """A `TimeShare` from op times in microseconds summed over ``calls`` calls (``is_int8(op) -> bool``)."""
    total = sum(per_op.values()) or 1.0
    outside = sorted(((op, t) for op, t in per_op.items() if not is_int8(op)), key=lambda kv: -kv[1])
    other = sum(t for _, t in outside)
    return TimeShare(other / total, tuple((op, t / total) for op, t in outside[:top]),
                     int8_ms=(sum(per_op.values()) - other) / calls / 1e3, other_ms=other / calls / 1e3)


def profile_time_share(path: str | os.PathLike, x: np.ndarray, runs: int = 3, threads: Optional[int] = None) -> TimeShare:
    """ONNX Runtime's profiler over ``runs`` calls on ``x`` after one warm-up call (its events
    are left out: first-call allocations dominated small models): time per op type, int8 or not.

    An op counts as int8 when it is an integer kernel (`INT8_OPS`) or it reads and writes no float
    tensor (a Transpose, DepthToSpace or Max on uint8, shape arithmetic on int64), as OpenVINO's
    counters name a u8 / i8 kernel; those show as "Op (integer)"."""
    import json

    ort = _onnxruntime()
    options = ort.SessionOptions()
    options.enable_profiling = True
    options.log_severity_level = 3
    if threads is not None:
        options.intra_op_num_threads = threads
    with tempfile.TemporaryDirectory() as tmp:
        options.profile_file_prefix = str(Path(tmp) / "profile")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        for _ in range(runs + 1):
            session.run(None, {name: x})
        events = json.loads(Path(session.end_profiling()).read_text())
    model_runs = sorted((e for e in events if e.get("name") == "model_run"), key=lambda e: e.get("ts", 0))
    warm_end = model_runs[0].get("ts", 0) + model_runs[0].get("dur", 0) if model_runs else 0
    per_op: dict[str, float] = {}
    for event in events:
        if (event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time")
                and event.get("ts", 0) >= warm_end):
            op = _op_key(event.get("args", {}))
            per_op[op] = per_op.get(op, 0.0) + float(event.get("dur", 0))
    return time_share(per_op, lambda op: op in INT8_OPS or op.endswith(" (integer)"), calls=runs)


FLOAT_TYPES = ("float", "float16", "double", "bfloat16")


def _op_key(args: dict) -> str:
    """A profiled node's op type, marked " (integer)" when none of its inputs and outputs is a
    float tensor."""
    op = args.get("op_name", "?")
    types = [next(iter(entry), "") for key in ("input_type_shape", "output_type_shape")
             for entry in args.get(key, [])]
    return op if not types or any(t in FLOAT_TYPES for t in types) else f"{op} (integer)"
