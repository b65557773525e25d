"""The paper's findings that apply to PTQ, re-measured on the real-generator suite.

    python -m benchmarks.quality_findings                      # all suite models
    python -m benchmarks.quality_findings --brecq-steps 100    # with PTQ vs STE-BRECQ
    python -m benchmarks.quality_findings --models dcgan_mnist --qat-epochs 4   # PTQ vs LSQ-QAT

Pairs of recipes that differ in ONE thing, each scored by PSNR (dB) against the float model on
the suite's held-out inputs (4 photos, or 1024 latents), the difference paired per image, and for
the noise-to-image generator by qFID as well (`benchmarks.suite.qfid`):

* F1, quantile vs min-max ranges: the paper's quantiles (weights 0.0001/0.9999, activations
  0.001/0.999) against min-max, at W8A8 per-tensor and at W4A8 per-channel;
* per-channel vs per-tensor weights, min-max ranges, at W8A8 and W4A8;
* PTQ vs STE-BRECQ (only with ``--brecq-steps``; a CPU budget, not the paper's 20k steps);
* PTQ vs LSQ-QAT distillation (only with ``--qat-epochs``): trained on fresh latents for a
  noise-to-image model, on random crops of the 8 calibration photos for the others (never on
  the test photos).

A pair is called a tie when the mean paired difference is under the noise floor: the larger of
0.1 dB and two standard errors of the paired differences (n = test images or latents).
Each distinct recipe on each model is a harness `Run`, measured by `sweep` and kept in a
`RunCache` (``--cache``): a stopped run resumes, a repeated one measures nothing new
(``--fresh`` measures again). Writes ``quality_findings.{json,md,png}`` to ``--out``.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

from benchmarks.quality_suite import _load, _per_image_psnr, _processor, _qfid_fields, _quantize_ours, _run_torch
from benchmarks.suite import SuiteEntry, load_suite, training_inputs
from benchmarks.suite.qfid import QFID_FAMILIES, SOURCE_SHA256 as QFID_SOURCE
from gan_brevitas import QuantConfig, recipes
from gan_brevitas.harness import Report, ResultRow, Run, RunCache, markdown_table, package_fingerprint, sweep, write_report
from gan_brevitas.qat.checkpoint import module_sha256, tensor_sha256

log = logging.getLogger("quality_findings")

TIE_DB = 0.1
CACHE = Path(__file__).resolve().parent / ".cache" / "quality_findings"
CACHE_FORMAT = "benchmarks/quality_findings/1"
MINMAX = dict(weight_range="minmax", act_range="minmax")


@dataclass(frozen=True)
class Variant:
    label: str
    method: str
    config: QuantConfig
    options: tuple[tuple[str, Any], ...] = ()


#: LSQ-QAT settings of the findings run (MSE distillation against the float model, CPU budget):
#: fresh latents for a noise-to-image model; for a photo model, crops of the calibration photos
#: at the suite's mixed-precision QAT settings (``quality_suite.MIXED_QAT``).
QAT_OPTIONS = (("num_train", 2048), ("batch_size", 32), ("loss", "mse"), ("lr_weights", 1e-4), ("lr_quant", 1e-4))
PHOTO_QAT_OPTIONS = (("num_train", 512), ("batch_size", 8), ("loss", "mse"), ("adv_weight", 0.0),
                     ("lr_weights", 2e-4), ("lr_quant", 2e-5))


def pairs(brecq_steps: int, qat_epochs: int = 0, photos: bool = False) -> list[tuple[str, Variant, Variant]]:
    """(finding, A, B): the finding holds on a model when A beats B there."""
    out = [
        ("F1 quantile beats min-max, W8A8 per-tensor",
         Variant("quantile", "vanilla-ptq", QuantConfig.paper()),
         Variant("min-max", "vanilla-ptq", QuantConfig.paper(**MINMAX))),
        ("F1 quantile beats min-max, W4A8 per-channel",
         Variant("quantile", "vanilla-ptq", QuantConfig.paper(weight_bits=4, per_channel=True)),
         Variant("min-max", "vanilla-ptq", QuantConfig.paper(weight_bits=4, per_channel=True, **MINMAX))),
        ("per-channel beats per-tensor, W8A8 min-max",
         Variant("per-channel", "vanilla-ptq", QuantConfig.paper(per_channel=True, **MINMAX)),
         Variant("per-tensor", "vanilla-ptq", QuantConfig.paper(**MINMAX))),
        ("per-channel beats per-tensor, W4A8 min-max",
         Variant("per-channel", "vanilla-ptq", QuantConfig.paper(weight_bits=4, per_channel=True, **MINMAX)),
         Variant("per-tensor", "vanilla-ptq", QuantConfig.paper(weight_bits=4, **MINMAX))),
    ]  # fmt: skip
    for bits in (8, 4) if brecq_steps else ():
        config = QuantConfig.paper(weight_bits=bits, per_channel=True)
        out.append((f"STE-BRECQ beats PTQ, W{bits}A8 per-channel",
                    Variant(f"ste-brecq {brecq_steps} steps", "ste-brecq", config, (("steps", brecq_steps),)),
                    Variant("vanilla PTQ", "vanilla-ptq", config)))  # fmt: skip
    for bits in (8, 4) if qat_epochs else ():
        config = QuantConfig.paper(weight_bits=bits, per_channel=True)
        out.append((f"LSQ-QAT beats PTQ, W{bits}A8 per-channel",
                    Variant(f"lsq-qat {qat_epochs} epochs", "lsq-qat", config,
                            (("epochs", qat_epochs), *(PHOTO_QAT_OPTIONS if photos else QAT_OPTIONS))),
                    Variant("vanilla PTQ", "vanilla-ptq", config)))  # fmt: skip
    return out


def _latent_sampler(entry: SuiteEntry) -> Callable[[int], torch.Tensor]:
    """Fresh standard-normal latents shaped like the entry's, from a fixed seed (not the test seed)."""
    generator = torch.Generator().manual_seed(5)
    return lambda n: torch.randn(n, *entry.calib.shape[1:], generator=generator)


