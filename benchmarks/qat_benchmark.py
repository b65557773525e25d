"""Vanilla PTQ vs MA-QAT vs LSQ-QAT (paper Table 4) on the demo generators, CPU-sized.

    python benchmarks/qat_benchmark.py                      # all three demo models, W8A8 and W4A8
    python benchmarks/qat_benchmark.py --models sagan --epochs 2 --num-train 128   # quick look

For every model and weight width it quantizes the generator three ways, measures qFID and PSNR
against the full-precision outputs on held-out inputs that no method trained or calibrated on,
and times one training step of the quantized generator against the full-precision one on the
same batch (the cost of QAT). Writes ``qat_benchmark.json``, ``.md`` and ``.png`` (qFID / PSNR
bars and per-epoch PSNR curves) to ``--out``.

The demo generators (`gan_brevitas.demo.zoo`) are used when their checkpoints are installed;
otherwise small randomly initialised generators stand in and every output says so. qFID uses
whatever extractor `resolve_extractor` finds (offline: the demo CNN, NOT comparable with
Inception FIDs). The schedule is CPU-sized (a few epochs over a few hundred pairs instead of
the paper's 100-200 epochs over 10,000) with the paper's learning rates and batch 8 for every
model; everything is recorded in the JSON.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gan_brevitas import QuantConfig, recipes
from gan_brevitas.harness import Report, ResultRow, machine_description, write_report
from gan_brevitas.metrics import fid, psnr, resolve_extractor
from gan_brevitas.qat.distill import generator_image
from gan_brevitas.quant.convert import fold_for_quantization

log = logging.getLogger("qat_benchmark")

#: Stand-ins when the demo checkpoints are absent (same classes, random weights).
RANDOM_SPECS: dict[str, dict[str, Any]] = {
    "stylegan": dict(size=32, channels=32, code_dim=128, n_mlp=2, noise_mode="const"),
    "sagan": dict(image_size=32, z_dim=128, conv_dim=16),
    "cyclegan": dict(ngf=16, n_blocks=2, image_size=32),
}
HELDOUT_SEED = 777
#: Paper-size architectures (random weights) for the step-time cost only: (name, kwargs, batch).
#: CycleGAN at 128 px (the paper: 256) and StyleGAN at 32 px keep one CPU step within seconds.
REFERENCE_COST: tuple[tuple[str, dict[str, Any], int], ...] = (
    ("sagan", dict(), 8),
    ("cyclegan", dict(image_size=128), 2),
    ("stylegan", dict(size=32, noise_mode="const"), 2),
)


@dataclass
class Problem:
    """A generator to quantize, where it came from, and its inputs."""

    name: str
    source: str
    model: nn.Module
    discriminator: Optional[nn.Module]
    sampler: Callable[[], Callable[[int], Tensor]]  # a fresh, identically seeded sampler per call
    heldout: Tensor


def _latent_sampler(dim: int, seed: int) -> Callable[[], Callable[[int], Tensor]]:
    def make() -> Callable[[int], Tensor]:
        rng = torch.Generator().manual_seed(seed)
        return lambda b: torch.randn(b, dim, generator=rng)

    return make


def load_problem(name: str, eval_n: int, checkpoint_dir: Optional[str]) -> Problem:
    """The demo generator ``name`` with its discriminator, or a random stand-in (logged)."""
    from gan_brevitas.demo import zoo

    where = {} if checkpoint_dir is None else {"checkpoint_dir": Path(checkpoint_dir)}
    try:
        model = zoo.load_demo_generator(name, **where)
        source = "demo zoo (trained)" if checkpoint_dir is None else f"demo recipe, trained here ({checkpoint_dir})"
        try:
            disc = zoo.load_demo_discriminator(name, **where)
        except Exception as err:  # noqa: BLE001 - the generator alone is enough: a fresh critic
            log.warning("demo %s discriminator unavailable (%s): QAT trains a fresh one", name, err)
            disc, source = None, source + ", fresh discriminator"
    except Exception as err:  # noqa: BLE001 - any missing piece of the zoo: fall back, say so
        log.warning("demo %s generator unavailable (%s): using a RANDOMLY INITIALISED stand-in", name, err)
        torch.manual_seed(0)
        model, disc = recipes.build_generator(name, **RANDOM_SPECS[name]).eval(), None
        source = "random init (no demo checkpoint)"
    if model.input_kind == "image":
        if source.startswith("random"):
            shape = (model.in_channels, model.image_size, model.image_size)

            def image_sampler() -> Callable[[int], Tensor]:
                rng = torch.Generator().manual_seed(0)
                return lambda b: torch.rand(b, *shape, generator=rng) * 2 - 1

            heldout = torch.rand(eval_n, *shape, generator=torch.Generator().manual_seed(HELDOUT_SEED)) * 2 - 1
            return Problem(name, source, model, disc, image_sampler, heldout)
        return Problem(name, source, model, disc, lambda: zoo.demo_sampler(name, seed=0),
                       zoo.demo_inputs(name, eval_n, seed=HELDOUT_SEED))
    heldout = torch.randn(eval_n, model.latent_dim, generator=torch.Generator().manual_seed(HELDOUT_SEED))
    return Problem(name, source, model, disc, _latent_sampler(model.latent_dim, 0), heldout)


@torch.no_grad()
def outputs(model: nn.Module, inputs: Tensor, batch: int = 64) -> Tensor:
    model.eval()
    return torch.cat([generator_image(model(b)).float() for b in inputs.split(batch)])


def measure(qmodel: nn.Module, problem: Problem, reference: Tensor, extractor) -> tuple[float, float]:
    """(qFID, PSNR) on the held-out inputs; images are clamped to [-1, 1] for qFID (a random
    stand-in StyleGAN has no output nonlinearity), PSNR compares them as they are."""
    images = outputs(qmodel, problem.heldout)
    value = fid(images.clamp(-1, 1), reference.clamp(-1, 1), extractor, name="qfid", cuda=False).value
    return value, psnr(images, reference)


def step_seconds(model: nn.Module, inputs: Tensor, targets: Tensor, repeats: int, warmup: int = 2) -> float:
    """Median seconds of one generator training step (forward, MSE, backward, Adam)."""
    model.train()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-9)
    times = []
    for i in range(repeats + warmup):
        began = time.perf_counter()
        loss = F.mse_loss(generator_image(model(inputs)), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if i >= warmup:
            times.append(time.perf_counter() - began)
    model.eval()
    return statistics.median(times)


def reference_cost(repeats: int) -> dict[str, Any]:
    """Step time, quantized (LSQ, W4A8) over full precision, at the paper's layer widths."""
    out = {}
    for name, kwargs, batch in REFERENCE_COST:
        torch.manual_seed(0)
        model = recipes.build_generator(name, **kwargs).eval()
        if model.input_kind == "image":
            inputs = torch.rand(batch, model.in_channels, model.image_size, model.image_size) * 2 - 1
        else:
            inputs = torch.randn(batch, model.latent_dim)
        float_model = fold_for_quantization(model)
        with torch.no_grad():
            targets = generator_image(float_model(inputs))
        qmodel = recipes.quantize(model, "vanilla-ptq", config=QuantConfig.paper(weight_bits=4, weight_scaling="learned"),
                                  inputs=inputs, num_samples=batch, progress=False)
        float_ms = 1e3 * step_seconds(float_model.requires_grad_(True), inputs, targets, repeats)
        quant_ms = 1e3 * step_seconds(qmodel, inputs, targets, repeats)
        out[name] = {"kwargs": kwargs, "batch_size": batch, "float_step_ms": float_ms,
                     "quantized_step_ms": quant_ms, "ratio": quant_ms / float_ms}
        log.info("reference-size %s: %.0f ms vs %.0f ms (%.2fx)", name, quant_ms, float_ms, quant_ms / float_ms)
    return out


