"""The real-generator suite: public pretrained generators of different families, for measurement.

    from benchmarks.suite import load_suite
    for entry in load_suite():
        out = entry.model(entry.test)

Each entry has the float model (eval, CPU), calibration inputs, held-out test inputs (other
photos, or other latents), and where the checkpoint came from. The checkpoints are not in git:
see benchmarks/suite/README.md for how they are copied into the cache and checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor, nn

from benchmarks.suite import data
from benchmarks.suite.models import build
from benchmarks.suite.registry import SOURCES, Source, SuiteCacheError, cache_dir, verified_path

__all__ = ["DEFAULT_SIZES", "SOURCES", "SuiteCacheError", "SuiteEntry", "load_suite", "suite_available", "training_inputs"]

#: Model input size in px (the test metric is on the output): translator 128, SR 48 -> 192.
DEFAULT_SIZES: dict[str, int] = {"sketch_translator": 128, "srgan_x4": 48, "srvgg_x4": 48, "dcgan_mnist": 28}
SR_FACTOR = 4
LATENTS_CALIB = 64
#: Test latents of the noise-to-image generator: its qFID (`benchmarks.suite.qfid`) needs many images.
LATENTS_TEST = 1024


@dataclass
class SuiteEntry:
    """One suite generator with its inputs.

    ``output_range`` is the range of the model's output images ((-1, 1) or (0, 1)), for PSNR.
    """

    name: str
    family: str
    model: nn.Module
    calib: Tensor
    test: Tensor
    input_size: int
    output_range: tuple[float, float]
    source: Source


def _inputs(name: str, size: int) -> tuple[Tensor, Tensor]:
    if name == "dcgan_mnist":
        return (data.latents(LATENTS_CALIB, 100, data.CALIBRATION_SEED),
                data.latents(LATENTS_TEST, 100, data.TEST_SEED))  # fmt: skip
    if name in ("srgan_x4", "srvgg_x4"):
        high = size * SR_FACTOR
        return (data.downscale(data.photos(data.CALIBRATION_PHOTOS, high), SR_FACTOR),
                data.downscale(data.photos(data.TEST_PHOTOS, high), SR_FACTOR))  # fmt: skip
    return data.photos(data.CALIBRATION_PHOTOS, size) * 2 - 1, data.photos(data.TEST_PHOTOS, size) * 2 - 1


def training_inputs(entry: SuiteEntry) -> Callable[[int], Tensor]:
    """A sampler of training inputs for QAT methods, from the calibration side only: random
    crops of the calibration photos (as the model takes them), or fresh latents."""
    if entry.name == "dcgan_mnist":
        rng = torch.Generator().manual_seed(data.TRAINING_SEED)
        return lambda batch_size: torch.randn(batch_size, entry.calib.shape[1], generator=rng)
    if entry.name in ("srgan_x4", "srvgg_x4"):
        return data.CalibrationCrops(entry.input_size, SR_FACTOR)
    crops = data.CalibrationCrops(entry.input_size)
    return lambda batch_size: crops(batch_size) * 2 - 1


OUTPUT_RANGES: dict[str, tuple[float, float]] = {
    "sketch_translator": (-1.0, 1.0), "srgan_x4": (0.0, 1.0), "srvgg_x4": (0.0, 1.0), "dcgan_mnist": (-1.0, 1.0),
}  # fmt: skip


def suite_available(cache: Optional[Path] = None) -> bool:
    """True when every suite checkpoint is in the cache (existence only; loading checks sha256)."""
    folder = cache or cache_dir()
    return all((folder / source.filename).is_file() for source in SOURCES.values())


def load_suite(
    names: Optional[Sequence[str]] = None,
    sizes: Optional[dict[str, int]] = None,
    cache: Optional[Path] = None,
) -> list[SuiteEntry]:
    """Build the suite's float models from the verified cache, with calibration and test inputs.

    Args:
        names: a subset of ``SOURCES`` (all four when omitted), in that order.
        sizes: input size overrides in px, e.g. ``{"sketch_translator": 256}``.
        cache: the cache folder (default: ``GAN_BREVITAS_SUITE_CACHE`` or benchmarks/suite/.cache).
    Raises:
        SuiteCacheError: a checkpoint is missing or its sha256 differs.
        KeyError: an unknown name.
    """
    chosen = list(names) if names else list(SOURCES)
    unknown = [name for name in chosen if name not in SOURCES]
    if unknown:
        raise KeyError(f"unknown suite model(s) {unknown}; choose from {sorted(SOURCES)}.")
    resolved = {**DEFAULT_SIZES, **(sizes or {})}
    entries = []
    for name in chosen:
        source = SOURCES[name]
        model = build(name, str(verified_path(source, cache)))
        calib, test = _inputs(name, resolved[name])
        entries.append(SuiteEntry(name, source.family, model, calib, test, resolved[name], OUTPUT_RANGES[name], source))
    return entries