def _qat(entry: SuiteEntry, variant: Variant) -> torch.Tensor:
    inputs = _latent_sampler(entry) if entry.family == "noise-to-image" else training_inputs(entry)
    with tempfile.TemporaryDirectory() as out_dir:
        qmodel = recipes.quantize(entry.model, variant.method, config=variant.config, inputs=inputs,
                                  num_samples=entry.calib.shape[0], progress=False, out_dir=out_dir, eval_samples=0,
                                  **dict(variant.options))
    return _run_torch(qmodel, entry.test)


def _output(entry: SuiteEntry, variant: Variant) -> torch.Tensor:
    """The quantized model's outputs on the entry's test inputs."""
    if variant.method.endswith("qat"):
        return _qat(entry, variant)
    options = dict(variant.options)
    if variant.method.endswith("brecq"):
        n = entry.calib.shape[0]
        options.update(num_samples=n, calibration_samples=n, batch_size=min(4, n), progress=False)
    return _quantize_ours(entry, variant.method, variant.config, **options).output


def _photos(entry: SuiteEntry) -> bool:
    return entry.family != "noise-to-image"


def variant_runs(entry: SuiteEntry, brecq_steps: int, qat_epochs: int) -> list[Run[Variant]]:
    """One run per recipe of the entry's pairs; runs of the same method and config share one
    cache key, so a recipe in two pairs is measured once."""
    variants = dict.fromkeys(v for _, a, b in pairs(brecq_steps, qat_epochs, _photos(entry)) for v in (a, b))
    return [Run(entry.name, v.method, v.label, {"config": v.config.to_dict(), "options": dict(v.options)}, spec=v)
            for v in variants]


def measure_variant(entry: SuiteEntry, run: Run[Variant], reference: Callable[[], torch.Tensor]) -> ResultRow:
    """Per-image PSNR of one recipe against the float model (under torch seed 0: a resumed
    sweep measures what a whole one does); a recipe that fails is a row with its error."""
    start = time.perf_counter()
    low, high = entry.output_range
    fields: dict[str, Any] = {}
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            output = _output(entry, run.spec)
        fields["psnr_per_image"] = _per_image_psnr(output, reference(), high - low)
        if entry.family in QFID_FAMILIES:
            fields.update(_qfid_fields(output, reference()))
    except Exception as error:  # record and keep going: one recipe must not sink the table
        fields["error"] = f"{type(error).__name__}: {error}"[:300]
    mean = float(np.mean(fields["psnr_per_image"])) if "psnr_per_image" in fields else None
    return ResultRow(entry.name, run.method, run.label, {"psnr_db": mean}, int(entry.test.shape[0]),
                     round(time.perf_counter() - start, 1), fields)