def _row(problem: Problem, method: str, label: str, bits: int, quality: tuple[float, float], seconds: float,
         history: list[dict[str, Any]]) -> ResultRow:
    qfid, value_psnr = quality
    return ResultRow(problem.name, method, label, {"qfid": qfid, "psnr": value_psnr}, len(problem.heldout), seconds,
                     {"weight_bits": bits, "history": history})


def run_model(problem: Problem, args: argparse.Namespace, extractor) -> tuple[list[ResultRow], dict[str, Any]]:
    float_model = fold_for_quantization(problem.model)
    reference = outputs(float_model, problem.heldout)
    work = Path(args.work_dir) / problem.name
    rows: list[ResultRow] = []
    rates = {k: v for k, v in (("lr_weights", args.lr_weights), ("lr_quant", args.lr_quant)) if v is not None}
    common = dict(
        epochs=args.epochs, num_train=args.num_train, batch_size=args.batch_size, num_samples=args.num_samples,
        loss=args.loss, mse_weight=args.mse_weight, **rates,
        eval_samples=args.curve_n, eval_inputs=problem.heldout[: args.curve_n], data_dir=str(work / "distill"),
        resume=True, progress=args.progress, discriminator=problem.discriminator,
    )
    lsq_model = None
    for bits in args.bits:
        stats = QuantConfig.paper(weight_bits=bits)
        learned = QuantConfig.paper(weight_bits=bits, weight_scaling="learned")
        began = time.perf_counter()
        ptq = recipes.quantize(problem.model, "vanilla-ptq", config=stats, inputs=problem.sampler(),
                               num_samples=args.num_samples, progress=args.progress)
        rows.append(_row(problem, "vanilla-ptq", "vanilla PTQ", bits, measure(ptq, problem, reference, extractor),
                         time.perf_counter() - began, []))
        for method, config in (("ma-qat", stats), ("lsq-qat", learned)):
            qmodel = recipes.quantize(
                problem.model, method, config=config, inputs=problem.sampler(),
                out_dir=str(work / f"{method}-w{bits}"),
                **common)
            checkpoint = torch.load(work / f"{method}-w{bits}" / "checkpoint.pt", weights_only=True)
            # Training time from the log, so a run finished earlier (resumed: nothing to do) keeps it.
            seconds = sum(h["seconds"] for h in checkpoint["history"])
            rows.append(_row(problem, method, method.upper(), bits, measure(qmodel, problem, reference, extractor),
                             seconds, checkpoint["history"]))
            if method == "lsq-qat" and bits == args.bits[0]:
                lsq_model = qmodel
    # The cost: one training step of the quantized generator vs the full-precision one.
    batch = problem.sampler()(args.batch_size)
    with torch.no_grad():
        targets = generator_image(float_model(batch))
    student = copy.deepcopy(float_model).requires_grad_(True)
    cost = {
        "batch_size": args.batch_size,
        "float_step_ms": 1e3 * step_seconds(student, batch, targets, args.repeats),
        "quantized_step_ms": 1e3 * step_seconds(lsq_model, batch, targets, args.repeats),
    }
    cost["ratio"] = cost["quantized_step_ms"] / cost["float_step_ms"]
    options = json.loads((work / f"lsq-qat-w{args.bits[0]}" / "run.json").read_text())["options"]
    cost["lsq_options"] = {k: options[k] for k in ("preset", "schedule", "epochs", "ma_epochs", "batch_size",
                                                      "lr_weights", "lr_quant", "loss", "adv_weight", "num_train")}
    return rows, cost


