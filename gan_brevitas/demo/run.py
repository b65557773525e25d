"""`gan-brevitas demo`: the main job, offline, on the packaged demo generators.

For each demo generator, in sections (`SECTIONS`, all by default):

* ``ptq``: full precision, then vanilla PTQ with min-max and with quantile ranges at W8A8 and
  W4A8, per tensor and per channel;
* ``figure1``: the activation-quantile sweep of the paper's Figure 1;
* ``brecq``: STE-BRECQ at W8A8 and AR-BRECQ at W4A8 (Table 3), with short step counts;
* ``qat``: MA-QAT and LSQ-QAT at W8A8 and LSQ-QAT at W4A8 (Table 4), a short CPU schedule with
  pixel-MSE distillation (no VGG16 weights offline) against the demo discriminator;
* ``modelopt``: NVIDIA ModelOpt's int8 preset through our plugin, where ModelOpt is installed.

The step counts are demo-sized (the whole job fits in about ten minutes on two cores); the
benchmarks in ``benchmarks/`` and ``gan-brevitas reproduce`` run the longer schedules. Writes
``report.md``, ``results.json``, a labelled PNG grid per model and the Figure 1 plot.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch

from gan_brevitas import recipes
from gan_brevitas.atomic_files import atomic_write_text, check_output_path, staging_directory
from gan_brevitas.demo import zoo
from gan_brevitas.demo.figures import save_grid, save_quantile_plot
from gan_brevitas.errors import ConfigError
from gan_brevitas.metrics.evaluate import collect_inputs, evaluate_outputs
from gan_brevitas.metrics.extractors import ExtractorSpec, resolve_extractor
from gan_brevitas.metrics.fid import fid, generate
from gan_brevitas.quant.config import PAPER_QUANTILE_PAIRS, QuantConfig
from gan_brevitas.quant.convert import fold_for_quantization

#: The paper's weight quantiles (§4.1) and our default activation pair for "quantile" rows.
WEIGHT_QUANTILES = (0.0001, 0.9999)
ACT_QUANTILES = (0.001, 0.999)


@dataclass(frozen=True)
class DemoRow:
    """One line of the demo table: a method and its configuration (None = full precision)."""

    label: str
    method: str
    config: Optional[QuantConfig] = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class RowResult:
    model: str
    label: str
    method: str
    weight_bits: Optional[int]
    per_channel: Optional[bool]
    fid: Optional[float]
    qfid: float
    psnr: Optional[float]  # None for the full-precision row (identical outputs: infinite PSNR)
    seconds: float
    n: int = 0  # images per metric


#: The demo's sections, in running order (see the module docstring).
SECTIONS = ("ptq", "figure1", "brecq", "qat", "modelopt")


@dataclass(frozen=True)
class DemoSettings:
    """What the demo runs. The step counts are demo-sized, not the paper's."""

    models: tuple[str, ...] = zoo.DEMO_MODELS
    n: int = 1000  # images per metric
    num_samples: int = 200  # calibration samples, one at a time (the paper: 500)
    grid_size: int = 8
    out_dir: Path = Path("demo_out")
    progress: bool = True
    inception_weights: Optional[str] = None
    sections: tuple[str, ...] = SECTIONS
    brecq_steps: int = 100  # per block (the paper: 2,000 STE / 20,000 AR)
    brecq_samples: int = 128  # reconstruction inputs (the paper: 896)
    qat_epochs: int = 2  # (the paper: 100-200)
    qat_train: int = 128  # distillation pairs per epoch (the paper: 10,000)

    def __post_init__(self) -> None:
        unknown = [s for s in self.sections if s not in SECTIONS]
        if unknown:
            raise ConfigError(f"unknown demo section(s) {unknown}; choose from {list(SECTIONS)}")
        for name in ("n", "num_samples", "grid_size", "brecq_steps", "brecq_samples", "qat_train"):
            if getattr(self, name) < 1:
                raise ConfigError(f"DemoSettings.{name} must be >= 1, got {getattr(self, name)}")
        if self.qat_epochs < 2:
            raise ConfigError(
                f"DemoSettings.qat_epochs must be >= 2, got {self.qat_epochs}: MA-QAT freezes its ranges after "
                "the first epoch and CycleGAN's LSQ-QAT runs one MA epoch before LSQ"
            )


