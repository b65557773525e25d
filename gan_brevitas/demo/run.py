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
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from torch import Tensor, nn

from gan_brevitas.atomic_files import check_output_path, staging_directory
from gan_brevitas.demo import zoo
from gan_brevitas.errors import ConfigError
from gan_brevitas.harness import (
    Report,
    ResultRow,
    Run,
    RunCache,
    machine_description,
    markdown_table,
    package_fingerprint,
    sweep,
    write_report,
)
from gan_brevitas.harness.figures import quantile_figure, save_grid
from gan_brevitas.harness.measure import Reference, float_noise_floor, measure_method
from gan_brevitas.metrics.evaluate import collect_inputs
from gan_brevitas.metrics.extractors import ExtractorSpec, resolve_extractor
from gan_brevitas.metrics.fid import fid, generate
from gan_brevitas.methods import DEFAULT_METHOD
from gan_brevitas.quant.config import PAPER_QUANTILE_PAIRS, QuantConfig
from gan_brevitas.quant.convert import fold_for_quantization

#: The paper's weight quantiles (§4.1) and our default activation pair for "quantile" rows.
WEIGHT_QUANTILES = (0.0001, 0.9999)
ACT_QUANTILES = (0.001, 0.999)
#: The demo's cached runs (``<out_dir>/rows``); a new format reruns every run.
CACHE_FORMAT = "gan-brevitas/demo-run/1"
#: Every run quantizes under this torch seed, so a cached row equals a recomputed one.
RUN_SEED = 0


@dataclass(frozen=True)
class DemoRow:
    """One line of the demo table: a method and its configuration."""

    label: str
    method: str
    config: QuantConfig
    options: dict[str, Any] = field(default_factory=dict)


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
    """The default (`recipes.quantize(gen, inputs=x)`: GPTQ rounding on `QuantConfig()`), and
    vanilla PTQ on the paper's scheme with min-max vs quantile ranges, W8A8 / W4A8, per tensor /
    per channel."""
    rows = [DemoRow(f"PTQ default W{bits}A8", DEFAULT_METHOD, QuantConfig(weight_bits=bits)) for bits in (8, 4)]
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


def section_rows(section: str, name: str, settings: DemoSettings) -> list[DemoRow]:
    """The rows of one section for the demo generator ``name``."""
    if section == "ptq":
        return ptq_rows()
    if section == "figure1":
        return quantile_sweep_rows()
    if section == "brecq":
        return brecq_rows(settings)
    if section == "qat":
        return qat_rows(name, settings)
    return modelopt_rows()


@dataclass
class ModelResults:
    """One demo generator's rows (full precision first), its Figure 1 sweep and noise floor."""

    rows: list[ResultRow]
    sweep: list[dict[str, Any]]
    noise_floor: float