def _context(entry: SuiteEntry, threads: int) -> dict[str, Any]:
    """A run's key besides its own recipe: the generator, its inputs, the code, the threads."""
    return {"package": package_fingerprint(), "benchmark": hashlib.sha256(Path(__file__).read_bytes()).hexdigest(),
            "qfid": QFID_SOURCE, "generator": module_sha256(entry.model), "threads": threads,
            "inputs": tensor_sha256([("calib", entry.calib), ("test", entry.test)])}  # fmt: skip


def _pair_row(entry: SuiteEntry, finding: str, labels: tuple[str, str], a: ResultRow, b: ResultRow) -> dict[str, Any]:
    """A finding's verdict on one model from its two recipes' rows (``labels``: how the finding
    names them; one recipe may serve two findings under two names)."""
    if "error" in a.fields or "error" in b.fields:
        return {"model": entry.name, "finding": finding, "error": a.fields.get("error") or b.fields["error"]}
    sa, sb = a.fields["psnr_per_image"], b.fields["psnr_per_image"]
    diffs = np.array(sa) - np.array(sb)
    mean = float(diffs.mean())
    noise = 2 * float(diffs.std(ddof=1)) / np.sqrt(len(diffs)) if len(diffs) > 1 else float("inf")
    verdict = "tie" if abs(mean) < max(TIE_DB, noise) else ("holds" if mean > 0 else "reversed")
    log.info("%s | %s: %s (%+.2f dB)", entry.name, finding, verdict, mean)
    return {**_qfid_verdict(a, b), "model": entry.name, "finding": finding, "a": labels[0], "b": labels[1],
            "a_db": round(float(np.mean(sa)), 2), "b_db": round(float(np.mean(sb)), 2),
            "mean_diff_db": round(mean, 2), "min_diff_db": round(float(diffs.min()), 2),
            "max_diff_db": round(float(diffs.max()), 2), "noise_db": round(noise, 2), "n": len(diffs), "verdict": verdict,
            "seconds": round(a.seconds + b.seconds, 1)}  # fmt: skip


def _qfid_verdict(a: ResultRow, b: ResultRow) -> dict[str, Any]:
    """A's and B's qFID (whole set and halves) and the verdict: "holds" when A's is lower on the
    whole set and on both halves, "reversed" when B's is, else a tie; {} without qFID."""
    if a.fields.get("qfid") is None or b.fields.get("qfid") is None:
        return {}
    pairs_ = [(a.fields["qfid"], b.fields["qfid"]), *zip(a.fields["qfid_halves"], b.fields["qfid_halves"])]
    verdict = ("holds" if all(x < y for x, y in pairs_) else "reversed" if all(x > y for x, y in pairs_) else "tie")
    return {"a_qfid": a.fields["qfid"], "b_qfid": b.fields["qfid"], "a_qfid_halves": a.fields["qfid_halves"],
            "b_qfid_halves": b.fields["qfid_halves"], "qfid_verdict": verdict}


def measure(entry: SuiteEntry, brecq_steps: int, qat_epochs: int = 0, *, cache: RunCache,
            threads: int = 1, fresh: bool = False) -> list[dict[str, Any]]:
    """Every pair's verdict on ``entry``; recipes already in ``cache`` are not measured again."""
    reference: list[torch.Tensor] = []

    def float_output() -> torch.Tensor:  # made once, and only when a recipe is measured
        if not reference:
            reference.append(_run_torch(entry.model, entry.test))
        return reference[0]

    outcomes = sweep(variant_runs(entry, brecq_steps, qat_epochs),
                     lambda run, key: (measure_variant(entry, run, float_output), {}),
                     cache, lambda run: _context(entry, threads), progress=False, fresh=fresh)  # fmt: skip
    rows = {outcome.run.spec: outcome.row for outcome in outcomes}
    return [_pair_row(entry, finding, (a.label, b.label), rows[a], rows[b]) for finding, a, b in pairs(brecq_steps, qat_epochs, _photos(entry))]