def ptq_rows() -> list[DemoRow]:
    """Vanilla PTQ: the default (`QuantConfig()`), and the paper's scheme with min-max vs
    quantile ranges, W8A8 / W4A8, per tensor / per channel."""
    rows = [DemoRow(f"PTQ default W{bits}A8", "vanilla-ptq", QuantConfig(weight_bits=bits)) for bits in (8, 4)]
    for bits in (8, 4):
        for per_channel in (False, True):
            granularity = "per-channel" if per_channel else "per-tensor"
            minmax = QuantConfig.paper(weight_bits=bits, per_channel=per_channel, act_range="minmax", weight_range="minmax")
            quantile = QuantConfig.paper(weight_bits=bits, per_channel=per_channel, act_quantiles=ACT_QUANTILES,
                                   weight_quantiles=WEIGHT_QUANTILES)
            rows.append(DemoRow(f"PTQ min-max W{bits}A8 {granularity}", "vanilla-ptq", minmax))
            rows.append(DemoRow(f"PTQ quantile W{bits}A8 {granularity}", "vanilla-ptq", quantile))
    return rows


def quantile_sweep_rows() -> list[DemoRow]:
    """Figure 1: W8A8 per tensor, activation upper quantile 1.0 / 0.9999 / 0.999 / 0.99."""
    return [
        DemoRow(f"act quantile {high}", "vanilla-ptq",
                QuantConfig.paper(act_quantiles=(low, high), weight_quantiles=WEIGHT_QUANTILES))
        for low, high in PAPER_QUANTILE_PAIRS
    ]


def brecq_rows(settings: DemoSettings) -> list[DemoRow]:
    """Table 3's pattern: STE-BRECQ at W8A8, AR-BRECQ (learned weight scales) at W4A8."""
    options = {"steps": settings.brecq_steps, "num_samples": settings.brecq_samples,
               "calibration_samples": settings.num_samples}
    quantiles = {"act_quantiles": ACT_QUANTILES, "weight_quantiles": WEIGHT_QUANTILES}
    return [
        DemoRow("STE-BRECQ W8A8 per-tensor", "ste-brecq", QuantConfig.paper(weight_bits=8, **quantiles), options),
        DemoRow("AR-BRECQ W4A8 per-tensor", "ar-brecq",
                QuantConfig.paper(weight_bits=4, weight_scaling="learned", **quantiles), options),
    ]


def qat_rows(name: str, settings: DemoSettings) -> list[DemoRow]:
    """Table 4's pattern, CPU-sized: MA-QAT and LSQ-QAT at W8A8, LSQ-QAT at W4A8.

    Pixel-MSE distillation plus the adversarial term against a copy of the demo discriminator;
    the per-model preset supplies the paper's learning rates and schedule.
    """
    options = {"preset": name, "epochs": settings.qat_epochs, "ma_epochs": 1, "num_train": settings.qat_train,
               "num_samples": min(settings.num_samples, settings.qat_train), "batch_size": 8, "loss": "mse",
               "eval_samples": 0, "discriminator": zoo.load_demo_discriminator(name)}
    return [
        DemoRow("MA-QAT W8A8 per-tensor", "ma-qat", QuantConfig.paper(weight_bits=8), options),
        DemoRow("LSQ-QAT W8A8 per-tensor", "lsq-qat", QuantConfig.paper(weight_bits=8, weight_scaling="learned"), options),
        DemoRow("LSQ-QAT W4A8 per-tensor", "lsq-qat", QuantConfig.paper(weight_bits=4, weight_scaling="learned"), options),
    ]


def modelopt_rows() -> list[DemoRow]:
    """ModelOpt's int8 preset through our plugin; none where nvidia-modelopt is not installed."""
    if importlib.util.find_spec("modelopt") is None:
        return []
    return [DemoRow("ModelOpt int8 (W8A8 symmetric)", "modelopt-int8", QuantConfig(weight_bits=8))]


def _section_rows(section: str, name: str, settings: DemoSettings) -> list[DemoRow]:
    if section == "ptq":
        return ptq_rows()
    if section == "brecq":
        return brecq_rows(settings)
    if section == "qat":
        return qat_rows(name, settings)
    return modelopt_rows()