def report(out: Path, results: dict[str, Any]) -> Report:
    """qat_benchmark.{json,md,png} in ``out``."""
    lines = [
        "# QAT benchmark: vanilla PTQ vs MA-QAT vs LSQ-QAT (CPU-sized)",
        "",
        f"Machine: {results['machine']}; {results['threads']} thread(s). "
        f"Extractor: {results['extractor']}. qFID / PSNR on {results['settings']['eval_n']} held-out inputs.",
        "",
        "Settings: " + ", ".join(f"{k}={v}" for k, v in results["settings"].items() if k != "note"),
        "",
        *([f"Note: {results['settings']['note']}", ""] if results["settings"].get("note") else []),
        "| model | source | method | bits | qFID | PSNR (dB) | time (s): calibration / training epochs |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in results["rows"]:
        lines.append(
            f"| {row['model']} | {results['sources'][row['model']]} | {row['label']} | W{row['weight_bits']}A8 | "
            f"{row['qfid']:.4g} | {row['psnr']:.2f} | {row['seconds']:.0f} |"
        )
    lines += ["", "Training-step cost (forward + MSE + backward + Adam, same batch):", "",
              "| model | batch | full precision (ms) | quantized LSQ (ms) | ratio |", "|---|---|---|---|---|"]
    for name, cost in results["cost"].items():
        lines.append(f"| {name} | {cost['batch_size']} | {cost['float_step_ms']:.1f} | "
                     f"{cost['quantized_step_ms']:.1f} | {cost['ratio']:.2f}x |")
    if results.get("reference_cost"):
        lines += ["", "The same at the paper's layer widths (random weights; CycleGAN 128 px, StyleGAN 32 px):", "",
                  "| model | batch | full precision (ms) | quantized LSQ (ms) | ratio |", "|---|---|---|---|---|"]
        for name, cost in results["reference_cost"].items():
            lines.append(f"| {name} {cost['kwargs'] or ''} | {cost['batch_size']} | {cost['float_step_ms']:.0f} | "
                         f"{cost['quantized_step_ms']:.0f} | {cost['ratio']:.2f}x |")
    lines += ["", "LSQ-QAT options per model (MA-QAT: the same with schedule 'ma'):", ""]
    for name, cost in results["cost"].items():
        lines.append(f"- {name}: " + ", ".join(f"{k}={v}" for k, v in cost["lsq_options"].items()))
    lines += ["", "## Checks of the issue", ""]
    for check in results["checks"]:
        lines.append(f"- {'PASS' if check['ok'] else 'FAIL'}: {check['what']} ({check['detail']})")
    return Report.at(out, "qat_benchmark", results, lines, lambda: figure(results))


def figure(results: dict[str, Any]):
    import matplotlib.pyplot as plt

    models = list(results["sources"])
    methods = ["vanilla PTQ", "MA-QAT", "LSQ-QAT"]
    bits = sorted({r["weight_bits"] for r in results["rows"]}, reverse=True)
    fig, axes = plt.subplots(3, len(models), figsize=(4.5 * len(models), 10), squeeze=False)
    for col, name in enumerate(models):
        rows = [r for r in results["rows"] if r["model"] == name]
        for row_index, key in enumerate(("qfid", "psnr")):
            ax = axes[row_index][col]
            width = 0.8 / len(methods)
            for m, method in enumerate(methods):
                values = [next((r[key] for r in rows if r["label"] == method and r["weight_bits"] == b), float("nan")) for b in bits]
                ax.bar([i + m * width for i in range(len(bits))], values, width, label=method)
            ax.set_xticks([i + width for i in range(len(bits))], [f"W{b}A8" for b in bits])
            ax.set_title(f"{name}: {'qFID (lower is better)' if key == 'qfid' else 'PSNR dB (higher is better)'}")
            if col == 0 and row_index == 0:
                ax.legend()
        ax = axes[2][col]
        for r in rows:
            curve = [(h["epoch"], h["psnr"]) for h in r["history"] if h.get("psnr") is not None]
            if curve:
                ax.plot(*zip(*curve), marker="o", label=f"{r['label']} W{r['weight_bits']}")
        ax.set_xlabel("epoch (0 = quantile PTQ init)")
        ax.set_title(f"{name}: per-epoch PSNR dB ({results['settings']['curve_n']} held-out)")
        ax.legend(fontsize=7)
    fig.suptitle(f"QAT on CPU-sized schedules ({results['extractor']})", fontsize=9)
    fig.tight_layout()
    return fig


def checks(rows: list[dict[str, Any]], cost: dict[str, Any], reference: dict[str, Any]) -> list[dict[str, Any]]:
    """The expectations (LSQ-QAT < MA-QAT < vanilla PTQ at W8A8, W4A8 within 1.5x of W8A8, a
    quantized training step at most 2x a float one), evaluated (reported, never tuned for)."""
    out = []
    get = {(r["model"], r["label"], r["weight_bits"]): r for r in rows}
    for name in sorted({r["model"] for r in rows}):
        ptq, ma, lsq = (get.get((name, m, 8)) for m in ("vanilla PTQ", "MA-QAT", "LSQ-QAT"))
        if ptq and ma and lsq:
            out.append({"what": f"{name} W8A8: LSQ-QAT < MA-QAT < vanilla PTQ in qFID",
                        "ok": lsq["qfid"] < ma["qfid"] < ptq["qfid"],
                        "detail": f"{lsq['qfid']:.4g} / {ma['qfid']:.4g} / {ptq['qfid']:.4g}"})
        lsq4 = get.get((name, "LSQ-QAT", 4))
        if lsq and lsq4:
            ratio = lsq4["qfid"] / max(lsq["qfid"], 1e-12)
            out.append({"what": f"{name}: LSQ-QAT W4A8 qFID within 1.5x of W8A8", "ok": ratio <= 1.5,
                        "detail": f"{lsq4['qfid']:.4g} vs {lsq['qfid']:.4g}, {ratio:.2f}x"})
        if name in cost:
            out.append({"what": f"{name}: quantized training step at most 2x the full-precision one",
                        "ok": cost[name]["ratio"] <= 2.0, "detail": f"{cost[name]['ratio']:.2f}x"})
    for name, item in reference.items():
        out.append({"what": f"{name} at the paper's widths: quantized training step at most 2x",
                    "ok": item["ratio"] <= 2.0, "detail": f"{item['ratio']:.2f}x"})
    return out


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["stylegan", "sagan", "cyclegan"])
    parser.add_argument("--bits", nargs="+", type=int, default=[8, 4])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--num-train", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--num-samples", type=int, default=500, help="quantile-PTQ samples (paper: 500)")
    parser.add_argument("--loss", default="mse", help="mse | perceptual (needs VGG16 weights) | perceptual-disc")
    parser.add_argument("--mse-weight", type=float, default=1.0)
    parser.add_argument("--lr-weights", type=float, default=None, help="default: the paper's per model (1e-5)")
    parser.add_argument("--lr-quant", type=float, default=None, help="default: the paper's (1e-6; SAGAN 1e-7)")
    parser.add_argument("--checkpoint-dir", default=None, help="demo checkpoints (default: the packaged ones)")
    parser.add_argument("--eval-n", type=int, default=500, help="held-out inputs of the final qFID / PSNR")
    parser.add_argument("--curve-n", type=int, default=200, help="held-out inputs of the per-epoch PSNR / qFID")
    parser.add_argument("--repeats", type=int, default=20, help="timed training steps")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reference-cost", action="store_true", help="also time steps at the paper's widths")
    parser.add_argument("--work-dir", default="/tmp/gan_brevitas_qat_bench", help="run dirs (resumable)")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    parser.add_argument("--progress", action="store_true")
    parser.add_argument("--note", default="", help="a sentence for the report (e.g. where the checkpoints came from)")
    parser.add_argument("--render", help="only re-write the markdown / PNG from this results JSON (with --note)")
    return parser.parse_args()