def markdown(report: dict[str, Any]) -> list[str]:
    lines = ["## The paper's PTQ findings on the real-generator suite (PSNR vs float, held-out inputs)", "",
             f"`{report['command']}` on {report['processor']}, {report['threads']} threads, load average "
             f"{report['load_start']} at start; {report['wall_s']} s. Pairs differ in one setting; "
             f"the difference is paired per image; noise floor = max({TIE_DB} dB, 2 standard errors of the paired "
             "differences); a mean inside it is a tie.", ""]  # fmt: skip
    cells = []
    for r in report["rows"]:
        if "error" in r:
            cells.append([r["model"], r["finding"], f"error: {r['error']}", "", "", ""])
            continue
        cells.append([r["model"], r["finding"], f"{r['a']}: {r['a_db']:.2f}", f"{r['b']}: {r['b_db']:.2f}",
                      f"{r['mean_diff_db']:+.2f} ({r['min_diff_db']:+.2f}..{r['max_diff_db']:+.2f}), "
                      f"±{r['noise_db']:.2f}, {r['n']}", r["verdict"]])  # fmt: skip
    lines += markdown_table(["model", "finding", "A (dB)", "B (dB)", "A - B mean (min..max), noise, n", "verdict"], cells)
    scored = [r for r in report["rows"] if "qfid_verdict" in r]
    if scored:
        lines += ["", "qFID of the noise-to-image generator (offline demo CNN features; lower is better; a finding "
                  "holds when A is lower on all test latents and on each half):", ""]
        lines += markdown_table(["model", "finding", "A qFID (halves)", "B qFID (halves)", "verdict"], [
            [r["model"], r["finding"], f"{r['a_qfid']:.4f} ({r['a_qfid_halves'][0]:.4f}, {r['a_qfid_halves'][1]:.4f})",
             f"{r['b_qfid']:.4f} ({r['b_qfid_halves'][0]:.4f}, {r['b_qfid_halves'][1]:.4f})", r["qfid_verdict"]]
            for r in scored])  # fmt: skip
    return lines


def findings_figure(report: dict[str, Any]):
    import matplotlib.pyplot as plt

    rows = [r for r in report["rows"] if "error" not in r]
    findings = list(dict.fromkeys(r["finding"] for r in rows))
    models = list(dict.fromkeys(r["model"] for r in rows))
    fig, ax = plt.subplots(figsize=(9, 4.5))
    width = 0.8 / max(1, len(models))
    for j, model in enumerate(models):
        values = [next((r["mean_diff_db"] for r in rows if r["model"] == model and r["finding"] == f), 0.0) for f in findings]
        ax.barh([i + j * width for i in range(len(findings))], values, width, label=model)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks([i + 0.4 - width / 2 for i in range(len(findings))], findings, fontsize=7)
    ax.set_xlabel("A - B, PSNR vs float (dB), mean over held-out images")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="", help="comma-separated suite names (default: all)")
    parser.add_argument("--brecq-steps", type=int, default=0, help="add PTQ vs STE-BRECQ pairs (0 = skip)")
    parser.add_argument("--qat-epochs", type=int, default=0,
                        help="add PTQ vs LSQ-QAT pairs (0 = skip)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--cache", type=Path, default=CACHE, help="finished recipes (default benchmarks/.cache/quality_findings)")
    parser.add_argument("--fresh", action="store_true", help="measure every recipe again (the cache is ignored, then updated)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    log.setLevel(logging.INFO)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    report: dict[str, Any] = {"command": " ".join(["python -m benchmarks.quality_findings", *(sys.argv[1:] if argv is None else argv)]),
                              "processor": _processor(), "threads": args.threads, "load_start": _load(), "rows": []}  # fmt: skip
    for entry in load_suite([m for m in args.models.split(",") if m] or None):
        report["rows"] += measure(entry, args.brecq_steps, args.qat_epochs, cache=RunCache(args.cache, CACHE_FORMAT),
                                  threads=args.threads, fresh=args.fresh)
    report["wall_s"] = round(time.perf_counter() - start, 1)
    report["load_end"] = _load()
    md = markdown(report)
    write_report(Report.at(args.out, "quality_findings", report, md, lambda: findings_figure(report)))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