def _run_row(name: str, row: DemoRow, model, x, fp_images, real, extractor, settings) -> tuple[RowResult, Any]:
    start = time.perf_counter()
    options = {"num_samples": settings.num_samples, "progress": False, **row.options}
    qmodel = recipes.quantize(model, row.method, config=row.config, inputs=x, **options)
    q_images = generate(qmodel, x, x.shape[0], progress=False)
    metrics = evaluate_outputs(q_images, fp_images, real, extractor)
    result = RowResult(name, row.label, row.method, row.config.weight_bits, row.config.per_channel,
                       metrics.fid, metrics.qfid, metrics.psnr, time.perf_counter() - start, metrics.n)
    return result, qmodel


def noise_floor(name: str, model, fp_images, n: int, extractor: ExtractorSpec) -> float:
    """qFID of the float model against itself on other inputs (seed 3 vs 1): the value two
    samples of n images differ by with no quantization at all. A qFID near it is noise."""
    other = collect_inputs(zoo.demo_inputs(name, n, seed=3), n)
    return fid(generate(model, other, other.shape[0], progress=False), fp_images, extractor=extractor).value


def _grid_label(row: DemoRow, result: RowResult) -> str:
    """The method and bits (in the row's label) and its metrics, so the grid stands alone."""
    return f"{row.label}: qFID {result.qfid:.2f}, PSNR {result.psnr:.1f} dB"


def run_model(name: str, settings: DemoSettings, extractor: ExtractorSpec, out_dir: Path) -> dict[str, Any]:
    """All rows for one demo generator; writes its grid into ``out_dir``. Returns results + sweep."""
    model = zoo.load_demo_generator(name)
    float_model = fold_for_quantization(model)
    x = collect_inputs(zoo.demo_inputs(name, settings.n, seed=1), settings.n)
    real = zoo.real_images(name, settings.n, seed=2)
    start = time.perf_counter()
    fp_images = generate(float_model, x, x.shape[0], progress=False)
    results = [RowResult(name, "full precision", "-", None, None,
                         fid(fp_images, real, extractor=extractor).value, 0.0, None,
                         time.perf_counter() - start, x.shape[0])]
    floor = noise_floor(name, float_model, fp_images, settings.n, extractor)
    grid_rows = [(f"full precision: FID {results[0].fid:.2f} vs real", fp_images[: settings.grid_size])]
    from tqdm.auto import tqdm

    sweep = []
    for section in settings.sections:
        if section == "figure1":
            for row in tqdm(quantile_sweep_rows(), desc=f"{name}: Figure 1", disable=not settings.progress):
                result, _ = _run_row(name, row, model, x, fp_images, real, extractor, settings)
                sweep.append({"high_quantile": row.config.act_quantiles[1], "qfid": result.qfid, "psnr": result.psnr})
            continue
        for row in tqdm(_section_rows(section, name, settings), desc=f"{name}: {section}",
                        disable=not settings.progress):
            result, qmodel = _run_row(name, row, model, x, fp_images, real, extractor, settings)
            results.append(result)
            with torch.no_grad():
                grid_rows.append((_grid_label(row, result), generate(qmodel, x[: settings.grid_size],
                                                                     settings.grid_size, progress=False)))
    inputs_row = x[: settings.grid_size] if getattr(model, "input_kind", "latent") == "image" else None
    title = (f"{name} demo generator, same inputs in every column; qFID/PSNR vs full precision on n={x.shape[0]} "
             f"(noise floor qFID {floor:.2f}), {extractor.name}")
    save_grid(out_dir / f"{name}_grid.png", grid_rows, title=title, inputs=inputs_row)
    return {"results": results, "sweep": sweep, "noise_floor": floor}


def _table(results: list[RowResult]) -> list[str]:
    lines = ["| model | method | W bits | per-channel | n | FID | qFID | PSNR (dB) | time (s) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        fid_text = "-" if r.fid is None else f"{r.fid:.2f}"
        psnr_text = "inf" if r.psnr is None else f"{r.psnr:.2f}"
        bits = "-" if r.weight_bits is None else str(r.weight_bits)
        pc = "-" if r.per_channel is None else ("yes" if r.per_channel else "no")
        lines.append(f"| {r.model} | {r.label} | {bits} | {pc} | {r.n} | {fid_text} | {r.qfid:.2f} | {psnr_text} "
                     f"| {r.seconds:.1f} |")
    return lines


def _noise_lines(per_model: dict[str, dict], n: int) -> list[str]:
    floors = ", ".join(f"{name} {data['noise_floor']:.2f}" for name, data in per_model.items())
    return [f"Noise floor (qFID of each float model against itself on another draw of {n} inputs): {floors}. "
            "A qFID below it: the quantized outputs are closer to the float ones than two samples of the float "
            "model are to each other.", ""]


def _machine() -> str:
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
            f"torch {torch.__version__}, {torch.get_num_threads()} threads")


