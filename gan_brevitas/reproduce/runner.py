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
import os
import platform
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from gan_brevitas import recipes
from gan_brevitas.errors import ConfigError
from gan_brevitas.metrics.evaluate import evaluate_outputs
from gan_brevitas.metrics.extractors import ExtractorSpec, resolve_extractor
from gan_brevitas.metrics.fid import generate
from gan_brevitas.qat.losses import resolve_vgg16_weights
from gan_brevitas.quant.convert import fold_for_quantization
from gan_brevitas.reproduce.cache import RowCache, row_key
from gan_brevitas.reproduce.sources import (
    ModelData,
    UserData,
    checkpoint_model,
    demo_model,
)
from gan_brevitas.reproduce.spec import BRECQ_METHODS, FULL_PRECISION, QAT_METHODS, Row

log = logging.getLogger(__name__)

RAN = "ran"
CACHED = "cached"
NOT_RUN = "not run"


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


@dataclass
class Outcome:
    """What became of one row: its record (None when it did not run) and why."""

    row: Row
    key: str
    status: str
    record: dict[str, Any] | None = None
    reason: str = ""


@dataclass
class Reference:
    """Held-out inputs, the float outputs for them, and real images (None: no FID)."""

    inputs: Tensor
    images: Tensor
    real: Tensor | None


def machine_description(device: str) -> str:
    """The machine a row ran on, in one line."""
    text = (f"{platform.machine()} {platform.processor() or ''}".strip()
            + f", {os.cpu_count()} CPU cores, {torch.get_num_threads()} torch threads, torch {torch.__version__}")
    if device.startswith("cuda") and torch.cuda.is_available():
        text += f", {torch.cuda.get_device_name(torch.device(device))}"
    return text


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


def measure(row: Row, models: Models, extractor: ExtractorSpec, settings: RunSettings, key: str
            ) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """Run one row; returns its record (without the cache's own fields) and its samples."""
    started = time.perf_counter()
    data = models.data(row.model)
    reference = models.reference(row)
    if row.method == FULL_PRECISION:
        images = reference.images
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(row.eval.input_seed)
            qmodel = recipes.quantize(data.model, row.method, config=row.quant,
                                      inputs=data.train_inputs(row.eval.input_seed),
                                      **_method_kwargs(row, data, settings, settings.work_dir / key))
        images = generate(qmodel, reference.inputs, row.eval.n, progress=False)
    metrics = evaluate_outputs(images, reference.images, reference.real, extractor)
    samples = {"images": images[: row.eval.grid]}
    if reference.inputs.dim() == 4:  # image-to-image: show the inputs too
        samples["inputs"] = reference.inputs[: row.eval.grid]
    record = {
        "row": row.id,
        "recipe": row.path,
        "label": row.label,
        "table": row.experiment.table,
        "config": row.config(),
        "source": data.identity,
        "metrics": {**metrics.to_dict(), "n_real": None if reference.real is None else len(reference.real)},
        "seconds": time.perf_counter() - started,
        "machine": machine_description(settings.device),
        "device": settings.device,
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    return record, samples


def run_rows(rows: Sequence[Row], settings: RunSettings) -> tuple[list[Outcome], Models, ExtractorSpec]:
    """Run (or find in the cache) every row, in order; returns what became of each."""
    extractor = resolve_extractor(settings.inception_weights)
    cache = RowCache(settings.cache_dir)
    models = Models(settings)
    outcomes = []
    bar = tqdm(rows, desc=f"reproduce ({settings.profile})", unit="row", disable=not settings.progress)
    for row in bar:
        bar.set_postfix_str(row.id)
        key = row_key({
            "row": row.config(),
            "source": models.data(row.model).identity,
            "extractor": extractor.weights_sha256,
        })
        record = cache.load(key)
        if record is not None:
            outcomes.append(Outcome(row, key, CACHED, record))
            continue
        reason = "not cached yet (--report-only runs nothing)" if settings.report_only else cannot_run(row)
        if reason:
            outcomes.append(Outcome(row, key, NOT_RUN, reason=reason))
            continue
        log.info("running %s (%s profile)", row.id, settings.profile)
        record, samples = measure(row, models, extractor, settings, key)
        outcomes.append(Outcome(row, key, RAN, cache.store(key, record, samples)))
    return outcomes, models, extractor
