"""CPU latency of exported generators on ONNX Runtime or OpenVINO (batch 1 and 8), int8 vs fp32.

Why interleaved: our CPUs are shared, so load changes during a run. Timing the two models in
alternation (A, B, A, B, ...) exposes both to the same load; the median of many runs after a
warm-up is reported, with the spread (25th-75th percentile) to show how noisy it was.
"""

from __future__ import annotations

import math
import os
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from gan_brevitas.deploy.runner import check_engine, input_shape, open_runner
from gan_brevitas.errors import ExportError
from gan_brevitas.limits import check_memory


@dataclass(frozen=True)
class Latency:
    """Latency of one model at one batch size, in milliseconds."""

    path: str
    batch: int
    median_ms: float
    p25_ms: float
    p75_ms: float
    runs: int
    threads: Optional[int]
    engine: str = "onnxruntime"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class BenchRow:
    """One batch size: the model, the baseline it is compared against, the speed-up."""

    batch: int
    model: Latency
    baseline: Optional[Latency]

    @property
    def speedup(self) -> Optional[float]:
        return None if self.baseline is None else self.baseline.median_ms / self.model.median_ms


@dataclass(frozen=True)
class BenchReport:
    model_path: str
    baseline_path: Optional[str]
    model_bytes: int
    baseline_bytes: Optional[int]
    rows: tuple[BenchRow, ...]
    engine: str = "onnxruntime"

    def to_dict(self) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "model": self.model_path,
            "baseline": self.baseline_path,
            "model_bytes": self.model_bytes,
            "baseline_bytes": self.baseline_bytes,
            "rows": [
                {"batch": r.batch, "model": r.model.to_dict(),
                 "baseline": r.baseline.to_dict() if r.baseline else None, "speedup": r.speedup}
                for r in self.rows
            ],
        }

    def format(self) -> str:
        lines = [f"model    {self.model_path} ({self.model_bytes / 1e6:.2f} MB), engine {self.engine}"]
        if self.baseline_path:
            ratio = self.baseline_bytes / self.model_bytes if self.baseline_bytes else float("nan")
            lines.append(f"baseline {self.baseline_path} ({self.baseline_bytes / 1e6:.2f} MB, {ratio:.2f}x the size)")
        lines.append("batch  model ms (p25-p75)        baseline ms (p25-p75)     speed-up")
        for row in self.rows:
            model = f"{row.model.median_ms:9.2f} ({row.model.p25_ms:.1f}-{row.model.p75_ms:.1f})"
            if row.baseline is None:
                lines.append(f"{row.batch:5d}  {model:26s}")
                continue
            base = f"{row.baseline.median_ms:9.2f} ({row.baseline.p25_ms:.1f}-{row.baseline.p75_ms:.1f})"
            lines.append(f"{row.batch:5d}  {model:26s} {base:26s} {row.speedup:6.2f}x")
        return "\n".join(lines)


def sample_input(shape: Sequence[int], seed: int = 0) -> np.ndarray:
    """A reproducible input: standard normal latents ([B, D]) or images in [-1, 1] ([B, C, H, W])."""
    rng = np.random.default_rng(seed)
    if len(shape) == 4:
        return rng.uniform(-1.0, 1.0, size=shape).astype(np.float32)
    return rng.standard_normal(size=shape).astype(np.float32)


def round_orders(n_calls: int, runs: int, seed: int = 0) -> list[list[int]]:
    """The call order of each timed round: a fresh (seeded) permutation per round. A fixed order
    biases the comparison: a call that always follows another engine's inherits its busy-waiting
    worker threads (measured: OpenVINO after ONNX Runtime at 2 threads, up to 2x slower)."""
    rng = random.Random(seed)
    orders = []
    for _ in range(runs):
        order = list(range(n_calls))
        rng.shuffle(order)
        orders.append(order)
    return orders


def time_interleaved(calls: Sequence[Callable[[], Any]], runs: int, warmup: int) -> list[list[float]]:
    """Milliseconds of each call over ``runs`` rounds, every call once per round in a shuffled
    order (`round_orders`), after ``warmup`` untimed rounds: every call sees the same machine
    load and, on average, the same predecessors."""
    for _ in range(warmup):
        for call in calls:
            call()
    times: list[list[float]] = [[] for _ in calls]
    for order in round_orders(len(calls), runs):
        for i in order:
            start = time.perf_counter()
            calls[i]()
            times[i].append((time.perf_counter() - start) * 1e3)
    return times


def latency(path: str, batch: int, times: Sequence[float], threads: Optional[int], engine: str) -> Latency:
    """Median and quartiles of ``times`` (ms)."""
    values = np.asarray(times)
    return Latency(
        path=path, batch=batch, median_ms=float(np.median(values)),
        p25_ms=float(np.percentile(values, 25)), p75_ms=float(np.percentile(values, 75)),
        runs=len(times), threads=threads, engine=engine,
    )


def _size(path: str) -> int:
    size = Path(path).stat().st_size
    weights = Path(path).with_suffix(".bin")
    return size + weights.stat().st_size if Path(path).suffix == ".xml" and weights.is_file() else size


def bench(
    model_path: str | os.PathLike,
    against: Optional[str | os.PathLike] = None,
    batch_sizes: Sequence[int] = (1, 8),
    threads: Optional[int] = None,
    warmup: int = 3,
    runs: int = 20,
    engine: str = "onnxruntime",
) -> BenchReport:
    """Median CPU latency of ``model_path`` (and ``against``, interleaved) per batch size on
    ``engine`` ("onnxruntime" or "openvino").

    Both models must take the same input shape (e.g. the int8 and fp32 export of one
    generator). ``threads`` sets the engine's intra-op threads (None: its default).
    """
    check_engine(engine)
    if runs < 1 or warmup < 0:
        raise ExportError(f"runs must be >= 1 and warmup >= 0, got runs={runs}, warmup={warmup}.")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ExportError(f"threads must be an integer >= 1 (or omitted for ONNX Runtime's default), got {threads}.")
    bad = [b for b in batch_sizes if isinstance(b, bool) or not isinstance(b, int) or b < 1]
    if bad or not batch_sizes:
        raise ExportError(f"batch sizes must be integers >= 1, got {list(batch_sizes)}: e.g. --batch 1 8.")
    paths = [str(model_path)] + ([str(against)] if against is not None else [])
    for path in paths:
        name, shape = input_shape(path, max(batch_sizes))
        check_memory(math.prod(shape) * 12, f"the input {name!r} {list(shape)} that {path} declares")
    rows = []
    for batch in batch_sizes:
        shapes = [input_shape(p, batch) for p in paths]
        if len({shape for _, shape in shapes}) != 1:
            raise ExportError(
                f"the models take different inputs ({shapes[0][1]} vs {shapes[-1][1]}): compare exports "
                "of the same generator."
            )
        x = sample_input(shapes[0][1])
        runners = [open_runner(p, engine, threads, shape=shapes[0][1]) for p in paths]
        times = time_interleaved([lambda r=r: r.run(x) for r in runners], runs, warmup)
        latencies = [latency(p, batch, t, threads, engine) for p, t in zip(paths, times)]
        rows.append(BenchRow(batch, latencies[0], latencies[1] if against is not None else None))
    return BenchReport(
        model_path=paths[0],
        baseline_path=paths[1] if against is not None else None,
        model_bytes=_size(paths[0]),
        baseline_bytes=_size(paths[1]) if against is not None else None,
        rows=tuple(rows),
        engine=engine,
    )