def write_report(settings: DemoSettings, extractor: ExtractorSpec, per_model: dict[str, dict], seconds: float,
                 out_dir: Path) -> Path:
    lines = ["# gan-brevitas demo report", "",
             f"Feature extractor: **{extractor.label}**, weights sha256 `{extractor.weights_sha256}`.",
             "" if extractor.comparable_with_published else
             "Offline values from the demo CNN are NOT comparable with published Inception FIDs.",
             "", f"n = {settings.n} images per metric; {settings.num_samples} calibration samples fed one at a "
             f"time; machine: {_machine()}; total wall time {seconds:.0f} s.", "",
             "FID: quantized outputs vs real images. qFID: quantized vs full-precision outputs for the same "
             "inputs (paper §4). PSNR: quantized vs full precision.", ""]
    all_results = [r for data in per_model.values() for r in data["results"]]
    lines += _table(all_results) + [""] + _noise_lines(per_model, settings.n)
    if "figure1" in settings.sections:
        lines += ["## Figure 1: qFID against the activation quantile (W8A8 per tensor)", "",
                  "![figure 1](figure1_quantile.png)", ""]
    for name in per_model:
        lines += [f"## {name}", "", f"![{name} grid]({name}_grid.png)", ""]
    return atomic_write_text(out_dir / "report.md", "\n".join(lines) + "\n")


def _json_value(value: Any) -> Any:
    """Settings as JSON values: paths as text, tuples as lists, the rest as they are."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (tuple, list)):
        return [_json_value(v) for v in value]
    return value


def run_demo(settings: DemoSettings) -> dict[str, dict]:
    """Run the whole demo and write its outputs into ``settings.out_dir``.

    Every output path is checked before anything runs; the outputs are written into a staging
    directory and moved into ``out_dir`` only when the whole demo has finished (report.md
    last), so a stopped demo leaves the earlier outputs as they were.
    """
    outputs = [f"{name}_grid.png" for name in settings.models] + ["results.json", "report.md"]
    if "figure1" in settings.sections:
        outputs.append("figure1_quantile.png")
    for name in outputs:
        check_output_path(settings.out_dir / name, what="demo output", create_parent=True)
    extractor = resolve_extractor(settings.inception_weights)
    with staging_directory(settings.out_dir, last=("report.md",)) as staging:
        per_model = _run_into(settings, extractor, staging)
    print("\n".join(_table([r for d in per_model.values() for r in d["results"]])))
    print("\n".join(_noise_lines(per_model, settings.n)))
    print(f"\nreport: {settings.out_dir / 'report.md'}")
    return per_model


def _run_into(settings: DemoSettings, extractor: ExtractorSpec, staging: Path) -> dict[str, dict]:
    start = time.perf_counter()
    per_model = {name: run_model(name, settings, extractor, staging) for name in settings.models}
    seconds = time.perf_counter() - start
    if "figure1" in settings.sections:
        save_quantile_plot(staging / "figure1_quantile.png", {m: d["sweep"] for m, d in per_model.items()})
    payload = {
        "extractor": {"label": extractor.label, "sha256": extractor.weights_sha256},
        "settings": {k: _json_value(v) for k, v in asdict(settings).items()},
        "machine": _machine(),
        "seconds": seconds,
        "results": [asdict(r) for d in per_model.values() for r in d["results"]],
        "noise_floor_qfid": {m: d["noise_floor"] for m, d in per_model.items()},
        "figure1": {m: d["sweep"] for m, d in per_model.items()},
    }
    text = json.dumps(payload, indent=2, allow_nan=False)  # strict JSON: other tools read it
    atomic_write_text(staging / "results.json", text + "\n")
    write_report(settings, extractor, per_model, seconds, staging)
    print(f"\nextractor: {extractor.label} (sha256 {extractor.weights_sha256}); wall time {seconds:.0f} s")
    return per_model