def render(args: argparse.Namespace) -> None:
    """Re-write the markdown / PNG of an earlier results JSON (``--render``)."""
    results = json.loads(Path(args.render).read_text())
    for row in results["rows"]:  # files written before the rows were harness rows name the method only
        row.setdefault("label", row["method"])
    if args.note:
        results["settings"]["note"] = args.note
    write_report(report(Path(args.out), results))


def measure_all(args: argparse.Namespace) -> dict[str, Any]:
    """Every model's rows and training-step cost, the checks, and what they ran on."""
    logging.getLogger("gan_brevitas.metrics.fid").setLevel(logging.ERROR)
    torch.set_num_threads(args.threads)
    extractor = resolve_extractor()
    rows, costs, sources = [], {}, {}
    began = time.perf_counter()
    for name in args.models:
        problem = load_problem(name, args.eval_n, args.checkpoint_dir)
        sources[name] = problem.source
        model_rows, costs[name] = run_model(problem, args, extractor)
        rows += [r.flat() for r in model_rows]
        for r in model_rows:
            log.info("%s %s W%d: qFID %.4g PSNR %.2f dB (%.0f s)", r.model, r.label, r.fields["weight_bits"],
                     r.metrics["qfid"], r.metrics["psnr"], r.seconds)
    reference = reference_cost(max(3, args.repeats // 5)) if args.reference_cost else {}
    settings = {k: v for k, v in vars(args).items() if k not in ("out", "work_dir", "progress", "models", "render")}
    return {
        "machine": machine_description(),
        "threads": args.threads,
        "extractor": extractor.label,
        "extractor_sha256": extractor.weights_sha256,
        "settings": settings,
        "sources": sources,
        "rows": rows,
        "cost": costs,
        "reference_cost": reference,
        "checks": checks(rows, costs, reference),
        "total_seconds": time.perf_counter() - began,
    }


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.render:
        render(args)
        return
    write_report(report(Path(args.out), measure_all(args)))
    print((Path(args.out) / "qat_benchmark.md").read_text())


if __name__ == "__main__":
    main()
