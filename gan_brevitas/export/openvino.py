"""OpenVINO's view of an exported graph: compiling it for the CPU, the per-layer precision
report and IR saving.

* `compile_model` compiles an ONNX file or IR (.xml) for the CPU (latency hint, fp32 float
  parts: on processors with bf16 OpenVINO would otherwise run the float parts in bf16 and the
  outputs would no longer match the model's).
* `precision_report` reads the precision each layer of the compiled (runtime) model ran in
  (its rt_info ``runtimePrecision``): every convolution of a quantized generator should run in
  u8 / i8; the others are named.
* `save_ir` converts an ONNX file to IR (.xml + .bin, weights kept fp32) with our metadata.

openvino is imported lazily (extra ``[openvino]``); the runner is `gan_brevitas.deploy.openvino`.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from gan_brevitas.atomic_files import publish
from gan_brevitas.errors import ExportError, MissingDependencyError

#: Runtime layer types that hold a weighted convolution / matrix product.
CONV_LAYER_TYPES = ("Convolution", "Deconvolution", "GroupConvolution", "FullyConnected", "MatMul")
INT8_PRECISIONS = ("u8", "i8")


def _openvino() -> Any:
    try:
        import openvino
    except ImportError as err:
        raise MissingDependencyError(
            "openvino is not installed: pip install 'gan-brevitas[openvino]' (or pip install openvino)."
        ) from err
    return openvino


def _read(core: Any, path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"{path} does not exist or is not a file: give an exported .onnx or .xml model.")
    try:
        return core.read_model(str(path))
    except Exception as err:
        raise ExportError(f"OpenVINO cannot read {path}: {err}") from err


def compile_model(path: str | os.PathLike, threads: Optional[int] = None,
                  shape: Optional[Sequence[int]] = None) -> Any:
    """An OpenVINO CompiledModel on the CPU (latency hint, fp32 float parts); ``shape`` fixes
    the first input's shape (static shapes compile to faster kernels)."""
    ov = _openvino()
    core = ov.Core()
    model = _read(core, path)
    if shape is not None:
        model.reshape({model.inputs[0]: ov.PartialShape(list(shape))})
    config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
    if threads is not None:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    try:
        return core.compile_model(model, "CPU", config)
    except Exception as err:
        raise ExportError(f"OpenVINO cannot compile {path} for the CPU: {err}") from err


@dataclass(frozen=True)
class PrecisionReport:
    """The precision each convolution of a compiled model ran in.

    Attributes:
        int8: runtime names of the convolutions that ran in u8 / i8.
        not_int8: (runtime name, precision) of those that did not.
        precisions: (layer type, precision) -> count over the whole runtime model.
    """

    int8: tuple[str, ...]
    not_int8: tuple[tuple[str, str], ...]
    precisions: dict[str, int]

    @property
    def all_int8(self) -> bool:
        return bool(self.int8) and not self.not_int8

    def format(self) -> str:
        lines = [f"OpenVINO: {len(self.int8)}/{len(self.int8) + len(self.not_int8)} convolutions run in int8"]
        lines += [f"  not int8 ({precision}): {name}" for name, precision in self.not_int8]
        lines.append(f"  runtime layers: {self.precisions}")
        return "\n".join(lines)


def _rt(info: Mapping[str, Any], key: str) -> str:
    return info[key].astype(str) if key in info else ""


def precision_report(path: str | os.PathLike, shape: Optional[Sequence[int]] = None) -> PrecisionReport:
    """Compile ``path`` for the CPU and read each runtime layer's precision."""
    runtime = compile_model(path, threads=1, shape=shape).get_runtime_model()
    int8, not_int8 = [], []
    counts: dict[str, int] = {}
    for op in runtime.get_ordered_ops():
        info = op.get_rt_info()
        kind, precision = _rt(info, "layerType"), _rt(info, "runtimePrecision")
        if kind in ("Input", "Output", "Const"):
            continue
        key = f"{kind} {precision}"
        counts[key] = counts.get(key, 0) + 1
        if kind in CONV_LAYER_TYPES:
            (int8 if precision in INT8_PRECISIONS else not_int8).append(
                op.get_friendly_name() if precision in INT8_PRECISIONS else (op.get_friendly_name(), precision)
            )
    return PrecisionReport(int8=tuple(int8), not_int8=tuple(not_int8), precisions=counts)


def save_ir(onnx_path: str | os.PathLike, xml_path: str | os.PathLike, metadata: Mapping[str, str]) -> None:
    """Convert an ONNX file to OpenVINO IR at ``xml_path`` (+ .bin beside it), atomically:
    both files are written in a temporary folder and renamed into place (.bin first)."""
    ov = _openvino()
    xml_path = Path(xml_path)
    model = ov.convert_model(str(onnx_path))
    for key, value in metadata.items():
        model.set_rt_info(value, ["gan_brevitas", key])
    with tempfile.TemporaryDirectory(dir=xml_path.parent, prefix=f".{xml_path.name}.") as tmp:
        ov.save_model(model, str(Path(tmp) / xml_path.name), compress_to_fp16=False)
        publish(Path(tmp), xml_path.parent, last=(xml_path.name,))  # checked targets, the .xml last


def profile_time_share(path: str | os.PathLike, x: Any, runs: int = 3, threads: Optional[int] = None) -> Any:
    """OpenVINO's performance counters over ``runs`` calls on ``x``: time per layer type, and
    whether its kernel ran in int8 (the implementation name carries i8 / u8, either case), after
    one warm-up call."""
    return profile_time_shares([path], x, runs, threads)[0]


def profile_time_shares(paths: Sequence[str | os.PathLike], x: Any, runs: int = 3,
                        threads: Optional[int] = None) -> list[Any]:
    """`profile_time_share` of several models, their calls interleaved (one call of each per
    round), so that a shared machine's drift falls on all of them alike."""
    from gan_brevitas.export.ort import time_share

    ov = _openvino()
    core = ov.Core()
    config: dict[str, Any] = {"PERF_COUNT": True, "INFERENCE_PRECISION_HINT": "f32"}
    if threads is not None:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    requests = []
    for path in paths:
        model = _read(core, path)
        model.reshape({model.inputs[0]: ov.PartialShape(list(x.shape))})
        requests.append(core.compile_model(model, "CPU", config).create_infer_request())
        requests[-1].infer({0: x})  # warm-up, not counted
    per_op: list[dict[str, float]] = [{} for _ in requests]
    for _ in range(runs):
        for request, times in zip(requests, per_op):
            request.infer({0: x})
            for info in request.get_profiling_info():
                if info.status != info.Status.EXECUTED:
                    continue
                kernel = info.exec_type.lower()
                int8 = "i8" in kernel or "u8" in kernel
                key = f"{info.node_type} ({'int8' if int8 else 'float'})"
                times[key] = times.get(key, 0.0) + info.real_time.total_seconds() * 1e6
    return [time_share(times, lambda key: key.endswith("(int8)"), calls=runs) for times in per_op]
