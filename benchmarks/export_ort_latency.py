"""fp32 vs int8 ONNX Runtime on the CPU for the three generators: latency, file sizes, parity,
int8 kernels, and the quality cost of the TensorRT (symmetric) conversion.

    python benchmarks/export_ort_latency.py                 # all cases, writes benchmarks/results/
    python benchmarks/export_ort_latency.py --cases sagan-64 --runs 5

Generators are randomly initialised at their reference widths (timing does not depend on the
weights) and quantized with the paper's scheme (vanilla PTQ: 8-bit per-tensor weights,
asymmetric uint8 activations); a 4-bit copy gives the INT4 file size. Latency is the median of
interleaved int8 / fp32 runs (`gan_brevitas.deploy.bench`); the machine's load average is
recorded because our CPUs are shared. Writes export_ort_latency.{json,md,png} through the
harness writer. Each finished case is cached in ``benchmarks/.cache/export_ort_latency`` (keyed by
the case, the settings and the package's files): an interrupted run resumes there; ``--fresh``
measures every case again.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from gan_brevitas import QuantConfig, recipes
from gan_brevitas.deploy.bench import bench
from gan_brevitas.deploy.parity import parity
from gan_brevitas.export.ort import OrtGenerator, int8_kernel_report
from gan_brevitas.harness import (
    Report,
    ResultRow,
    Run,
    RunCache,
    machine_description,
    package_fingerprint,
    sweep,
    write_report,
)
from gan_brevitas.quant.convert import fold_for_quantization

log = logging.getLogger("benchmarks.export_ort_latency")
CACHE = Path(__file__).resolve().parent / ".cache" / "export_ort_latency"
CACHE_FORMAT = "benchmarks/export_ort_latency/1"


@dataclass(frozen=True)
class Case:
    """One generator at one size."""

    label: str
    name: str
    kwargs: dict[str, Any]
    batches: tuple[int, ...] = (1, 8)


CASES = (
    Case("cyclegan-128", "cyclegan", dict(ngf=64, n_blocks=9, image_size=128)),
    Case("cyclegan-256", "cyclegan", dict(ngf=64, n_blocks=9, image_size=256)),
    Case("sagan-64", "sagan", dict(image_size=64, z_dim=128, conv_dim=64)),
    Case("stylegan-128", "stylegan", dict(size=128, code_dim=512, n_mlp=8, noise_mode="const")),
)


def _inputs(model: torch.nn.Module, n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if model.input_kind == "image":
        side = model.image_size
        return torch.rand(n, model.in_channels, side, side, generator=g) * 2 - 1
    return torch.randn(n, model.latent_dim, generator=g)


def _first(output: Any) -> torch.Tensor:
    return output[0] if isinstance(output, (tuple, list)) else output


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(4.0 / torch.mean((a - b) ** 2)))


def _quality(paths: dict[str, Path], reference: torch.Tensor, x: torch.Tensor, batch: int) -> dict[str, Any]:
    """PSNR and qFID against the float generator's images for the paper's int8 model (ONNX
    Runtime export) and its TensorRT conversion (symmetric, re-calibrated; run in ONNX Runtime)."""
    from gan_brevitas.metrics import fid

    result = {}
    # StyleGAN has no output Tanh: like its sample grids, images are clamped to [-1, 1].
    reference = reference.clamp(-1, 1)
    for key, path in paths.items():
        runner = OrtGenerator(path)
        images = torch.cat([torch.from_numpy(runner(x[i : i + batch])) for i in range(0, len(x), batch)])
        images = images.clamp(-1, 1)
        qfid = fid(images, reference, name="qfid")
        result[key] = {"psnr_db": _psnr(images, reference), "qfid": qfid.value, "extractor": qfid.extractor}
    return result


def run_case(case: Case, folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    torch.manual_seed(0)
    model = recipes.build_generator(case.name, **case.kwargs).eval()
    calib = _inputs(model, args.calibration, seed=1)
    started = time.time()
    q8 = recipes.quantize(model, "vanilla-ptq", config=QuantConfig.paper(), inputs=calib,
                          num_samples=args.calibration, progress=False)
    q4 = recipes.quantize(model, "vanilla-ptq", config=QuantConfig.paper(weight_bits=4, per_channel=True),
                          inputs=calib, num_samples=min(4, args.calibration), progress=False)
    log.info("%s: quantized in %.0f s", case.label, time.time() - started)
    files = {
        "fp32": recipes.export(model, folder / f"{case.label}_fp32.onnx", "float"),
        "int8": recipes.export(q8, folder / f"{case.label}_int8.onnx"),
        "int8_convtranspose_float": recipes.export(q8, folder / f"{case.label}_keep.onnx", conv_transpose="keep"),
        "w4_int8_storage": recipes.export(q4, folder / f"{case.label}_w4.onnx"),
        "w4_int4_storage": recipes.export(q4, folder / f"{case.label}_int4.onnx", int4=True),
        "tensorrt": recipes.export(q8, folder / f"{case.label}_trt.onnx", "tensorrt", inputs=calib,
                                   num_samples=args.calibration),
    }
    kernels = int8_kernel_report(files["int8"].path)
    kept = int8_kernel_report(files["int8_convtranspose_float"].path)
    match = parity(q8, files["int8"].path, _inputs(model, 4, seed=2), n=4, batch_size=2)
    latency = bench(files["int8"].path, files["fp32"].path, batch_sizes=case.batches, threads=args.threads,
                    warmup=args.warmup, runs=args.runs)
    latency_keep = bench(files["int8_convtranspose_float"].path, files["fp32"].path, batch_sizes=(1,),
                         threads=args.threads, warmup=args.warmup, runs=args.runs)
    result: dict[str, Any] = {
        "case": case.label,
        "generator": case.name,
        "kwargs": case.kwargs,
        "parameters": sum(p.numel() for p in model.parameters()),
        "file_bytes": {key: report.file_bytes for key, report in files.items()},
        "conversions": {key: list(report.conversions) for key, report in files.items()},
        "int8_kernels": {"quantized": len(kernels.quantized), "int8": len(kernels.int8),
                         "float_fallback": list(kernels.float_fallback), "ops": kernels.optimized_ops},
        "int8_kernels_convtranspose_kept": {"quantized": len(kept.quantized), "int8": len(kept.int8)},
        "parity": {"mae": match.mae, "max_abs": match.max_abs, "output_step": match.output_step, "n": match.n,
                   "floor_mae": match.floor_mae},
        "latency": latency.to_dict(),
        "latency_convtranspose_kept": latency_keep.to_dict(),
    }
    if args.quality and case.label in args.quality_cases:
        x = _inputs(model, args.quality_n, seed=3)
        folded = fold_for_quantization(model)
        with torch.no_grad():
            reference = torch.cat([_first(folded(x[i : i + 8])) for i in range(0, len(x), 8)])
        result["quality_vs_float"] = _quality(
            {"onnxruntime_asymmetric": files["int8"].path, "tensorrt_symmetric": files["tensorrt"].path},
            reference, x, batch=8,
        )
    log.info("%s: %s", case.label, json.dumps(result["latency"]["rows"][0]["speedup"]))
    return result


def _markdown(results: list[dict[str, Any]], env: dict[str, Any]) -> list[str]:
    lines = [
        "# fp32 vs int8 ONNX Runtime on the CPU",
        "",
        f"{env['machine']}; {env['threads']} intra-op threads, onnxruntime {env['onnxruntime']}; "
        f"load average {env['load_before']} before, {env['load_after']} after (shared machine). "
        "Random-init generators at reference widths, quantized with the paper's scheme (vanilla PTQ, "
        "8-bit per-tensor weights, asymmetric uint8 activations). Median of interleaved runs.",
        "",
        "| generator | batch | fp32 ms | int8 ms | speed-up | int8 ms, ConvT float | int8 convs |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        keep = {row["batch"]: row for row in r["latency_convtranspose_kept"]["rows"]}
        kernels = f"{r['int8_kernels']['int8']}/{r['int8_kernels']['quantized']}"
        for row in r["latency"]["rows"]:
            kept = keep.get(row["batch"])
            kept_text = f"{kept['model']['median_ms']:.1f}" if kept else "-"
            lines.append(
                f"| {r['case']} | {row['batch']} | {row['baseline']['median_ms']:.1f} | "
                f"{row['model']['median_ms']:.1f} | {row['speedup']:.2f}x | {kept_text} | {kernels} |"
            )
    lines += ["", "| generator | params | fp32 MB | int8 MB | ratio | w4 as int8 MB | w4 as INT4 MB | ratio | "
              "parity MAE / max, floor (output steps) |", "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in results:
        b = r["file_bytes"]
        p = r["parity"]
        lines.append(
            f"| {r['case']} | {r['parameters'] / 1e6:.2f} M | {b['fp32'] / 1e6:.2f} | {b['int8'] / 1e6:.2f} | "
            f"{b['fp32'] / b['int8']:.2f}x | {b['w4_int8_storage'] / 1e6:.2f} | {b['w4_int4_storage'] / 1e6:.2f} | "
            f"{b['fp32'] / b['w4_int4_storage']:.2f}x | {p['mae'] / p['output_step']:.3f} / "
            f"{p['max_abs'] / p['output_step']:.1f}, {p['floor_mae'] / p['output_step']:.3f} |"
        )
    quality = [r for r in results if "quality_vs_float" in r]
    if quality:
        lines += ["", "Quality cost of the TensorRT conversion (asymmetric uint8 -> symmetric int8, "
                  "re-calibrated), both run in ONNX Runtime, against the float generator:", "",
                  "| generator | PSNR asym dB | PSNR sym dB | qFID asym | qFID sym | extractor |",
                  "|---|---:|---:|---:|---:|---|"]
        for r in quality:
            a, s = r["quality_vs_float"]["onnxruntime_asymmetric"], r["quality_vs_float"]["tensorrt_symmetric"]
            lines.append(f"| {r['case']} | {a['psnr_db']:.2f} | {s['psnr_db']:.2f} | {a['qfid']:.3g} | "
                         f"{s['qfid']:.3g} | {a['extractor']} |")
    lines += ["", "Parity: ONNX Runtime vs the PyTorch fake-quant model on the same inputs, in steps of the "
              "output quantizer; floor: the fake-quant model against itself with inputs moved by 1e-6 "
              "(re-quantization at every layer turns any rounding difference into whole steps, and "
              "InstanceNorm spreads them), so an error at the floor is rounding, not a wrong graph.",
              "",
              "Sizes: the sub-pixel rewrite adds zero taps to k3 s2 ConvTranspose kernels (CycleGAN); the "
              "INT4 file runs in ONNX Runtime but with float convolutions (no int4 CPU kernel).", ""]
    return lines


def _figure(results: list[dict[str, Any]]):
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    labels, fp32, int8 = [], [], []
    for r in results:
        for row in r["latency"]["rows"]:
            labels.append(f"{r['case']}\nbatch {row['batch']}")
            fp32.append(row["baseline"]["median_ms"])
            int8.append(row["model"]["median_ms"])
    xs = range(len(labels))
    left.bar([x - 0.2 for x in xs], fp32, width=0.4, label="fp32")
    left.bar([x + 0.2 for x in xs], int8, width=0.4, label="int8")
    for x, a, b in zip(xs, fp32, int8):
        left.text(x, max(a, b), f"{a / b:.2f}x", ha="center", va="bottom", fontsize=8)
    left.set_xticks(list(xs), labels, fontsize=7, rotation=35, ha="right")
    left.set_yscale("log")
    left.set_ylabel("ONNX Runtime CPU latency, ms (median)")
    left.legend()
    cases = [r["case"] for r in results]
    kinds = [("fp32", "fp32"), ("int8", "int8"), ("w4_int4_storage", "INT4 (w4)")]
    for i, (key, name) in enumerate(kinds):
        right.bar([c + (i - 1) * 0.27 for c in range(len(cases))],
                  [r["file_bytes"][key] / 1e6 for r in results], width=0.27, label=name)
    right.set_xticks(range(len(cases)), cases, fontsize=8)
    right.set_ylabel("ONNX file, MB")
    right.legend()
    fig.tight_layout()
    return fig


def measure_case(run: Run[Case], folder: Path, args: argparse.Namespace) -> ResultRow:
    """One case as the harness's row: the speed-ups per batch as metrics, the whole record as fields."""
    started = time.perf_counter()
    result = run_case(run.spec, folder, args)
    metrics = {f"speedup_b{row['batch']}": row["speedup"] for row in result["latency"]["rows"]}
    return ResultRow(run.model, run.method, run.label, metrics, args.runs, time.perf_counter() - started, result)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="benchmarks/results", help="output folder")
    parser.add_argument("--cases", nargs="*", default=[c.label for c in CASES], help="case labels to run")
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads (default 2)")
    parser.add_argument("--runs", type=int, default=10, help="timed runs per model and batch")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs first")
    parser.add_argument("--calibration", type=int, default=16, help="calibration samples")
    parser.add_argument("--quality", action=argparse.BooleanOptionalAction, default=True,
                        help="measure PSNR / qFID of the TensorRT conversion")
    parser.add_argument("--quality-cases", nargs="*", default=["sagan-64", "stylegan-128", "cyclegan-128"])
    parser.add_argument("--quality-n", type=int, default=64, help="images for PSNR / qFID")
    parser.add_argument("--fresh", action="store_true", help="measure every case again (ignore the cache)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("gan_brevitas").setLevel(logging.WARNING)
    torch.set_num_threads(1)  # our CPUs are shared; ONNX Runtime gets --threads
    import onnxruntime

    env = {
        "machine": machine_description(),
        "threads": args.threads,
        "onnxruntime": onnxruntime.__version__,
        "load_before": [round(v, 2) for v in os.getloadavg()],
        "runs": args.runs,
    }
    settings = {k: v for k, v in vars(args).items() if k not in ("out", "cases", "fresh")}
    runs = [Run(c.name, "vanilla-ptq", c.label, {"kwargs": c.kwargs, "batches": list(c.batches), **settings}, spec=c)
            for c in CASES if c.label in args.cases]
    with tempfile.TemporaryDirectory() as tmp:
        cache = RunCache(Path(tmp) / "cache" if args.fresh else CACHE, CACHE_FORMAT)
        outcomes = sweep(runs, lambda run, key: (measure_case(run, Path(tmp), args), {}), cache,
                         lambda run: {"package": package_fingerprint()}, progress=False)
    results = [o.row.fields for o in outcomes]
    env["load_after"] = [round(v, 2) for v in os.getloadavg()]
    data = {"environment": env, "results": results}
    write_report(Report.at(Path(args.out), "export_ort_latency", data, _markdown(results, env),
                           lambda: _figure(results)))
    log.info("wrote %s", Path(args.out) / "export_ort_latency.{json,md,png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
