"""Build, run and time an int8 TensorRT engine from the ``tensorrt`` ONNX export.

Written to TensorRT's documented Python API (10.x / 11.x) and pycuda; neither can be installed
on our development machines, so both are imported only inside the functions that need them
and a missing one raises MissingDependencyError naming the extra (``pip install
gan-brevitas[trt]``). Everything that can be checked without them (the graph obeys TensorRT's
rules) is checked here before the build, by `gan_brevitas.export.rules.check_tensorrt`.

Explicit quantization: the Q/DQ nodes of the export set the int8 layers, and the network is
strongly typed (the graph's types decide fp32 / fp16 / int8; TensorRT 11 removed the precision
builder flags and the calibrator), so no builder precision flag is set.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from gan_brevitas.atomic_files import atomic_write_bytes
from gan_brevitas.errors import ExportError, MissingDependencyError
from gan_brevitas.export.ort import input_shape
from gan_brevitas.export.rules import check_tensorrt, format_violations

log = logging.getLogger(__name__)


def _tensorrt() -> Any:
    try:
        import tensorrt
    except ImportError as err:
        raise MissingDependencyError(
            f"TensorRT is not importable ({err}): install it on a machine with an NVIDIA GPU "
            "(pip install gan-brevitas[trt], which needs NVIDIA's package index)."
        ) from err
    return tensorrt


def _pycuda() -> Any:
    try:
        import pycuda.autoinit  # noqa: F401  (creates the CUDA context)
        import pycuda.driver as cuda
    except ImportError as err:
        raise MissingDependencyError(
            f"pycuda is not importable ({err}): pip install pycuda on a machine with the CUDA "
            "toolkit and an NVIDIA driver (gan-brevitas[trt])."
        ) from err
    return cuda


@dataclass(frozen=True)
class BuildSpec:
    """What to build: the batch range of the engine's optimization profile.

    Attributes:
        min_batch / opt_batch / max_batch: the dynamic batch range; kernels are tuned for opt.
        workspace_bytes: the builder's scratch memory limit.
    """

    min_batch: int = 1
    opt_batch: int = 8
    max_batch: int = 8
    workspace_bytes: int = 2 << 30

    def __post_init__(self) -> None:
        if not 1 <= self.min_batch <= self.opt_batch <= self.max_batch:
            raise ExportError(
                f"need 1 <= min_batch <= opt_batch <= max_batch, got {self.min_batch}, "
                f"{self.opt_batch}, {self.max_batch}."
            )


def build_engine(onnx_path: str | os.PathLike, engine_path: str | os.PathLike, spec: BuildSpec = BuildSpec()) -> Path:
    """Parse the ONNX file, build a strongly typed int8 engine and write it atomically.

    Raises ExportError when the graph breaks TensorRT's rules (before any TensorRT call) or
    the parser / builder fails (with TensorRT's messages).
    """
    rules = check_tensorrt(onnx_path)
    if rules.quantized and rules.errors:
        raise ExportError(
            f"{onnx_path} breaks TensorRT's rules; re-export with target='tensorrt':\n"
            + "\n".join(format_violations(rules.errors))
        )
    trt = _tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    strongly_typed = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    if strongly_typed is not None:  # TensorRT 10; ignored (always on) in 11
        flags |= 1 << int(strongly_typed)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT's ONNX parser rejected {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, spec.workspace_bytes)
    profile = builder.create_optimization_profile()
    name, _ = input_shape(onnx_path, 1)
    profile.set_shape(
        name,
        input_shape(onnx_path, spec.min_batch)[1],
        input_shape(onnx_path, spec.opt_batch)[1],
        input_shape(onnx_path, spec.max_batch)[1],
    )
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(f"TensorRT could not build an engine from {onnx_path} (see its log above).")
    engine_path = atomic_write_bytes(engine_path, bytes(serialized), what="TensorRT engine")
    log.info("wrote TensorRT engine %s", engine_path)
    return engine_path


@dataclass(frozen=True)
class EngineLatency:
    """GPU latency of one batch size from CUDA events, in milliseconds."""

    batch: int
    median_ms: float
    p25_ms: float
    p75_ms: float
    runs: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class EngineRunner:
    """Runs a serialized engine with pycuda: host -> device copy, execute, device -> host."""

    def __init__(self, engine_path: str | os.PathLike) -> None:
        trt = _tensorrt()
        self._cuda = _pycuda()
        self._trt = trt
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self.engine is None:
            raise ExportError(f"{engine_path} is not a TensorRT engine for this TensorRT version / GPU.")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.stream = self._cuda.Stream()
        self._buffers: dict[str, Any] = {}
        self._batch: Optional[int] = None

    def _prepare(self, shape: tuple[int, ...]) -> dict[str, np.ndarray]:
        """Set the input shape and (re)allocate device buffers; returns host output arrays."""
        cuda, trt = self._cuda, self._trt
        self.context.set_input_shape(self.inputs[0], shape)
        host_outputs = {}
        for name in self.inputs + self.outputs:
            tensor_shape = tuple(self.context.get_tensor_shape(name))
            dtype = trt.nptype(self.engine.get_tensor_dtype(name))
            nbytes = int(np.prod(tensor_shape)) * np.dtype(dtype).itemsize
            if self._batch != shape[0] or name not in self._buffers:
                self._buffers[name] = cuda.mem_alloc(nbytes)
            self.context.set_tensor_address(name, int(self._buffers[name]))
            if name in self.outputs:
                host_outputs[name] = cuda.pagelocked_empty(tensor_shape, dtype)
        self._batch = shape[0]
        return host_outputs

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """The first output (the image) for one input batch."""
        cuda = self._cuda
        x = np.ascontiguousarray(x, dtype=np.float32)
        outputs = self._prepare(x.shape)
        cuda.memcpy_htod_async(self._buffers[self.inputs[0]], x, self.stream)
        self.context.execute_async_v3(self.stream.handle)
        for name, host in outputs.items():
            cuda.memcpy_dtoh_async(host, self._buffers[name], self.stream)
        self.stream.synchronize()
        return np.array(outputs[self.outputs[0]], dtype=np.float32)

    def time(self, x: np.ndarray, warmup: int = 10, runs: int = 100) -> EngineLatency:
        """Latency of the engine alone (no copies) with CUDA events: warm-up, then the median."""
        cuda = self._cuda
        x = np.ascontiguousarray(x, dtype=np.float32)
        self._prepare(x.shape)
        cuda.memcpy_htod_async(self._buffers[self.inputs[0]], x, self.stream)
        for _ in range(warmup):
            self.context.execute_async_v3(self.stream.handle)
        start, end = cuda.Event(), cuda.Event()
        times = []
        for _ in range(runs):
            start.record(self.stream)
            self.context.execute_async_v3(self.stream.handle)
            end.record(self.stream)
            end.synchronize()
            times.append(start.time_till(end))
        values = np.asarray(times)
        return EngineLatency(
            batch=x.shape[0], median_ms=float(np.median(values)), p25_ms=float(np.percentile(values, 25)),
            p75_ms=float(np.percentile(values, 75)), runs=runs,
        )


def time_engine(
    engine_path: str | os.PathLike, onnx_path: str | os.PathLike, batch_sizes: Sequence[int] = (1, 8),
    warmup: int = 10, runs: int = 100,
) -> list[EngineLatency]:
    """Latency per batch size; input shapes come from the ONNX file the engine was built from."""
    from gan_brevitas.deploy.bench import sample_input

    runner = EngineRunner(engine_path)
    return [runner.time(sample_input(input_shape(onnx_path, b)[1]), warmup, runs) for b in batch_sizes]
