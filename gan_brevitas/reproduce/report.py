"""RESULTS.md: our numbers next to the paper's for every row, Figure 1, sample grids, findings.

Everything is computed from the cached row records (and the recipes' [paper] sections), so
the report can be rewritten at any time without running a row (``--report-only``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gan_brevitas.atomic_files import atomic_write_text
from gan_brevitas.errors import ConfigError
from gan_brevitas.harness import CACHED, NOT_RUN, RAN, Outcome, RunCache
from gan_brevitas.harness.figures import quantile_figure, save_grid
from gan_brevitas.harness.writer import save_figure
from gan_brevitas.metrics.extractors import ExtractorSpec
from gan_brevitas.qat.losses import resolve_vgg16_weights
from gan_brevitas.reproduce.findings import (
    LITTLE_GAIN,
    NOT_MEASURED,
    NOT_REPRODUCED,
    PARTLY,
    REPRODUCED,
    TIE_MARGIN,
    Finding,
    Point,
    decide,
)
from gan_brevitas.reproduce.runner import CACHE_FORMAT, RunSettings
from gan_brevitas.reproduce.spec import (
    BRECQ_METHODS,
    FULL_PRECISION,
    QAT_METHODS,
    Recipe,
    Row,
)

TITLES = {
    "table3": "Table 3: post-training quantization of StyleGAN",
    "table4": "Table 4: quantization-aware training (and Appendix B's distillation losses)",
    "figure1": "Figure 1: vanilla PTQ, qFID against the activation quantile (W8A8 per-tensor)",
}
#: How the rules' verdicts read for the paper's own numbers.
PAPER_VERDICTS = {
    REPRODUCED: "holds",
    PARTLY: "partly holds",
    NOT_REPRODUCED: "does not hold",
    NOT_MEASURED: "no numbers",
}
PAPER = ('"Quantization of Generative Adversarial Networks for Efficient Inference: a Methodological Study" '
         "(Andreev, Fritzler, Vetrov, 2021)")


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h" if seconds >= 360 else f"{seconds:.0f} s"


def _num(value: float | None, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}g}"


def _budget(row: Row) -> str:
    """The compute a row was given, in a few words (what the profile scaled)."""
    options = row.options
    if row.method == FULL_PRECISION:
        return "–"
    if row.method == "vanilla-ptq":
        return f"{options.num_samples} calibration samples"
    if row.method in BRECQ_METHODS:
        return f"{options.steps} steps/block, {options.num_samples} samples, batch {options.batch_size}"
    return (f"{options.epochs} epochs ({options.ma_epochs} MA) x {options.num_train} pairs, "
            f"batch {options.batch_size}, loss {options.loss}")


def _short(row: Row) -> str:
    if row.method == FULL_PRECISION:
        return "full precision"
    text = f"{row.method} W{row.quant.weight_bits} {'per-channel' if row.quant.per_channel else 'per-tensor'}"
    if row.method in QAT_METHODS and row.options.loss == "mse":
        text += " MSE"
    return text


def point(row: Row, qfid: float | None) -> Point | None:
    """The findings' view of a row (None for full precision or a missing number)."""
    if row.method == FULL_PRECISION or qfid is None:
        return None
    loss = row.options.loss if row.method in QAT_METHODS else None
    return Point(row.model, row.method, row.quant.weight_bits, row.quant.per_channel,
                 row.quant.effective_act_quantiles, loss, float(qfid))


def our_findings(outcomes: Sequence[Outcome]) -> list[Finding]:
    points = [point(o.spec, o.row.metrics["qfid"]) for o in outcomes if o.row is not None]
    return decide([p for p in points if p is not None])


def paper_findings(recipes: Sequence[Recipe]) -> list[Finding]:
    """The same rules on the paper's numbers (rows as the paper ran them: the "paper" profile)."""
    points = [point(row, row.paper.qfid) for recipe in recipes for row in recipe.rows("paper")]
    return decide([p for p in points if p is not None])


def _vgg_available() -> bool:
    try:
        resolve_vgg16_weights()
    except ConfigError:
        return False
    return True


