"""Run recipe rows: measure each, cache it when it finishes, skip it when it is cached.

For every row: quantize the float generator with the row's method, QuantConfig and options
(``recipes.quantize``), generate images for held-out inputs, and measure FID (vs real images),
qFID and PSNR (vs the full-precision outputs of the same inputs). Images are clamped to
[-1, 1] first, as they are shown (StyleGAN has no output Tanh). The float reference outputs
are made once per model and evaluation setting.

An interrupted invocation loses at most the row in progress (QAT rows resume from their last
epoch: their run directory lives under ``<out>/work/<key>``). Rows that cannot run on this
machine (loss="perceptual" without VGG16 weights) are reported as not run, and not cached.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from torch import Tensor

from gan_brevitas.errors import ConfigError
from gan_brevitas.harness import Outcome, ResultRow, Run, RunCache, machine_description, sweep
from gan_brevitas.harness.measure import Reference, float_noise_floor, measure_method
from gan_brevitas.metrics.evaluate import evaluate_outputs
from gan_brevitas.metrics.extractors import ExtractorSpec, resolve_extractor
from gan_brevitas.metrics.fid import generate
from gan_brevitas.qat.losses import resolve_vgg16_weights
from gan_brevitas.quant.convert import fold_for_quantization
from gan_brevitas.reproduce.sources import (
    ModelData,
    UserData,
    checkpoint_model,
    demo_model,
)
from gan_brevitas.reproduce.spec import BRECQ_METHODS, FULL_PRECISION, QAT_METHODS, Row

log = logging.getLogger(__name__)

#: The format of reproduce's cached rows (``<out>/rows``).
CACHE_FORMAT = "gan-brevitas/reproduce-row/1"
#: The full-precision row also measures its model against itself on the held-out draw shifted by
#: this seed (the qFID noise floor of the report).
NOISE_FLOOR_SEED_OFFSET = 1000


@dataclass(frozen=True)
class RunSettings:
    """How `gan-brevitas reproduce` runs.

    Attributes:
        profile: "paper", "cpu" or "tiny" (see `gan_brevitas.reproduce.spec`).
        out_dir: cache, work directories, RESULTS.md and its pictures.
        checkpoints: paper model -> user checkpoint; other models use the demo zoo.
        user_data: image folders that go with user checkpoints.
        device: where generators run and train ("cpu", "cuda", ...).
        inception_weights: local Inception-v3 weights (else the resolver's default).
        progress: tqdm progress bars.
        report_only: run nothing; write RESULTS.md from the rows already cached.
        command: the command line, for RESULTS.md.
    """

    profile: str = "cpu"
    out_dir: Path = Path("reproduce_out")
    checkpoints: Mapping[str, str] = field(default_factory=dict)
    user_data: UserData = field(default_factory=UserData)
    device: str = "cpu"
    inception_weights: str | None = None
    progress: bool = True
    report_only: bool = False
    command: str = ""

    @property
    def cache_dir(self) -> Path:
        return self.out_dir / "rows"

    @property
    def work_dir(self) -> Path:
        return self.out_dir / "work"


class Models:
    """Generators and their reference outputs, loaded once per invocation, when first needed."""

    def __init__(self, settings: RunSettings) -> None:
        self.settings = settings
        self._data: dict[str, ModelData] = {}
        self._references: dict[tuple, Reference] = {}

    def data(self, name: str) -> ModelData:
        if name not in self._data:
            path = self.settings.checkpoints.get(name)
            data = demo_model(name) if path is None else checkpoint_model(name, path, self.settings.user_data)
            data.model.to(self.settings.device)
            self._data[name] = data
        return self._data[name]

    def reference(self, row: Row) -> Reference:
        settings = row.eval
        key = (row.model, settings.n, settings.eval_seed, settings.real_count, settings.real_seed)
        if key not in self._references:
            data = self.data(row.model)
            inputs = data.eval_inputs(settings.n, settings.eval_seed)
            images = generate(fold_for_quantization(data.model), inputs, settings.n, progress=False)
            real = None
            if data.real_images is not None:
                real = data.real_images(settings.real_count, settings.real_seed)
            self._references[key] = Reference(inputs, images, real)
        return self._references[key]

    def descriptions(self) -> dict[str, str]:
        return {name: data.description for name, data in self._data.items()}


def cannot_run(row: Row) -> str:
    """Why ``row`` cannot run on this machine ("" when it can)."""
    if row.method in QAT_METHODS and row.options.loss == "perceptual":
        try:
            resolve_vgg16_weights(row.options.vgg_weights)
        except ConfigError:
            return ("loss='perceptual' needs VGG16 ImageNet weights, which this machine does not have (they are "
                    "never downloaded; set GAN_BREVITAS_VGG16_WEIGHTS or vgg_weights)")
    return ""


def _method_kwargs(row: Row, data: ModelData, settings: RunSettings, work_dir: Path) -> dict[str, Any]:
    kwargs = {**row.method_options(), "progress": settings.progress}
    if row.method in QAT_METHODS:
        kwargs.update(out_dir=str(work_dir), data_dir=str(settings.work_dir / "distill"), resume=True,
                      discriminator=data.discriminator)
    elif row.method in BRECQ_METHODS:
        kwargs.update(out_dir=str(work_dir))
    return kwargs


def cannot_run_now(row: Row, settings: RunSettings) -> str:
    """Why ``row``, not cached, is not run in this invocation ("" when it runs)."""
    return "not cached yet (--report-only runs nothing)" if settings.report_only else cannot_run(row)


def measure(row: Row, models: Models, extractor: ExtractorSpec, settings: RunSettings, key: str
            ) -> tuple[ResultRow, dict[str, Tensor]]:
    """Run one row; returns its metrics row and its samples."""
    started = time.perf_counter()
    data = models.data(row.model)
    reference = models.reference(row)
    extra: dict[str, Any] = {}
    if row.method == FULL_PRECISION:
        images = reference.images
        metrics = evaluate_outputs(images, reference.images, reference.real, extractor)
        other = data.eval_inputs(row.eval.n, row.eval.eval_seed + NOISE_FLOOR_SEED_OFFSET)
        extra["noise_floor_qfid"] = float_noise_floor(fold_for_quantization(data.model), other, images, extractor)
    else:
        measured = measure_method(data.model, row.method, row.quant,
                                  _method_kwargs(row, data, settings, settings.work_dir / key),
                                  data.train_inputs(row.eval.input_seed), reference, extractor,
                                  seed=row.eval.input_seed)
        images, metrics = measured.images, measured.metrics
    samples = {"images": images[: row.eval.grid]}
    if reference.inputs.dim() == 4:  # image-to-image: show the inputs too
        samples["inputs"] = reference.inputs[: row.eval.grid]
    fields = {
        "row": row.id,
        "recipe": row.path,
        "table": row.experiment.table,
        "config": row.config(),
        "source": data.identity,
        "machine": machine_description(settings.device),
        "device": settings.device,
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    metrics_record = {**metrics.to_dict(), "n_real": None if reference.real is None else len(reference.real), **extra}
    seconds = time.perf_counter() - started
    return ResultRow(row.model, row.method, row.label, metrics_record, metrics.n, seconds, fields), samples


def run_rows(rows: Sequence[Row], settings: RunSettings) -> tuple[list[Outcome[Row]], Models, ExtractorSpec]:
    """Run (or find in the cache) every row, in order; returns what became of each."""
    extractor = resolve_extractor(settings.inception_weights)
    cache = RunCache(settings.cache_dir, CACHE_FORMAT)
    models = Models(settings)
    runs = [Run(row.model, row.method, row.label, row.config(), spec=row) for row in rows]

    def context(run: Run[Row]) -> dict[str, Any]:
        return {"source": models.data(run.model).identity, "extractor": extractor.weights_sha256}

    def measure_run(run: Run[Row], key: str) -> tuple[ResultRow, dict[str, Tensor]]:
        return measure(run.spec, models, extractor, settings, key)

    outcomes = sweep(runs, measure_run, cache, context, cannot_run=lambda run: cannot_run_now(run.spec, settings),
                     progress=settings.progress, desc=f"reproduce ({settings.profile})")
    return outcomes, models, extractor
