"""ModelOpt INT8 vs our Brevitas PTQ on the demo generators: qFID, PSNR, ONNX Runtime latency.

    python benchmarks/modelopt_compare.py                     # all three demo models
    python benchmarks/modelopt_compare.py --models sagan --eval-n 200 --runs 10   # quick look

Methods, all 8-bit weights and activations, calibrated on the same inputs (a fresh, identically
seeded sampler each), evaluated on held-out inputs none of them saw:

* ``modelopt-int8``: ModelOpt's INT8 (symmetric, per-channel weights, max calibration);
* ``modelopt-int8-percentile``: the same with histogram calibration (99.9th percentile of |x|);
* ``modelopt-int8+outputs``: ``modelopt-int8`` with the conv / linear outputs quantized too
  (``quantize_outputs=True``), which ONNX Runtime needs to fuse int8 kernels;
* ``brevitas-sym``: our vanilla PTQ with symmetric activations (QuantConfig.paper(act_scheme=
  "symmetric")), the paper's quantile ranges, per-tensor weights: the same bits as ModelOpt;
* ``brevitas-asym``: our vanilla PTQ as the paper does it (asymmetric quantile activations).

qFID and PSNR are against the folded float generator's outputs on the held-out inputs
(``recipes.evaluate``; FID against real images too when the zoo provides them). Latency: each
method's ONNX export for ONNX Runtime (ModelOpt's Q/DQ graph through our plugin; Brevitas's
QCDQ graph through ``recipes.export``) against the float export, interleaved runs, one thread.
The ModelOpt rows also give ONNX Runtime's parity with ModelOpt's fake-quant model.

Writes ``modelopt_compare.json``, ``.md`` and ``.png`` to ``--out``; each finished run is cached
in ``benchmarks/.cache/modelopt_compare`` (an interrupted run resumes; ``--fresh`` measures again). The demo generators
(`gan_brevitas.demo.zoo`) are used when their checkpoints are installed; otherwise small
randomly initialised generators stand in and every output says so.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch import Tensor, nn

from gan_brevitas import QuantConfig, recipes
from gan_brevitas.deploy.bench import bench
from gan_brevitas.export.ort import int8_kernel_report
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
from gan_brevitas.qat.checkpoint import module_sha256
from gan_brevitas.backends import modelopt as mo

log = logging.getLogger("modelopt_compare")

#: method -> (recipes method, QuantConfig or None, method options)
METHODS: dict[str, tuple[str, Optional[QuantConfig], dict[str, Any]]] = {
    "modelopt-int8": ("modelopt-int8", None, {}),
    "modelopt-int8-percentile": ("modelopt-int8-percentile", None, {}),
    "modelopt-int8+outputs": ("modelopt-int8", None, {"quantize_outputs": True}),
    "brevitas-sym": ("vanilla-ptq", QuantConfig.paper(act_scheme="symmetric"), {}),
    "brevitas-asym": ("vanilla-ptq", QuantConfig.paper(), {}),
}
#: Stand-ins when the demo checkpoints are absent (same classes, random weights).
RANDOM_SPECS: dict[str, dict[str, Any]] = {
    "stylegan": dict(size=32, channels=32, code_dim=128, n_mlp=2, noise_mode="const"),
    "sagan": dict(image_size=32, z_dim=128, conv_dim=16),
    "cyclegan": dict(ngf=16, n_blocks=2, image_size=32),
}
HELDOUT_SEED = 777
CACHE = Path(__file__).resolve().parent / ".cache" / "modelopt_compare"
CACHE_FORMAT = "benchmarks/modelopt_compare/1"


@dataclass
class Problem:
    """A generator, where it came from, a sampler factory (same seed each call), held-out inputs."""

    name: str
    source: str
    model: nn.Module
    sampler: Callable[[], Callable[[int], Tensor]]
    heldout: Tensor
    real: Optional[Tensor]


class BoundedStandIn(nn.Module):
    """A randomly initialised generator with tanh on its output.

    Why: StyleGAN has no output nonlinearity, and with random weights its images leave
    [-1, 1], which the image metrics reject. Only the random stand-in gets this; trained demo
    generators are measured as they are.
    """

    def __init__(self, generator: nn.Module) -> None:
        super().__init__()
        self.generator = generator
        for attr in ("input_kind", "latent_dim", "image_size", "noise_mode"):
            setattr(self, attr, getattr(generator, attr))

    def forward(self, z: Tensor) -> Tensor:
        return torch.tanh(self.generator(z))


def _latent_sampler(dim: int) -> Callable[[], Callable[[int], Tensor]]:
    """A factory of identically seeded latent samplers (each method calibrates on the same)."""

    def sampler() -> Callable[[int], Tensor]:
        rng = torch.Generator().manual_seed(0)
        return lambda b: torch.randn(b, dim, generator=rng)

    return sampler


def load_problem(name: str, eval_n: int, checkpoint_dir: Optional[Path]) -> Problem:
    """The demo generator ``name`` (from ``checkpoint_dir`` if given), or a random stand-in (logged)."""
    try:
        from gan_brevitas.demo import zoo

        found = {} if checkpoint_dir is None else {"checkpoint_dir": checkpoint_dir}
        model = zoo.load_demo_generator(name, **found)
        source = "demo zoo (trained)" if checkpoint_dir is None else (
            f"demo zoo recipe, trained with `python -m tools.train_demo --model {name} --out "
            f"{checkpoint_dir}`"
        )
        real = zoo.real_images(name, eval_n, seed=1)
        if model.input_kind == "image":
            return Problem(name, source, model, lambda: zoo.demo_sampler(name, seed=0),
                           zoo.demo_inputs(name, eval_n, seed=HELDOUT_SEED), real)
        heldout = zoo.latents(model.latent_dim, eval_n, seed=HELDOUT_SEED)
        return Problem(name, source, model, _latent_sampler(model.latent_dim), heldout, real)
    except Exception as err:  # noqa: BLE001 - any missing piece of the zoo: fall back, say so
        log.warning("demo %s generator unavailable (%s): using a RANDOMLY INITIALISED stand-in", name, err)
    torch.manual_seed(0)
    model = recipes.build_generator(name, **RANDOM_SPECS[name]).eval()
    source = "random init (no demo checkpoint)"
    if name == "stylegan":
        model, source = BoundedStandIn(model), source + ", output through tanh"
    if model.input_kind == "image":
        shape = (model.in_channels, model.image_size, model.image_size)

        def image_sampler() -> Callable[[int], Tensor]:
            rng = torch.Generator().manual_seed(0)
            return lambda b: torch.rand(b, *shape, generator=rng) * 2 - 1

        heldout = torch.rand(eval_n, *shape, generator=torch.Generator().manual_seed(HELDOUT_SEED)) * 2 - 1
        return Problem(name, source, model, image_sampler, heldout, None)
    heldout = torch.randn(eval_n, model.latent_dim, generator=torch.Generator().manual_seed(HELDOUT_SEED))
    return Problem(name, source, model, _latent_sampler(model.latent_dim), heldout, None)


def quantize(problem: Problem, method: str, num_samples: int) -> tuple[nn.Module, float]:
    recipe, config, options = METHODS[method]
    began = time.perf_counter()
    qmodel = recipes.quantize(problem.model, recipe, config=config, inputs=problem.sampler(),
                              num_samples=num_samples, progress=False, **options)
    return qmodel, time.perf_counter() - began


def export(qmodel: nn.Module, method: str, path: Path, problem: Problem) -> Any:
    example = problem.heldout[:1]
    if method.startswith("modelopt"):
        return mo.export_onnx(qmodel, path, "onnxruntime", example_input=example)
    return recipes.export(qmodel, path, "onnxruntime", example_input=example)


def measure(problem: Problem, method: str, args: argparse.Namespace, work: Path, float_path: Path) -> ResultRow:
    """One method on one generator: quality, then its ONNX Runtime export (size, int8 kernels,
    latency against the float export; ModelOpt: parity with its fake-quant model)."""
    began = time.perf_counter()
    qmodel, seconds = quantize(problem, method, args.num_samples)
    evaluation = recipes.evaluate(qmodel, problem.model, problem.heldout, n=len(problem.heldout),
                                  real=problem.real, progress=False, extractor="demo-cnn")
    metrics: dict[str, Any] = {"qfid": evaluation.qfid, "psnr": evaluation.psnr, "fid": evaluation.fid,
                               "int8_ms_b1": None, "int8_ms_b8": None, "fp32_ms_b1": None, "fp32_ms_b8": None,
                               "speedup_b8": None, "onnx_mb": None}
    fields: dict[str, Any] = {"quantize_s": seconds, "int8_kernels": None, "parity": None, "export_error": None}
    row = ResultRow(problem.name, METHODS[method][0], method, metrics, len(problem.heldout), 0.0, fields)
    path = work / f"{problem.name}_{method}.onnx"
    try:
        report = export(qmodel, method, path, problem)
    except Exception as err:  # noqa: BLE001 - a failed export is a result of the comparison
        log.warning("%s %s: export failed: %s", problem.name, method, err)
        fields["export_error"] = f"{type(err).__name__}: {err}"
        row.seconds = time.perf_counter() - began
        return row
    metrics["onnx_mb"] = report.file_bytes / 1e6
    fields["int8_kernels"] = int8_kernel_report(path).format().splitlines()[0]
    latency = bench(path, against=float_path, batch_sizes=(1, 8), threads=1, runs=args.runs)
    by_batch = {r.batch: r for r in latency.rows}
    metrics["int8_ms_b1"], metrics["fp32_ms_b1"] = by_batch[1].model.median_ms, by_batch[1].baseline.median_ms
    metrics["int8_ms_b8"], metrics["fp32_ms_b8"] = by_batch[8].model.median_ms, by_batch[8].baseline.median_ms
    metrics["speedup_b8"] = by_batch[8].speedup
    if method.startswith("modelopt"):
        fields["parity"] = mo.ort_parity(qmodel, path, problem.heldout, n=16).format()
    row.seconds = time.perf_counter() - began
    log.info("%s", row.flat())
    return row


def run_model(problem: Problem, args: argparse.Namespace, work: Path) -> list[ResultRow]:
    """Every method on one generator, each finished one cached (an interrupted run resumes)."""
    float_path = work / f"{problem.name}_fp32.onnx"
    recipes.export(problem.model, float_path, "float", example_input=problem.heldout[:1])
    runs = [Run(problem.name, METHODS[m][0], m, {"num_samples": args.num_samples, "eval_n": args.eval_n,
                                                  "runs": args.runs}) for m in args.methods]
    context = {"source": problem.source, "generator": module_sha256(problem.model), "package": package_fingerprint()}
    cache = RunCache(Path(work) / "cache" if args.fresh else CACHE, CACHE_FORMAT)
    outcomes = sweep(runs, lambda run, key: (measure(problem, run.label, args, work, float_path), {}), cache,
                     lambda run: context, progress=False)
    return [o.row for o in outcomes]


def markdown(results: dict[str, Any]) -> list[str]:
    lines = [
        "# ModelOpt INT8 vs Brevitas PTQ (W8A8) on the demo generators",
        "",
        f"Generated by `python benchmarks/modelopt_compare.py` on {results['machine']}, "
        f"{results['date']}. Calibration: {results['num_samples']} inputs; evaluation: "
        f"{results['eval_n']} held-out inputs; qFID extractor: {results['extractor']}. "
        "Latency: ONNX Runtime CPU, 1 thread, median of interleaved runs against the fp32 export "
        "(shared machine: compare ratios, not absolute times).",
        "",
    ]
    for name, source in results["sources"].items():
        lines.append(f"- {name}: {source}")
    if any(source.startswith("random init") for source in results["sources"].values()):
        lines += [
            "",
            "**Randomly initialised stand-ins** (the demo checkpoints were not installed): these rows "
            "show that every path runs and how the graphs map to ONNX Runtime kernels; their qFID / "
            "PSNR say nothing about trained generators. Rerun `python benchmarks/modelopt_compare.py` "
            "once `gan_brevitas/demo/checkpoints/` exists.",
        ]
    lines += [
        "",
        "| model | method | qFID | PSNR dB | FID | int8 ms b1 | fp32 ms b1 | int8 ms b8 | fp32 ms b8 | "
        "speed-up b8 | ONNX MB | int8 kernels |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def cell(value: Any, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    for row in results["rows"]:
        kernels = row["int8_kernels"] or (f"export failed: {row['export_error']}" if row["export_error"] else "-")
        lines.append(
            f"| {row['model']} | {row['label']} | {row['qfid']:.4g} | {row['psnr']:.2f} | {cell(row['fid'], '.2f')} | "
            f"{cell(row['int8_ms_b1'], '.2f')} | {cell(row['fp32_ms_b1'], '.2f')} | {cell(row['int8_ms_b8'], '.2f')} | "
            f"{cell(row['fp32_ms_b8'], '.2f')} | {cell(row['speedup_b8'], '.2f')} | {cell(row['onnx_mb'], '.3f')} | "
            f"{kernels} |"
        )
    lines += ["", "ONNX Runtime vs ModelOpt fake-quant (parity of the exported graph):", ""]
    lines += [f"- {row['model']} {row['label']}: {row['parity']}" for row in results["rows"] if row["parity"]]
    return lines


def figure(results: dict[str, Any]):
    import matplotlib.pyplot as plt

    models = list(results["sources"])
    methods = list(dict.fromkeys(r["label"] for r in results["rows"]))
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    width = 0.8 / len(methods)
    for panel, (key, label) in enumerate((("qfid", "qFID (lower is better)"), ("psnr", "PSNR dB (higher is better)"),
                                          ("speedup_b8", "ORT speed-up vs fp32, batch 8"))):
        ax = axes[panel]
        for i, method in enumerate(methods):
            values = []
            for model in models:
                row = next((r for r in results["rows"] if r["model"] == model and r["label"] == method), None)
                values.append(float("nan") if row is None or row[key] is None else row[key])
            ax.bar([m + i * width for m in range(len(models))], values, width, label=method)
        ax.set_xticks([m + width * (len(methods) - 1) / 2 for m in range(len(models))])
        ax.set_xticklabels(models)
        ax.set_title(label)
    axes[0].set_yscale("log")  # qFID spans orders of magnitude across generators
    axes[0].legend(fontsize=8)
    random = all(source.startswith("random init") for source in results["sources"].values())
    subject = "randomly initialised stand-ins (no demo checkpoints)" if random else "demo generators"
    fig.suptitle(f"ModelOpt INT8 vs Brevitas PTQ, W8A8, {subject}")
    fig.tight_layout()
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["stylegan", "sagan", "cyclegan"])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--num-samples", type=int, default=256, help="calibration inputs")
    parser.add_argument("--eval-n", type=int, default=500, help="held-out inputs for qFID / PSNR")
    parser.add_argument("--runs", type=int, default=20, help="timed ONNX Runtime runs per batch size")
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--fresh", action="store_true", help="measure every run again (ignore the cache)")
    parser.add_argument("--checkpoint-dir", type=Path, default=None,
                        help="demo checkpoints trained elsewhere (default: the packaged ones)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    logging.getLogger("gan_brevitas").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)

    from gan_brevitas.metrics import resolve_extractor

    rows: list[ResultRow] = []
    sources: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            problem = load_problem(name, args.eval_n, args.checkpoint_dir)
            sources[name] = problem.source
            rows += run_model(problem, args, Path(tmp))
    results = {
        "machine": machine_description(),
        "date": time.strftime("%Y-%m-%d"),
        "num_samples": args.num_samples,
        "eval_n": args.eval_n,
        "runs": args.runs,
        "extractor": resolve_extractor(None).label,
        "sources": sources,
        "rows": [row.flat() for row in rows],
    }
    out = Path(args.out)
    write_report(Report.at(out, "modelopt_compare", results, markdown(results), lambda: figure(results)))
    log.info("wrote %s", out / "modelopt_compare.md")


if __name__ == "__main__":
    main()
