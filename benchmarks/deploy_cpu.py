"""CPU deployment side by side: fp32, ONNX Runtime's quantize_static, NNCF and ours, on ONNX
Runtime and OpenVINO, for CycleGAN-9 at 256 px and every generator of the real-generator suite.

    python benchmarks/deploy_cpu.py                        # writes benchmarks/results/deploy_cpu.*
    python benchmarks/deploy_cpu.py --models cyclegan-256 --runs 3

Per generator, one run: every deployment is built (exports, ``quantize_static``, ``nncf.quantize``
on the same fp32 ONNX and the same calibration inputs), then timed in interleaved rounds
(each round runs every deployment once, for each batch size and thread count), medians
reported with n. The noise floor is the relative difference between two copies of the fp32
ONNX Runtime session timed in the same rounds. Quality: PSNR of each deployment's output vs
the fp32 output on test inputs not used to calibrate. Time outside int8 kernels: ONNX Runtime's
profiler (per-op time; int8 kernels are the QLinear* / *Integer ops) and OpenVINO's performance
counters (per-layer time; int8 when the layer's implementation runs u8/i8), both at batch 1 with
2 threads.

CycleGAN-9 has random weights (no 256 px CycleGAN checkpoint is available offline): its PSNR is
a like-for-like comparison between tools, not an image-quality figure. The suite is read from
``benchmarks.suite`` when it is importable and its cache is filled (GAN_BREVITAS_SUITE_CACHE).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import platform
import subprocess
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

from gan_brevitas import recipes
from gan_brevitas.atomic_files import atomic_write
from gan_brevitas.deploy.bench import time_interleaved
from gan_brevitas.deploy.runner import open_runner
from gan_brevitas.export.openvino import profile_time_share as ov_profile
from gan_brevitas.export.ort import profile_time_share as ort_profile

log = logging.getLogger("benchmarks.deploy_cpu")
RESULTS = Path(__file__).resolve().parent / "results"
DEPLOYMENTS = ("fp32 ORT", "fp32 ORT (repeat)", "fp32 OpenVINO", "quantize_static ORT", "quantize_static OpenVINO",
               "NNCF OpenVINO", "ours ORT", "ours OpenVINO")


@dataclass
class Case:
    """One generator: float model, calibration and test inputs, output range for PSNR."""

    name: str
    model: torch.nn.Module
    calib: torch.Tensor
    test: torch.Tensor
    output_range: tuple[float, float] = (-1.0, 1.0)
    note: str = ""
    files: dict[str, Path] = field(default_factory=dict)


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
    return Case(f"cyclegan-9-{side}", model, stack[:n_calib], stack[n_calib:], note="random weights")


def suite_cases() -> list[Case]:
    try:
        from benchmarks.suite import load_suite, suite_available
    except ImportError as err:
        log.warning("benchmarks.suite is not importable (%s): suite generators skipped", err)
        return []
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

    start = time.perf_counter()
    static = work / f"{case.name}.static.onnx"
    input_name = open_runner(fp32, "onnxruntime").input_name
    quantize_static(str(fp32), str(static), _reader(case.calib, input_name), quant_format=QuantFormat.QDQ,
                    per_channel=True)
    walls["quantize_static"] = time.perf_counter() - start
    case.files.update({"quantize_static ORT": static, "quantize_static OpenVINO": static})

    start = time.perf_counter()
    dataset = nncf.Dataset([case.calib[i : i + 1].numpy() for i in range(case.calib.shape[0])])
    nncf_model = nncf.quantize(ov.Core().read_model(str(fp32)), dataset, subset_size=case.calib.shape[0])
    nncf_path = work / f"{case.name}.nncf.xml"
    ov.save_model(nncf_model, str(nncf_path), compress_to_fp16=False)
    walls["nncf"] = time.perf_counter() - start
    case.files["NNCF OpenVINO"] = nncf_path

    start = time.perf_counter()
    qmodel = recipes.quantize(case.model, inputs=case.calib, num_samples=case.calib.shape[0], progress=False)
    walls["ours quantize"] = time.perf_counter() - start
    start = time.perf_counter()
    ours_ort = work / f"{case.name}.ours.onnx"
    report = recipes.export(qmodel, ours_ort, "onnxruntime", example_input=example)
    walls["ours export onnxruntime"] = time.perf_counter() - start
    log.info("%s", report.format())
    start = time.perf_counter()
    ours_ov = work / f"{case.name}.ours-ov.xml"
    report = recipes.export(qmodel, ours_ov, "openvino", inputs=case.calib, num_samples=case.calib.shape[0],
                            example_input=example)
    walls["ours export openvino"] = time.perf_counter() - start
    log.info("%s", report.format())
    case.files.update({"ours ORT": ours_ort, "ours OpenVINO": ours_ov})
    return walls


def _engine(label: str) -> str:
    return "onnxruntime" if "ORT" in label else "openvino"


def psnr(a: np.ndarray, b: np.ndarray, value_range: tuple[float, float]) -> float:
    low, high = value_range
    a, b = np.clip(a, low, high), np.clip(b, low, high)
    mse = float(np.mean((a - b) ** 2))
    return math.inf if mse == 0 else 10 * math.log10((high - low) ** 2 / mse)


def quality(case: Case) -> dict[str, float]:
    outputs = {}
    for label in DEPLOYMENTS:
        # a static batch-1 shape: OpenVINO cannot run some dynamic-batch graphs (srvgg's input
        # Resize failed with "only supports resize on spatial dimensions")
        runner = open_runner(case.files[label], _engine(label), threads=2, shape=(1, *case.test.shape[1:]))
        outputs[label] = np.concatenate([runner(case.test[i : i + 1]) for i in range(case.test.shape[0])])
    reference = outputs["fp32 ORT"]
    return {label: psnr(out, reference, case.output_range) for label, out in outputs.items() if "fp32" not in label}


def latency(case: Case, grid: list[tuple[int, int]], runs: int, warmup: int) -> list[dict]:
    rows = []
    for batch, n_threads in grid:
        x = case.test[:1].repeat(batch, *[1] * (case.test.dim() - 1)).numpy()
        runners = [open_runner(case.files[label], _engine(label), n_threads, shape=x.shape) for label in DEPLOYMENTS]
        calls: list[Callable[[], Any]] = [lambda r=r: r.run(x) for r in runners]
        times = time_interleaved(calls, runs, warmup)
        for label, t in zip(DEPLOYMENTS, times):
            rows.append({"deployment": label, "batch": batch, "threads": n_threads, "n": len(t),
                         "median_ms": float(np.median(t)), "p25_ms": float(np.percentile(t, 25)),
                         "p75_ms": float(np.percentile(t, 75))})
    return rows


def run_case(case: Case, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        walls = build(case, Path(tmp))
        result: dict[str, Any] = {"model": case.name, "note": case.note, "build_s": walls,
                                  "n_calib": int(case.calib.shape[0]), "n_test": int(case.test.shape[0]),
                                  "input_shape": list(case.test.shape[1:])}
        result["psnr_db"] = quality(case)
        result["latency"] = latency(case, args.grid, args.runs, args.warmup)
        x = case.test[:1].numpy()
        result["outside_int8"] = {
            label: dataclasses.asdict(profile(case.files[label], x, threads=2))
            for label, profile in (("ours ORT", ort_profile), ("quantize_static ORT", ort_profile),
                                   ("ours OpenVINO", ov_profile), ("NNCF OpenVINO", ov_profile))
        }
    return result


def _median(result: dict, label: str, batch: int, threads: int) -> float:
    return next(r["median_ms"] for r in result["latency"]
                if r["deployment"] == label and r["batch"] == batch and r["threads"] == threads)


def targets(result: dict, batch: int, threads: int) -> dict[str, Any]:
    m = {label: _median(result, label, batch, threads) for label in DEPLOYMENTS}
    q = result["psnr_db"]
    noise = abs(m["fp32 ORT"] - m["fp32 ORT (repeat)"]) / m["fp32 ORT"]
    ov_ratio = m["NNCF OpenVINO"] / m["ours OpenVINO"]
    static_ratio = m["quantize_static ORT"] / m["ours ORT"]
    fp32_ratio = m["fp32 ORT"] / m["ours ORT"]
    outside = result["outside_int8"]
    return {
        "batch": batch, "threads": threads, "noise_floor": noise,
        "ours_ov_vs_nncf": ov_ratio, "ours_ov_psnr_minus_nncf": q["ours OpenVINO"] - q["NNCF OpenVINO"],
        "ours_ov_vs_nncf_met": ov_ratio >= 1.1 and q["ours OpenVINO"] >= q["NNCF OpenVINO"],
        "ours_ort_vs_static": static_ratio, "ours_ort_vs_static_met": static_ratio >= 1.3,
        "ours_ort_vs_fp32": fp32_ratio, "ours_ort_vs_fp32_met": fp32_ratio >= 1.8,
        "outside_int8_ort": outside["ours ORT"]["outside_int8"],
        "outside_int8_ov": outside["ours OpenVINO"]["outside_int8"],
        "outside_int8_met": max(outside["ours ORT"]["outside_int8"], outside["ours OpenVINO"]["outside_int8"]) <= 0.15,
    }


def markdown(report: dict) -> str:
    lines = [
        "# CPU deployment: ours vs fp32, ONNX Runtime quantize_static and NNCF, on ONNX Runtime and OpenVINO",
        "",
        f"`{report['command']}`; {report['machine']}; int8 features: {', '.join(report['cpu_features'])}; "
        f"load average {report['load_before']} before, {report['load_after']} after (shared machine); "
        f"wall {report['wall_s']:.0f} s. Speed-up = fp32 ONNX Runtime median / deployment median "
        "(same interleaved rounds); PSNR vs the fp32 output on test inputs not used to calibrate; "
        "OpenVINO float parts pinned to fp32.",
        "",
    ]
    for result in report["results"]:
        batch_threads = sorted({(r["batch"], r["threads"]) for r in result["latency"]})
        header = "| deployment | PSNR dB | " + " | ".join(f"b{b} t{t}" for b, t in batch_threads) + " |"
        lines += [f"## {result['model']} ({result['note']}, input {result['input_shape']}, "
                  f"{result['n_calib']} calibration / {result['n_test']} test inputs)", "", header,
                  "|" + "---|" * (2 + len(batch_threads))]
        for label in DEPLOYMENTS:
            cells = []
            for b, t in batch_threads:
                base = _median(result, "fp32 ORT", b, t)
                own = _median(result, label, b, t)
                n = next(r["n"] for r in result["latency"] if r["deployment"] == label and r["batch"] == b)
                cells.append(f"{own:.1f} ms, {base / own:.2f}x (n={n})")
            psnr_text = f"{result['psnr_db'][label]:.1f}" if label in result["psnr_db"] else "ref"
            lines.append(f"| {label} | {psnr_text} | " + " | ".join(cells) + " |")
        lines += ["", "Targets:", ""]
        for t in result["targets"]:
            lines.append(
                f"- b{t['batch']} t{t['threads']} (noise floor {t['noise_floor']:.1%}): ours OpenVINO / NNCF "
                f"{t['ours_ov_vs_nncf']:.2f}x, PSNR {t['ours_ov_psnr_minus_nncf']:+.1f} dB "
                f"({'met' if t['ours_ov_vs_nncf_met'] else 'missed'}); ours ORT / quantize_static "
                f"{t['ours_ort_vs_static']:.2f}x ({'met' if t['ours_ort_vs_static_met'] else 'missed'}); "
                f"ours ORT / fp32 {t['ours_ort_vs_fp32']:.2f}x ({'met' if t['ours_ort_vs_fp32_met'] else 'missed'})"
            )
        out = result["outside_int8"]
        lines.append(
            f"- time outside int8 kernels (b1, 2 threads): ours ORT {out['ours ORT']['outside_int8']:.0%} "
            f"(top: {_top(out['ours ORT'])}), quantize_static ORT "
            f"{out['quantize_static ORT']['outside_int8']:.0%}; ours OpenVINO {out['ours OpenVINO']['outside_int8']:.0%} "
            f"(top: {_top(out['ours OpenVINO'])}), NNCF {out['NNCF OpenVINO']['outside_int8']:.0%} "
            f"({'met' if result['targets'][0]['outside_int8_met'] else 'missed'}: target <= 15%)"
        )
        lines.append(f"- build wall times (s): {', '.join(f'{k} {v:.0f}' for k, v in result['build_s'].items())}")
        lines.append("")
    return "\n".join(lines)


def _top(share: dict) -> str:
    return ", ".join(f"{op} {fraction:.0%}" for op, fraction in share["top"][:4])


def plot(report: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = report["results"]
    fig, axes = plt.subplots(1, len(results), figsize=(4.5 * len(results), 4), squeeze=False)
    for ax, result in zip(axes[0], results):
        b, t = 1, max(r["threads"] for r in result["latency"])
        base = _median(result, "fp32 ORT", b, t)
        labels = [label for label in DEPLOYMENTS if label != "fp32 ORT (repeat)"]
        values = [base / _median(result, label, b, t) for label in labels]
        colors = ["#1f77b4" if "ours" in label else "#999999" for label in labels]
        ax.barh(labels, values, color=colors)
        ax.axvline(1.0, color="black", linewidth=0.8)
        ax.set_title(f"{result['model']} (b{b}, {t} threads)", fontsize=9)
        ax.set_xlabel("speed-up vs fp32 ONNX Runtime")
        ax.tick_params(labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", help="cyclegan-256 and/or suite names (default: all)")
    parser.add_argument("--side", type=int, default=256, help="CycleGAN-9 input side (default 256)")
    parser.add_argument("--grid", nargs="+", default=["1x1", "1x2", "8x2"],
                        help="BATCHxTHREADS latency settings (default 1x1 1x2 8x2)")
    parser.add_argument("--runs", type=int, default=5, help="timed interleaved rounds (default 5)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--calib", type=int, default=8, help="CycleGAN calibration images (default 8)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    args.grid = [tuple(int(v) for v in item.split("x")) for item in args.grid]
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
    results = []
    for case in cases:
        log.info("%s: building deployments", case.name)
        result = run_case(case, args)
        result["targets"] = [targets(result, b, t) for b, t in args.grid]
        results.append(result)
        log.info("%s done (%.0f s so far)", case.name, time.time() - start)
        write(args, results, start, load_before)  # after every generator: a stopped run keeps what it measured
    print(markdown(write(args, results, start, load_before)))


def write(args: argparse.Namespace, results: list[dict], start: float, load_before: float) -> dict:
    report = {
        "command": "python benchmarks/deploy_cpu.py " + " ".join(os.sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.processor() or ''}".strip(", "),
        "cpu_model": _cpu_model(), "cpu_features": cpu_features(),
        "load_before": round(load_before, 1), "load_after": round(os.getloadavg()[0], 1),
        "wall_s": time.time() - start, "versions": _versions(), "results": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write(args.out / "deploy_cpu.json", lambda p: Path(p).write_text(json.dumps(report, indent=2, default=str)))
    atomic_write(args.out / "deploy_cpu.md", lambda p: Path(p).write_text(markdown(report)))
    atomic_write(args.out / "deploy_cpu.png", lambda p: plot(report, p))
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