def _findings_section(ours: list[Finding], paper: list[Finding]) -> list[str]:
    lines = [
        "## Findings",
        "",
        (f"Rules (qFID, lower is better): A *beats* B when qFID(A) < {1 - TIE_MARGIN:.2f} x qFID(B) (closer is a "
        f"tie); per-channel *brings little* when its qFID is within {LITTLE_GAIN:.0%} of per-tensor, either way. Where several rows "
        "match, the best counts. A finding is *reproduced* when every measured check holds, *partly* when some "
        "do, *not reproduced* when none do, *not measured* when no check had its numbers. The last column runs "
        "the same rules on the paper's own numbers."),
        "",
        "| | claim | our numbers | the paper's numbers |",
        "|---|---|---|---|",
    ]
    for mine, theirs in zip(ours, paper):
        lines.append(f"| {mine.id} | {mine.claim} | **{mine.verdict}** ({_held(mine)}) | "
                     f"{PAPER_VERDICTS[theirs.verdict]} ({_held(theirs)}) |")
    lines.append("")
    for mine, theirs in zip(ours, paper):
        lines += [(f"**{mine.id}: {mine.claim}** Ours: {mine.verdict}. The paper's numbers: "
                  f"{PAPER_VERDICTS[theirs.verdict]}."), ""]
        unmeasured = 0
        for check, paper_check in zip(mine.checks, theirs.checks):
            if check.held is None and paper_check.held is None:
                unmeasured += 1
                continue
            mark = {True: "held", False: "did not hold", None: "not measured"}[check.held]
            lines.append(f"- {check.what}: {mark} ({check.detail}; paper: {paper_check.detail})")
        if unmeasured:
            lines.append(f"- {unmeasured} more check(s) had no numbers, neither ours nor the paper's, in the rows run.")
        if mine.id == "F1":
            lines.append("- The paper prints Figure 1 as a plot only (StyleGAN); its text says quantiles matter "
                         "for activations, and that 1.0/0.0 is the best pair for SAGAN's vanilla PTQ.")
        if mine.id == "F6" and mine.measured == 0:
            lines.append("- Not measured: " + (
                "the paper's perceptual loss runs on VGG16 ImageNet features, and this machine has no VGG16 "
                "weights (gan-brevitas never downloads them)." if not _vgg_available() else
                "the perceptual / MSE rows of Appendix B were not among the rows run."))
        if mine.note:
            lines.append(f"- {mine.note}")
        lines.append("")
    return lines


def _held(finding: Finding) -> str:
    if finding.measured == 0:
        return f"none of {len(finding.checks)} checks had its numbers"
    held = sum(bool(c.held) for c in finding.checks)
    return f"{held} of {finding.measured} measured checks held, {len(finding.checks) - finding.measured} not measured"


