"""CPU deployment side by side: fp32, ONNX Runtime's quantize_static, NNCF and ours, on ONNX
Runtime and OpenVINO, for CycleGAN-9 at 256 px and every generator of the real-generator suite.

    python -m benchmarks.deploy_cpu                        # writes benchmarks/results/deploy_cpu.*
    python -m benchmarks.deploy_cpu --models cyclegan-256 --runs 3
    python -m benchmarks.deploy_cpu --ours-method gptq --ours-weight-bits 7 --name deploy_cpu_avx2_gptq_w7
        # ours as recommended on x86 CPUs without VNNI (`gan_brevitas.cpu_features`)

Per generator, one run: every deployment is built (exports, ``quantize_static``, ``nncf.quantize``
on the same fp32 ONNX and the same calibration inputs), then timed in interleaved rounds
(each round runs every deployment once, in a shuffled order, for each batch size and thread
count: `gan_brevitas.deploy.bench.time_interleaved`), medians
reported with n. The noise floor is the relative difference between two copies of the fp32
ONNX Runtime session timed in the same rounds. Quality: PSNR of each deployment's output vs
the fp32 output on test inputs not used to calibrate. Time outside int8 kernels: ONNX Runtime's
profiler (per-op time; int8 are the QLinear* / *Integer ops and ops that read and write no float
tensor, e.g. a Transpose or Max on uint8, shown as "Op (integer)") and OpenVINO's performance counters
(per-layer time; int8 when the layer's implementation runs u8/i8), both at batch 1 with 2 threads.

Each measurement (a generator x a deployment x a batch size x a thread count) is a harness run
(`gan_brevitas.harness.sweep_together`: a generator's runs are measured together, built once and
timed in the same rounds) cached in ``--cache`` (``benchmarks/.cache/deploy_cpu``), keyed by the
generator's and the inputs' content, the settings, the code, the tools' versions and the CPU: an
interrupted benchmark resumes at the first generator not finished, a repeated one measures
nothing (``--fresh`` measures every run again).

CycleGAN-9 has random weights (no 256 px CycleGAN checkpoint is available offline): its PSNR is
a like-for-like comparison between tools, not an image-quality figure. The suite is read from
``benchmarks.suite`` when its cache is filled (GAN_BREVITAS_SUITE_CACHE); run the benchmark as a module
from the repository root (``python -m benchmarks.deploy_cpu``) so that ``benchmarks.suite`` imports.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

import numpy as np
import torch

from benchmarks.suite import load_suite, suite_available
from benchmarks.suite.qfid import QFID_FAMILIES, SOURCE_SHA256 as QFID_SOURCE, qfid_scores
from gan_brevitas import QuantConfig, recipes
from gan_brevitas.cpu_features import int8_pairs_saturate
from gan_brevitas.deploy.bench import time_interleaved
from gan_brevitas.deploy.runner import open_runner
from gan_brevitas.errors import MetricError
from gan_brevitas.export.openvino import profile_time_share as ov_profile
from gan_brevitas.export.openvino import profile_time_shares as ov_profiles
from gan_brevitas.export.ort import profile_time_share as ort_profile
from gan_brevitas.harness import Report, ResultRow, Run, RunCache, package_fingerprint, sweep_together, write_report
from gan_brevitas.qat.checkpoint import module_sha256, tensor_sha256

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger("benchmarks.deploy_cpu")
RESULTS = Path(__file__).resolve().parent / "results"
CACHE = Path(__file__).resolve().parent / ".cache" / "deploy_cpu"
CACHE_FORMAT = "benchmarks/deploy_cpu/1"
DEPLOYMENTS = ("fp32 ORT", "fp32 ORT (repeat)", "fp32 OpenVINO", "quantize_static ORT", "quantize_static OpenVINO",
               "NNCF OpenVINO", "ours ORT", "ours ORT (int8 tail)", "ours OpenVINO")


@dataclass
class Case:
    """One generator: float model, calibration and test inputs, output range for PSNR."""

    name: str
    model: torch.nn.Module
    calib: torch.Tensor
    test: torch.Tensor
    output_range: tuple[float, float] = (-1.0, 1.0)
    note: str = ""
    #: our recipe: the method and weight bits of "ours" (--ours-method, --ours-weight-bits)
    ours_method: str = "vanilla-ptq"
    ours_weight_bits: int = 8
    files: dict[str, Path] = field(default_factory=dict)
    #: deployment -> why it failed (build, compile or run); its row is marked failed
    failed: dict[str, str] = field(default_factory=dict)

    def fail(self, labels: tuple[str, ...] | list[str], step: str, err: BaseException) -> None:
        message = f"{step}: {type(err).__name__}: {str(err).strip().splitlines()[0][:200] if str(err).strip() else ''}"
        for label in labels:
            self.failed.setdefault(label, message)
            self.files.pop(label, None)
        log.warning("%s: %s failed (%s)", self.name, ", ".join(labels), message)

    def working(self) -> list[str]:
        return [label for label in DEPLOYMENTS if label in self.files and label not in self.failed]


def cpu_features() -> list[str]:
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "amx_bf16")
    present = set(flags.split())
    return [f for f in wanted if f in present]


def cyclegan_case(side: int, n_calib: int, n_test: int) -> Case:
    from skimage import data as skdata
    from skimage.transform import resize

    torch.manual_seed(0)
    model = recipes.build_generator("cyclegan", ngf=64, n_blocks=9, image_size=side).eval()
    names = ["astronaut", "chelsea", "coffee", "rocket", "camera", "brick", "grass", "gravel", "moon", "text",
             "page", "horse", "retina", "immunohistochemistry", "hubble_deep_field", "colorwheel"]
    images = []
    for name in names[: n_calib + n_test]:
        image = np.asarray(getattr(skdata, name)(), dtype=np.float32)
        image = image / 255.0 if image.max() > 1.5 else image
        if image.ndim == 2:
            image = np.stack([image] * 3, axis=-1)
        image = resize(image[..., :3], (side, side), anti_aliasing=True)
        images.append(torch.from_numpy(image).permute(2, 0, 1).float() * 2 - 1)
    stack = torch.stack(images)
    return Case(f"cyclegan-9-{side}", model, stack[:n_calib], stack[n_calib:], note="random init at reference width ngf 64, 9 blocks: no pretrained 256 px checkpoint is reachable offline")


def suite_cases() -> list[Case]:
    if not suite_available():
        log.warning("the suite cache is not filled: suite generators skipped (see benchmarks/suite/README.md)")
        return []
    return [Case(e.name, e.model, e.calib, e.test, tuple(e.output_range), note=e.family) for e in load_suite()]


def _reader(calib: torch.Tensor, input_name: str) -> Any:
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{input_name: calib[i : i + 1].numpy()} for i in range(calib.shape[0])])

        def get_next(self) -> Optional[dict[str, np.ndarray]]:
            return next(self.items, None)

    return Reader()


def build(case: Case, work: Path) -> dict[str, float]:
    """Write every deployment's file into ``work``; returns build wall times (s)."""
    import nncf
    import openvino as ov
    from onnxruntime.quantization import QuantFormat, quantize_static

    walls: dict[str, float] = {}
    example = case.calib[:1]
    fp32 = work / f"{case.name}.fp32.onnx"
    recipes.export(case.model, fp32, "float", example_input=example)
    case.files.update({"fp32 ORT": fp32, "fp32 ORT (repeat)": fp32, "fp32 OpenVINO": fp32})

    def timed(step: str, labels: tuple[str, ...], make: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        try:
            result = make()
        except Exception as err:  # one tool failing is a row marked failed, not a stopped run
            case.fail(labels, step, err)
            return None
        walls[step] = time.perf_counter() - start
        return result

    static = work / f"{case.name}.static.onnx"
    input_name = open_runner(fp32, "onnxruntime").input_name
    def run_static() -> Path:
        quantize_static(str(fp32), str(static), _reader(case.calib, input_name), quant_format=QuantFormat.QDQ,
                        per_channel=True)
        return static

    if timed("quantize_static", ("quantize_static ORT", "quantize_static OpenVINO"), run_static) is not None:
        case.files.update({"quantize_static ORT": static, "quantize_static OpenVINO": static})

    nncf_path = work / f"{case.name}.nncf.xml"

    def run_nncf() -> Path:
        dataset = nncf.Dataset([case.calib[i : i + 1].numpy() for i in range(case.calib.shape[0])])
        nncf_model = nncf.quantize(ov.Core().read_model(str(fp32)), dataset, subset_size=case.calib.shape[0])
        ov.save_model(nncf_model, str(nncf_path), compress_to_fp16=False)
        return nncf_path

    if timed("nncf", ("NNCF OpenVINO",), run_nncf) is not None:
        case.files["NNCF OpenVINO"] = nncf_path

    qmodel = timed("ours quantize", ("ours ORT", "ours OpenVINO"), lambda: recipes.quantize(
        case.model, case.ours_method, inputs=case.calib, num_samples=case.calib.shape[0], progress=False,
        config=QuantConfig(weight_bits=case.ours_weight_bits)))
    if qmodel is None:
        return walls
    ours_ort = work / f"{case.name}.ours.onnx"
    report = timed("ours export onnxruntime", ("ours ORT",), lambda: recipes.export(
        qmodel, ours_ort, "onnxruntime", example_input=example))
    if report is not None:
        log.info("%s", report.format())
        case.files["ours ORT"] = ours_ort
    tail = timed("ours int8 tail", ("ours ORT (int8 tail)",), lambda: _int8_tail(case, work / f"{case.name}.tail.onnx"))
    if tail is not None:
        case.files["ours ORT (int8 tail)"] = tail
    ours_ov = work / f"{case.name}.ours-ov.xml"
    report = timed("ours export openvino", ("ours OpenVINO",), lambda: recipes.export(
        qmodel, ours_ov, "openvino", inputs=case.calib, num_samples=case.calib.shape[0], example_input=example))
    if report is not None:
        log.info("%s", report.format())
        case.files["ours OpenVINO"] = ours_ov
    return walls


def _int8_tail(case: Case, path: Path) -> Path:
    """Ours with ``QuantConfig(quantize_tail=True)``: the output conv's result quantized too, so
    ONNX Runtime runs it as QLinearConv (the default keeps it float, for quality)."""
    qmodel = recipes.quantize(case.model, case.ours_method, inputs=case.calib, num_samples=case.calib.shape[0],
                              progress=False, config=QuantConfig(quantize_tail=True, weight_bits=case.ours_weight_bits))
    recipes.export(qmodel, path, "onnxruntime", example_input=case.calib[:1])
    return path


def _engine(label: str) -> str:
    return "onnxruntime" if "ORT" in label else "openvino"


def psnr(a: np.ndarray, b: np.ndarray, value_range: tuple[float, float]) -> float:
    low, high = value_range
    a, b = np.clip(a, low, high), np.clip(b, low, high)
    mse = float(np.mean((a - b) ** 2))
    return math.inf if mse == 0 else 10 * math.log10((high - low) ** 2 / mse)


def quality(case: Case) -> tuple[dict[str, float], dict[str, dict]]:
    """PSNR of each working deployment vs the fp32 ORT output on the test inputs, and for a
    noise-to-image generator its qFID scores (`benchmarks.suite.qfid`) as well."""
    outputs = {}
    for label in case.working():
        try:
            # a static batch-1 shape: OpenVINO cannot run some dynamic-batch graphs (srvgg's input
            # Resize failed with "only supports resize on spatial dimensions")
            runner = open_runner(case.files[label], _engine(label), threads=2, shape=(1, *case.test.shape[1:]))
            outputs[label] = np.concatenate([runner(case.test[i : i + 1]) for i in range(case.test.shape[0])])
        except Exception as err:
            case.fail((label,), "compile / run", err)
    reference = outputs["fp32 ORT"]
    quantized = {label: out for label, out in outputs.items() if "fp32" not in label}
    qfid = {}
    for label, out in quantized.items() if case.note in QFID_FAMILIES else ():
        try:
            qfid[label] = qfid_scores(out, reference)
        except MetricError as err:  # NaN or out-of-range images: that deployment failed, not the run
            case.fail((label,), "qFID", err)
    return {label: psnr(out, reference, case.output_range) for label, out in quantized.items()
            if label not in case.failed}, qfid


def latency(case: Case, grid: list[tuple[int, int]], runs: int, warmup: int) -> list[dict]:
    rows = []
    for batch, n_threads in grid:
        x = case.test[:1].repeat(batch, *[1] * (case.test.dim() - 1)).numpy()
        runners = {}
        for label in case.working():
            try:
                runners[label] = open_runner(case.files[label], _engine(label), n_threads, shape=x.shape)
                runners[label].run(x)
            except Exception as err:
                case.fail((label,), f"compile / run at batch {batch}", err)
        labels = [label for label in runners if label not in case.failed]
        calls: list[Callable[[], Any]] = [lambda r=runners[label]: r.run(x) for label in labels]
        times = time_interleaved(calls, runs, warmup)
        for label, t in zip(labels, times):
            rows.append({"deployment": label, "batch": batch, "threads": n_threads, "n": len(t),
                         "median_ms": float(np.median(t)), "p25_ms": float(np.percentile(t, 25)),
                         "p75_ms": float(np.percentile(t, 75))})
    return rows


def run_case(case: Case, grid: list[tuple[int, int]], runs: int, warmup: int) -> dict[str, Any]:
    """Build every deployment of ``case``, then measure them together: quality, latency in the
    same interleaved rounds at each (batch, threads) of ``grid``, time outside int8 kernels."""
    case.files.clear()
    case.failed.clear()
    with tempfile.TemporaryDirectory() as tmp:
        walls = build(case, Path(tmp))
        result: dict[str, Any] = {"model": case.name, "note": case.note, "build_s": walls,
                                  "n_calib": int(case.calib.shape[0]), "n_test": int(case.test.shape[0]),
                                  "input_shape": list(case.test.shape[1:])}
        result["psnr_db"], result["qfid"] = quality(case)
        result["latency"] = latency(case, grid, runs, warmup)
        x = case.test[:1].numpy()
        result["outside_int8"] = {}
        for label, profile in (("ours ORT", ort_profile), ("ours ORT (int8 tail)", ort_profile),
                               ("quantize_static ORT", ort_profile), ("ours OpenVINO", ov_profile),
                               ("NNCF OpenVINO", ov_profile)):
            if label in case.working():
                try:
                    result["outside_int8"][label] = dataclasses.asdict(profile(case.files[label], x, threads=2))
                except Exception as err:
                    case.fail((label,), "profile", err)
        result["openvino_t1"] = openvino_split(case, x)
        result["failed"] = dict(case.failed)
    return json.loads(json.dumps(result, default=str))  # error objects and numpy scalars as JSON data


#: Profiled calls of each model behind the OpenVINO int8 / other split (b1, 1 thread, interleaved).
CEILING_RUNS = 20


def openvino_split(case: Case, x: np.ndarray) -> dict[str, dict]:
    """Ours' and NNCF's OpenVINO int8 / other split at batch 1, 1 thread (2 shared threads are
    too noisy to compare), their profiled calls interleaved; {} where either failed."""
    labels = ("ours OpenVINO", "NNCF OpenVINO")
    if not set(labels) <= set(case.working()):
        return {}
    try:
        shares = ov_profiles([case.files[label] for label in labels], x, runs=CEILING_RUNS, threads=1)
    except Exception as err:
        case.fail(labels, "profile", err)
        return {}
    return {label: dataclasses.asdict(share) for label, share in zip(labels, shares)}


# ----------------------------------------------------------------------------- runs (the harness)

LATENCY = ("median_ms", "p25_ms", "p75_ms")


def case_runs(case: Case, grid: list[tuple[int, int]], runs: int, warmup: int) -> list[Run[None]]:
    """One run per (batch, threads) of ``grid`` and deployment; a generator's runs are measured
    together (`run_case`: built once, timed in the same interleaved rounds)."""
    return [Run(case.name, label, f"{label} b{b} t{t}",
                {"deployment": label, "batch": b, "threads": t, "runs": runs, "warmup": warmup})
            for b, t in grid for label in DEPLOYMENTS]


def row_of(result: dict[str, Any], run: Run[None], seconds: float) -> ResultRow:
    """The row of one deployment x batch x threads, from its generator's `run_case` result.

    Metrics: the latency statistics (None where it was not timed) and ``psnr_db`` where its
    quality was measured (the key is absent otherwise; None there is an infinite PSNR, as strict
    JSON writes it). Fields: the deployment, batch, threads, why it failed (None), its time
    outside int8 kernels (None), its OpenVINO int8 / other split at 1 thread (None) and the
    generator's own facts. ``seconds``: the wall time of the
    generator's whole measurement, which its runs share."""
    label, batch, threads = run.method, run.config["batch"], run.config["threads"]
    timed = next((r for r in result["latency"]
                  if r["deployment"] == label and r["batch"] == batch and r["threads"] == threads), None)
    metrics: dict[str, Any] = {key: None if timed is None else timed[key] for key in LATENCY}
    if label in result["psnr_db"]:
        metrics["psnr_db"] = result["psnr_db"][label]
    if label in result.get("qfid", {}):
        metrics["qfid"] = result["qfid"][label]
    generator = {key: result[key] for key in ("note", "n_calib", "n_test", "input_shape")}
    generator["build_s"] = [[step, wall] for step, wall in result["build_s"].items()]  # in build order
    fields = {"deployment": label, "batch": batch, "threads": threads, "failed": result["failed"].get(label),
              "outside_int8": result["outside_int8"].get(label),
              "openvino_t1": result.get("openvino_t1", {}).get(label), "generator": generator}
    return ResultRow(run.model, label, run.label, metrics, 0 if timed is None else timed["n"], seconds, fields)


def result_of(rows: list[ResultRow]) -> dict[str, Any]:
    """A generator's results as the report holds them (what `run_case` returned), from its rows."""
    generator = rows[0].fields["generator"]
    result: dict[str, Any] = {"model": rows[0].model, "note": generator["note"], "build_s": dict(generator["build_s"]),
                              **{key: generator[key] for key in ("n_calib", "n_test", "input_shape")},
                              "psnr_db": {}, "qfid": {}, "latency": [], "outside_int8": {}, "openvino_t1": {},
                              "failed": {}}
    for row in rows:
        label = row.fields["deployment"]
        if "psnr_db" in row.metrics:
            result["psnr_db"].setdefault(label, math.inf if row.metrics["psnr_db"] is None else row.metrics["psnr_db"])
        if "qfid" in row.metrics:
            result["qfid"].setdefault(label, row.metrics["qfid"])
        if row.metrics["median_ms"] is not None:
            result["latency"].append({"deployment": label, "batch": row.fields["batch"], "threads": row.fields["threads"],
                                      "n": row.n, **{key: row.metrics[key] for key in LATENCY}})
        for key in ("outside_int8", "openvino_t1", "failed"):
            if row.fields.get(key) is not None:
                result[key].setdefault(label, row.fields[key])
    return result


def measure_case(case: Case, pending: list[Run[None]], args: argparse.Namespace) -> list[tuple[ResultRow, dict]]:
    """The runs of ``case`` not cached yet, measured together (their (batch, threads) only)."""
    grid = list(dict.fromkeys((run.config["batch"], run.config["threads"]) for run in pending))
    log.info("%s: building deployments", case.name)
    start = time.perf_counter()
    result = run_case(case, grid, args.runs, args.warmup)
    seconds = time.perf_counter() - start
    return [(row_of(result, run, seconds), {}) for run in pending]


def run_context(cases: list[Case]) -> Callable[[Run[None]], dict[str, Any]]:
    """A run's key besides its own: the generator's and inputs' content, the code, tools, CPU."""
    common = {"package": package_fingerprint(), "benchmark": hashlib.sha256(Path(__file__).read_bytes()).hexdigest(),
              "qfid": QFID_SOURCE, "versions": _versions(), "cpu": [_cpu_model(), os.cpu_count(), cpu_features()]}
    ids = {c.name: {"generator": module_sha256(c.model), "output_range": list(c.output_range), "note": c.note,
                    "inputs": tensor_sha256([("calib", c.calib), ("test", c.test)]),
                    "ours": [c.ours_method, c.ours_weight_bits]} for c in cases}
    return lambda run: {**common, "case": ids[run.model]}


def _median(result: dict, label: str, batch: int, threads: int) -> Optional[float]:
    """The median latency of one deployment, None when it failed."""
    return next((r["median_ms"] for r in result["latency"]
                 if r["deployment"] == label and r["batch"] == batch and r["threads"] == threads), None)


def _ratio(numerator: Optional[float], denominator: Optional[float]) -> Optional[float]:
    return None if numerator is None or denominator is None else numerator / denominator


def targets(result: dict, batch: int, threads: int) -> dict[str, Any]:
    """The deployment targets at one setting (ours OpenVINO >= 1.1x NNCF at no PSNR loss, ours ORT
    >= 1.3x quantize_static and >= 1.8x fp32, <= 15% of the time outside int8 kernels); a ratio
    is None where a deployment it needs failed."""
    m = {label: _median(result, label, batch, threads) for label in DEPLOYMENTS}
    q = result["psnr_db"]
    noise = _ratio(abs(m["fp32 ORT"] - m["fp32 ORT (repeat)"]), m["fp32 ORT"]) if m["fp32 ORT (repeat)"] else None
    ov_ratio = _ratio(m["NNCF OpenVINO"], m["ours OpenVINO"])
    static_ratio = _ratio(m["quantize_static ORT"], m["ours ORT"])
    fp32_ratio = _ratio(m["fp32 ORT"], m["ours ORT"])
    psnr_gap = q["ours OpenVINO"] - q["NNCF OpenVINO"] if {"ours OpenVINO", "NNCF OpenVINO"} <= set(q) else None
    shares = [result["outside_int8"][label]["outside_int8"] for label in ("ours ORT", "ours OpenVINO")
              if label in result["outside_int8"]]
    return {
        "batch": batch, "threads": threads, "noise_floor": noise,
        "ours_ov_vs_nncf": ov_ratio, "ours_ov_psnr_minus_nncf": psnr_gap,
        "ours_ov_vs_nncf_met": ov_ratio is not None and psnr_gap is not None and ov_ratio >= 1.1 and psnr_gap >= 0,
        "ours_ort_vs_static": static_ratio, "ours_ort_vs_static_met": static_ratio is not None and static_ratio >= 1.3,
        "ours_ort_vs_fp32": fp32_ratio, "ours_ort_vs_fp32_met": fp32_ratio is not None and fp32_ratio >= 1.8,
        "outside_int8_met": len(shares) == 2 and max(shares) <= 0.15,
    }


def _x(value: Optional[float], met: bool, failed: str) -> str:
    if value is None:
        return f"n/a ({failed} failed)"
    return f"{value:.2f}x ({'met' if met else 'missed'})"


def _share(out: dict, label: str) -> str:
    if label not in out:
        return f"{label} n/a"
    top = f" (top: {_top(out[label])})" if label.startswith("ours") else ""
    return f"{label} {out[label]['outside_int8']:.0%}{top}"


def markdown(report: dict) -> str:
    lines = [
        "# CPU deployment: ours vs fp32, ONNX Runtime quantize_static and NNCF, on ONNX Runtime and OpenVINO",
        "",
        f"`{report['command']}`; {report['machine']} ({report.get('cpu_model', '')}); int8 features: "
        f"{', '.join(report['cpu_features'])}; load average {report['load_before']} before, "
        f"{report['load_after']} after (shared machine); wall {report['wall_s']:.0f} s. Speed-up = fp32 ONNX "
        "Runtime median / deployment median (same interleaved rounds); noise floor = |fp32 - fp32 (repeat)| / "
        "fp32 in the same rounds; PSNR vs the fp32 output on test inputs not used to calibrate (for the "
        "noise-to-image generator also qFID vs the fp32 output, in the offline demo CNN's features); "
        "OpenVINO float parts pinned to fp32. A deployment that failed is a row marked failed, with its error. "
        "Time outside int8 kernels: an ONNX Runtime op counts as int8 when it is an integer kernel (QLinear*, "
        "ConvInteger, QGemm) or it reads and writes no float tensor (a Transpose or Max on uint8); an OpenVINO layer "
        "when its kernel runs u8/i8.",
        "",
    ]
    for result in report["results"]:
        batch_threads = sorted({(r["batch"], r["threads"]) for r in result["latency"]})
        header = "| deployment | PSNR dB | " + " | ".join(f"b{b} t{t}" for b, t in batch_threads) + " |"
        lines += [f"## {result['model']} ({result['note']}, input {result['input_shape']}, "
                  f"{result['n_calib']} calibration / {result['n_test']} test inputs)", "", header,
                  "|" + "---|" * (2 + len(batch_threads))]
        failed = result.get("failed", {})
        for label in DEPLOYMENTS:
            if label in failed:
                lines.append(f"| {label} | failed | {failed[label]} |" + " |" * (len(batch_threads) - 1))
                continue
            cells = []
            for b, t in batch_threads:
                base, own = _median(result, "fp32 ORT", b, t), _median(result, label, b, t)
                n = next(r["n"] for r in result["latency"] if r["deployment"] == label and r["batch"] == b)
                cells.append(f"{own:.1f} ms, {base / own:.2f}x (n={n})")
            psnr_text = _psnr_text(result["psnr_db"], label) + _qfid_text(result.get("qfid", {}), label)
            lines.append(f"| {label} | {psnr_text} | " + " | ".join(cells) + " |")
        lines += ["", "Targets:", ""]
        for t in result["targets"]:
            noise = "n/a" if t["noise_floor"] is None else f"{t['noise_floor']:.1%}"
            gap = "" if t["ours_ov_psnr_minus_nncf"] is None else f", PSNR {t['ours_ov_psnr_minus_nncf']:+.1f} dB"
            lines.append(
                f"- b{t['batch']} t{t['threads']} (noise floor {noise}): ours OpenVINO / NNCF "
                f"{_x(t['ours_ov_vs_nncf'], t['ours_ov_vs_nncf_met'], 'a deployment')}{gap}; ours ORT / quantize_static "
                f"{_x(t['ours_ort_vs_static'], t['ours_ort_vs_static_met'], 'a deployment')}; "
                f"ours ORT / fp32 {_x(t['ours_ort_vs_fp32'], t['ours_ort_vs_fp32_met'], 'a deployment')}"
            )
        out = result["outside_int8"]
        lines.append(
            "- time outside int8 kernels (b1, 2 threads): "
            + "; ".join(_share(out, label) for label in ("ours ORT", "ours ORT (int8 tail)", "quantize_static ORT",
                                                          "ours OpenVINO", "NNCF OpenVINO"))
            + f" ({'met' if result['targets'][0]['outside_int8_met'] else 'missed'}: target <= 15% for ours)"
        )
        ceiling = _ov_ceiling(result.get("openvino_t1", {}))
        if ceiling:
            lines.append(ceiling)
        lines.append(f"- build wall times (s): {', '.join(f'{k} {v:.0f}' for k, v in result['build_s'].items())}")
        lines.append("")
    return "\n".join(lines)


def _ov_ceiling(out: dict) -> Optional[str]:
    """Per call in OpenVINO's counters: ours' and NNCF's int8 kernel time and the rest, and the
    most ours OpenVINO / NNCF could reach with ours' non-int8 time at zero (NNCF's total / ours'
    int8 time): where it is under 1.1, the target needs less int8 work, not fewer float islands."""
    ours, nncf = out.get("ours OpenVINO", {}), out.get("NNCF OpenVINO", {})
    if "int8_ms" not in ours or "int8_ms" not in nncf or not ours["int8_ms"]:
        return None
    ceiling = (nncf["int8_ms"] + nncf["other_ms"]) / ours["int8_ms"]
    return (f"- OpenVINO per call (b1, 1 thread, {CEILING_RUNS} profiled calls each, interleaved): ours int8 kernels {ours['int8_ms']:.2f} ms + other "
            f"{ours['other_ms']:.2f} ms; NNCF int8 {nncf['int8_ms']:.2f} ms + other {nncf['other_ms']:.2f} ms; "
            f"ours OpenVINO / NNCF with ours' non-int8 time at zero: at most {ceiling:.2f}x")


def _psnr_text(psnr_db: dict[str, Optional[float]], label: str) -> str:
    if label not in psnr_db:
        return "ref"
    return "inf" if psnr_db[label] is None else f"{psnr_db[label]:.1f}"  # None: strict JSON writes inf so


def _qfid_text(qfid: dict[str, dict], label: str) -> str:
    return f", qFID {qfid[label]['qfid']:.4f}" if label in qfid else ""


def _top(share: dict) -> str:
    return ", ".join(f"{op} {fraction:.0%}" for op, fraction in share["top"][:4])


def figure(report: dict) -> Figure:
    """Speed-up vs fp32 ONNX Runtime per deployment, one panel per generator."""
    import matplotlib.pyplot as plt

    results = report["results"]
    fig, axes = plt.subplots(1, len(results), figsize=(4.5 * len(results), 4), squeeze=False)
    for ax, result in zip(axes[0], results):
        b, t = 1, max(r["threads"] for r in result["latency"])
        base = _median(result, "fp32 ORT", b, t)
        labels = [label for label in DEPLOYMENTS
                  if label != "fp32 ORT (repeat)" and _median(result, label, b, t) is not None]
        values = [base / _median(result, label, b, t) for label in labels]
        colors = ["#1f77b4" if "ours" in label else "#999999" for label in labels]
        ax.barh(labels, values, color=colors)
        ax.axvline(1.0, color="black", linewidth=0.8)
        ax.set_title(f"{result['model']} (b{b}, {t} threads)", fontsize=9)
        ax.set_xlabel("speed-up vs fp32 ONNX Runtime")
        ax.tick_params(labelsize=8)
    fig.tight_layout()
    return fig


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", help="cyclegan-256 and/or suite names (default: all)")
    parser.add_argument("--side", type=int, default=256, help="CycleGAN-9 input side (default 256)")
    parser.add_argument("--grid", nargs="+", default=["1x1", "1x2", "8x1", "8x2"],
                        help="BATCHxTHREADS latency settings (default 1x1 1x2 8x1 8x2: batch 1 and 8, 1 and 2 threads)")
    parser.add_argument("--runs", type=int, default=5, help="timed interleaved rounds (default 5)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--calib", type=int, default=8, help="CycleGAN calibration images (default 8)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--cache", type=Path, default=CACHE, help="finished runs (default benchmarks/.cache/deploy_cpu)")
    parser.add_argument("--ours-method", default="vanilla-ptq", help="our method (default vanilla-ptq, as in the README's runs; the library's default is gptq)")
    parser.add_argument("--ours-weight-bits", type=int, default=8,
                        help="our weight bits (7: exact on x86 CPUs without VNNI, see gan_brevitas.cpu_features)")
    parser.add_argument("--name", default="deploy_cpu", help="results file name (default deploy_cpu)")
    parser.add_argument("--fresh", action="store_true", help="measure every run again (the cache is ignored, then updated)")
    args = parser.parse_args(argv)
    args.grid = [tuple(int(v) for v in item.split("x")) for item in args.grid]
    args.argv = sys.argv[1:] if argv is None else argv
    return args


def main(argv: Optional[list[str]] = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    for name in ("gan_brevitas", "nncf"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(2)
    start = time.time()
    load_before = os.getloadavg()[0]
    cases = [c for c in suite_cases() if not args.models or c.name in args.models]
    if not args.models or "cyclegan-256" in args.models:  # last: the longest
        cases.append(cyclegan_case(args.side, args.calib, 4))
    for case in cases:
        case.ours_method, case.ours_weight_bits = args.ours_method, args.ours_weight_bits
    cache, context = RunCache(args.cache, CACHE_FORMAT), run_context(cases)
    results = []
    for case in cases:
        outcomes = sweep_together(case_runs(case, args.grid, args.runs, args.warmup),
                                  lambda pending, keys, case=case: measure_case(case, pending, args), cache, context,
                                  group=lambda run: run.model, progress=False, fresh=args.fresh)
        result = result_of([o.row for o in outcomes])
        result["targets"] = [targets(result, b, t) for b, t in args.grid]
        results.append(result)
        log.info("%s done (%.0f s so far)", case.name, time.time() - start)
        write(args, results, start, load_before)  # after every generator (its runs are cached as well)
    print(markdown(write(args, results, start, load_before)))


def write(args: argparse.Namespace, results: list[dict], start: float, load_before: float) -> dict:
    report = {
        "command": "python -m benchmarks.deploy_cpu " + " ".join(args.argv),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.processor() or ''}".strip(", "),
        "cpu_model": _cpu_model(), "cpu_features": cpu_features(), "int8_pairs_saturate": int8_pairs_saturate(),
        "load_before": round(load_before, 1), "load_after": round(os.getloadavg()[0], 1),
        "wall_s": time.time() - start, "versions": _versions(), "results": results,
    }
    write_report(Report.at(args.out, args.name, report, markdown(report), plot=lambda: figure(report)))
    return report


def _cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return ""
    return next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), "")


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    return {p: md.version(p) for p in ("onnxruntime", "openvino", "nncf", "brevitas", "torch")}


if __name__ == "__main__":
    main()