def _json_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Method options as JSON data for the cache key (a module, the demo discriminator, by its
    class: its weights are packaged, so the package fingerprint covers them)."""
    return {k: type(v).__name__ if isinstance(v, nn.Module) else v for k, v in options.items()}


def demo_run(name: str, section: str, row: DemoRow, settings: DemoSettings) -> Run[tuple[str, DemoRow]]:
    """``row`` on the demo generator ``name`` as a harness run: what its numbers depend on."""
    config = {"section": section, "quant": row.config.to_dict(), "options": _json_options(row.options),
              "n": settings.n, "num_samples": settings.num_samples, "grid_size": settings.grid_size,
              "seed": RUN_SEED}
    return Run(name, row.method, row.label, config, spec=(section, row))


def noise_floor(name: str, model, fp_images, n: int, extractor: ExtractorSpec) -> float:
    """qFID of the float model against itself on other inputs (seed 3 vs 1): the value two
    samples of n images differ by with no quantization at all. A qFID near it is noise."""
    return float_noise_floor(model, collect_inputs(zoo.demo_inputs(name, n, seed=3), n), fp_images, extractor)


def _grid_label(row: ResultRow) -> str:
    """The method and bits (in the row's label) and its metrics, so the grid stands alone."""
    return f"{row.label}: qFID {row.metrics['qfid']:.2f}, PSNR {row.metrics['psnr']:.1f} dB"


def _full_precision(name: str, float_model: nn.Module, x: Tensor, real: Tensor, extractor: ExtractorSpec
                    ) -> tuple[ResultRow, Tensor]:
    start = time.perf_counter()
    images = generate(float_model, x, x.shape[0], progress=False)
    metrics = {"fid": fid(images, real, extractor=extractor).value, "qfid": 0.0, "psnr": None}
    row = ResultRow(name, "-", "full precision", metrics, x.shape[0], time.perf_counter() - start,
                    {"weight_bits": None, "per_channel": None})
    return row, images


def run_model(name: str, settings: DemoSettings, extractor: ExtractorSpec, out_dir: Path, cache: RunCache
              ) -> ModelResults:
    """All rows for one demo generator (the runs in ``cache`` are not measured again); writes
    its grid into ``out_dir``."""
    model = zoo.load_demo_generator(name)
    float_model = fold_for_quantization(model)
    x = collect_inputs(zoo.demo_inputs(name, settings.n, seed=1), settings.n)
    real = zoo.real_images(name, settings.n, seed=2)
    reference_row, fp_images = _full_precision(name, float_model, x, real, extractor)
    reference = Reference(x, fp_images, real)
    floor = noise_floor(name, float_model, fp_images, settings.n, extractor)

    def measure(run: Run[tuple[str, DemoRow]], key: str) -> tuple[ResultRow, dict[str, Tensor]]:
        row = run.spec[1]
        options = {"num_samples": settings.num_samples, "progress": False, **row.options}
        measured = measure_method(model, row.method, row.config, options, x, reference, extractor, seed=RUN_SEED)
        metrics = {"fid": measured.metrics.fid, "qfid": measured.metrics.qfid, "psnr": measured.metrics.psnr}
        fields = {"weight_bits": row.config.weight_bits, "per_channel": row.config.per_channel}
        result = ResultRow(name, row.method, row.label, metrics, measured.metrics.n, measured.seconds, fields)
        return result, {"images": measured.images[: settings.grid_size]}

    runs = [demo_run(name, section, row, settings) for section in settings.sections
            for row in section_rows(section, name, settings)]
    context = {"package": package_fingerprint(), "extractor": extractor.weights_sha256}
    outcomes = sweep(runs, measure, cache, lambda run: context, progress=settings.progress, desc=name)
    results = ModelResults([reference_row], [], floor)
    grid_rows = [(f"full precision: FID {reference_row.metrics['fid']:.2f} vs real", fp_images[: settings.grid_size])]
    for outcome in outcomes:
        section, row = outcome.spec
        if section == "figure1":
            results.sweep.append({"high_quantile": row.config.act_quantiles[1], "qfid": outcome.row.metrics["qfid"],
                                  "psnr": outcome.row.metrics["psnr"]})
            continue
        results.rows.append(outcome.row)
        grid_rows.append((_grid_label(outcome.row), cache.samples(outcome.key)["images"]))
    inputs_row = x[: settings.grid_size] if getattr(model, "input_kind", "latent") == "image" else None
    title = (f"{name} demo generator, same inputs in every column; qFID/PSNR vs full precision on n={x.shape[0]} "
             f"(noise floor qFID {floor:.2f}), {extractor.name}")
    save_grid(out_dir / f"{name}_grid.png", grid_rows, title=title, inputs=inputs_row)
    return results


def _cell(value: Optional[float], digits: int, none: str = "-") -> str:
    return none if value is None else f"{value:.{digits}f}"


def _table(rows: list[ResultRow]) -> list[str]:
    header = ["model", "method", "W bits", "per-channel", "n", "FID", "qFID", "PSNR (dB)", "time (s)"]
    cells = []
    for r in rows:
        bits, per_channel = r.fields["weight_bits"], r.fields["per_channel"]
        cells.append([r.model, r.label, "-" if bits is None else bits,
                      "-" if per_channel is None else ("yes" if per_channel else "no"), r.n,
                      _cell(r.metrics["fid"], 2), _cell(r.metrics["qfid"], 2), _cell(r.metrics["psnr"], 2, "inf"),
                      _cell(r.seconds, 1)])
    return markdown_table(header, cells)


def _noise_lines(per_model: dict[str, ModelResults], n: int) -> list[str]:
    floors = ", ".join(f"{name} {data.noise_floor:.2f}" for name, data in per_model.items())
    return [f"Noise floor (qFID of each float model against itself on another draw of {n} inputs): {floors}. "
            "A qFID below it: the quantized outputs are closer to the float ones than two samples of the float "
            "model are to each other.", ""]


def _all_rows(per_model: dict[str, ModelResults]) -> list[ResultRow]:
    return [row for data in per_model.values() for row in data.rows]


def report_lines(settings: DemoSettings, extractor: ExtractorSpec, per_model: dict[str, ModelResults],
                 seconds: float) -> list[str]:
    """report.md: the table of every row, the noise floors, Figure 1 and the grids."""
    lines = ["# gan-brevitas demo report", "",
             f"Feature extractor: **{extractor.label}**, weights sha256 `{extractor.weights_sha256}`.",
             "" if extractor.comparable_with_published else
             "Offline values from the demo CNN are NOT comparable with published Inception FIDs.",
             "", f"n = {settings.n} images per metric; {settings.num_samples} calibration samples fed one at a "
             f"time; machine: {machine_description()}; total wall time {seconds:.0f} s.", "",
             "FID: quantized outputs vs real images. qFID: quantized vs full-precision outputs for the same "
             "inputs (paper §4). PSNR: quantized vs full precision.", ""]
    lines += _table(_all_rows(per_model)) + [""] + _noise_lines(per_model, settings.n)
    if "figure1" in settings.sections:
        lines += ["## Figure 1: qFID against the activation quantile (W8A8 per tensor)", "",
                  "![figure 1](figure1_quantile.png)", ""]
    for name in per_model:
        lines += [f"## {name}", "", f"![{name} grid]({name}_grid.png)", ""]
    return lines


def run_demo(settings: DemoSettings) -> dict[str, ModelResults]:
    """Run the whole demo and write its outputs into ``settings.out_dir``.

    Every output path is checked before anything runs. Each finished run is cached at once in
    ``<out_dir>/rows`` (keyed by its config, the settings it depends on, the extractor and the
    package's files), so a stopped demo resumes and a repeated one measures nothing again. The
    outputs are written into a staging directory and moved into ``out_dir`` only when the whole
    demo has finished (report.md last), so a stopped demo leaves the earlier outputs as they were.
    """
    outputs = [f"{name}_grid.png" for name in settings.models] + ["results.json", "report.md"]
    if "figure1" in settings.sections:
        outputs.append("figure1_quantile.png")
    for name in outputs:
        check_output_path(settings.out_dir / name, what="demo output", create_parent=True)
    extractor = resolve_extractor(settings.inception_weights)
    with staging_directory(settings.out_dir, last=("report.md",)) as staging:
        per_model = _run_into(settings, extractor, staging)
    print("\n".join(_table(_all_rows(per_model))))
    print("\n".join(_noise_lines(per_model, settings.n)))
    print(f"\nreport: {settings.out_dir / 'report.md'}")
    return per_model


def _run_into(settings: DemoSettings, extractor: ExtractorSpec, staging: Path) -> dict[str, ModelResults]:
    start = time.perf_counter()
    cache = RunCache(settings.out_dir / "rows", CACHE_FORMAT)
    per_model = {name: run_model(name, settings, extractor, staging, cache) for name in settings.models}
    seconds = time.perf_counter() - start
    sweeps = {m: d.sweep for m, d in per_model.items()}
    payload = {
        "extractor": {"label": extractor.label, "sha256": extractor.weights_sha256},
        "settings": asdict(settings),
        "machine": machine_description(),
        "seconds": seconds,
        "results": [row.flat() for row in _all_rows(per_model)],
        "noise_floor_qfid": {m: d.noise_floor for m, d in per_model.items()},
        "figure1": sweeps,
    }
    plots = {staging / "figure1_quantile.png": lambda: quantile_figure(sweeps)} if "figure1" in settings.sections else {}
    write_report(Report(staging / "results.json", payload, staging / "report.md",
                        report_lines(settings, extractor, per_model, seconds), plots))
    print(f"\nextractor: {extractor.label} (sha256 {extractor.weights_sha256}); wall time {seconds:.0f} s")
    return per_model