def _row_table(outcomes: Sequence[Outcome]) -> list[str]:
    lines = [
        "| model | paper row | n | FID | paper FID | qFID | paper qFID | PSNR (dB) | compute | time (s) | recipe |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        row, metrics = o.spec, {} if o.row is None else o.row.metrics
        time_text = _num(o.row.seconds, 3) if o.row else f"not run: {o.reason}"
        psnr = None if row.method == FULL_PRECISION else metrics.get("psnr")
        lines.append(
            f"| {row.model} | {row.label} | {o.row.n if o.row else '–'} | {_num(metrics.get('fid'))} | {_num(row.paper.fid)} | "
            f"{_num(metrics.get('qfid'))} | {_num(row.paper.qfid)} | {'–' if psnr is None else f'{psnr:.2f}'} | "
            f"{_budget(row)} | {time_text} | `{row.id}` |"
        )
    lines += ["", noise_floor_line(outcomes)]
    notes = sorted({f"{o.spec.id}: {o.spec.paper.note}" for o in outcomes if o.spec.paper.note})
    if notes:
        lines += ["", "Notes from the paper:", ""] + [f"- {note}" for note in notes]
    return lines


def noise_floor_line(outcomes: Sequence[Outcome]) -> str:
    """The qFID each model's float outputs differ by between two draws of held-out inputs (measured
    by its full-precision row): a qFID difference smaller than this is noise."""
    floors = {}
    for o in outcomes:
        floor = None if o.row is None else o.row.metrics.get("noise_floor_qfid")
        if o.spec.method == FULL_PRECISION and floor is not None:
            floors[o.spec.model] = f"{o.spec.model} {floor:.3f} (n={o.row.n})"
    if not floors:
        return "Noise floor: not measured (no full-precision row of this run measured it)."
    return ("Noise floor (qFID of the float model against itself on another draw of held-out inputs; a qFID "
            f"difference below it is noise): {', '.join(floors[m] for m in sorted(floors))}.")


def _figure1(outcomes: Sequence[Outcome], figures: Path) -> list[str]:
    sweeps: dict[str, list[dict[str, float]]] = {}
    for o in outcomes:
        if o.spec.experiment.table == "figure1" and o.row is not None:
            high = o.spec.quant.effective_act_quantiles[1]
            sweeps.setdefault(o.spec.model, []).append({"high_quantile": high, "qfid": o.row.metrics["qfid"]})
    if not sweeps:
        return ["No Figure 1 rows were measured."]
    for points in sweeps.values():
        points.sort(key=lambda p: p["high_quantile"])
    save_figure(figures / "figure1.png", quantile_figure(sweeps))
    return [f"![Figure 1: qFID against the upper activation quantile]({figures.name}/figure1.png)"]


#: Order of the rows of a sample grid.
GRID_ORDER = (FULL_PRECISION, "vanilla-ptq", "ste-brecq", "ar-brecq", "ma-qat", "lsq-qat")


def _grid_order(outcome: Outcome) -> tuple:
    quant = outcome.spec.quant
    return GRID_ORDER.index(outcome.spec.method), -quant.weight_bits, quant.per_channel


def _grids(outcomes: Sequence[Outcome], cache: RunCache, figures: Path) -> list[str]:
    lines: list[str] = []
    for model in dict.fromkeys(o.spec.model for o in outcomes):
        rows, inputs, seen = [], None, set()
        for o in sorted(outcomes, key=_grid_order):
            if o.spec.model != model or o.row is None or o.spec.experiment.table == "figure1" or o.key in seen:
                continue
            seen.add(o.key)
            samples = cache.samples(o.key)
            if "images" in samples:
                rows.append((_short(o.spec), samples["images"]))
                inputs = samples.get("inputs", inputs)
        if rows:
            width = min(len(images) for _, images in rows)
            rows = [(label, images[:width]) for label, images in rows]
            save_grid(figures / f"{model}_grid.png", rows, title=f"{model}: the same held-out inputs in every column",
                      inputs=None if inputs is None else inputs[:width])
            lines += [f"### {model}", "", f"![{model} samples]({figures.name}/{model}_grid.png)", ""]
    return lines or ["No samples yet."]


def _setup(outcomes: Sequence[Outcome], descriptions: dict[str, str], extractor: ExtractorSpec,
           settings: RunSettings, wall_seconds: float) -> list[str]:
    measured = [o.row for o in outcomes if o.row is not None]
    machines = sorted({row.fields["machine"] for row in measured})
    compute = sum(row.seconds for row in measured)
    ran = sum(o.status == RAN for o in outcomes)
    cached = sum(o.status == CACHED for o in outcomes)
    lines = [
        f"Command: `{settings.command or 'gan-brevitas reproduce'}` (profile **{settings.profile}**).",
        "",
        f"- Feature extractor: **{extractor.label}** (weights sha256 `{extractor.weights_sha256}`).",
        f"- Machine: {'; '.join(machines) or 'no row measured yet'}; device {settings.device}.",
        (f"- Wall time: {_duration(compute)} of row compute in all (summed over the rows as they ran); this "
         f"invocation {_duration(wall_seconds)} ({ran} rows run, {cached} from the cache, "
         f"{len(outcomes) - ran - cached} not run)."),
    ]
    for model, text in descriptions.items():
        lines.append(f"- {model}: {text}.")
    if settings.profile != "paper":
        lines.append(f"- Profile {settings.profile}: each recipe's [{settings.profile}] section scales its steps, "
                     "epochs and sample counts (the 'compute' column); the paper's values are the recipe files "
                     "as written (--profile paper).")
    if not extractor.comparable_with_published:
        lines += ["", (f"**Our FID and qFID are not on the paper's scale.** They use {extractor.label}, and the "
                  "models differ from the paper's (see above), so compare orderings and the findings, never the "
                  "values, with the paper's Inception-v3 numbers.")]
    return lines


#: The section of RESULTS.md written from the real-generator benchmarks (benchmarks/results), not
#: by this report: a rewrite of the file keeps it, at the end.
KEPT_SECTION = "## Findings on real pretrained generators"


def _kept_section(path: Path) -> list[str]:
    """`KEPT_SECTION` of an existing RESULTS.md, from its header to the end of the file; [] without one."""
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    start = text.find("\n" + KEPT_SECTION)
    return ["", *text[start + 1 :].rstrip("\n").split("\n")] if start >= 0 else []


def write_results(recipes: Sequence[Recipe], outcomes: Sequence[Outcome], descriptions: dict[str, str],
                  extractor: ExtractorSpec, settings: RunSettings, wall_seconds: float) -> Path:
    """Write ``<out>/RESULTS.md`` and its pictures (``<out>/figures``); returns the file's path."""
    figures = settings.out_dir / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    cache = RunCache(settings.cache_dir, CACHE_FORMAT)
    lines = [f"# Reproducing {PAPER}", ""]
    lines += _setup(outcomes, descriptions, extractor, settings, wall_seconds) + [""]
    lines += _findings_section(our_findings(outcomes), paper_findings(recipes))
    for table, title in TITLES.items():
        chosen = [o for o in outcomes if o.spec.experiment.table == table]
        if not chosen:
            continue
        lines += [f"## {title}", ""] + _row_table(chosen) + [""]
        if table == "figure1":
            lines += _figure1(chosen, figures) + [""]
    lines += ["## Samples", ""] + _grids(outcomes, cache, figures)
    not_run = [o for o in outcomes if o.status == NOT_RUN]
    if not_run:
        lines += ["", "## Rows not run", ""] + [f"- `{o.spec.id}`: {o.reason}" for o in not_run]
    path = settings.out_dir / "RESULTS.md"
    lines += _kept_section(path)
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def summary(outcomes: Sequence[Outcome]) -> str:
    """One line per row for the terminal."""
    lines = []
    for o in outcomes:
        metrics: dict[str, Any] = {} if o.row is None else o.row.metrics
        state = o.status if o.status != NOT_RUN else f"not run ({o.reason})"
        lines.append(f"{o.spec.id:<60} qFID {_num(metrics.get('qfid')):>8}  paper {_num(o.spec.paper.qfid):>6}  {state}")
    return "\n".join(lines)
