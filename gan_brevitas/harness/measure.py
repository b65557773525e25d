"""Measure one quantization run: quantize, generate for held-out inputs, FID / qFID / PSNR."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import Tensor, nn

from gan_brevitas import recipes
from gan_brevitas.metrics.evaluate import Evaluation, evaluate_outputs
from gan_brevitas.metrics.extractors import ExtractorSpec
from gan_brevitas.metrics.fid import fid, generate
from gan_brevitas.quant.config import QuantConfig


@dataclass
class Reference:
    """Held-out inputs, the float model's outputs for them, and real images (None: no FID)."""

    inputs: Tensor
    images: Tensor
    real: Optional[Tensor]


@dataclass
class Measured:
    """A quantized model, its outputs for the reference inputs, their metrics and the time taken."""

    model: nn.Module
    images: Tensor
    metrics: Evaluation
    seconds: float


def measure_method(
    model: nn.Module,
    method: str,
    config: Optional[QuantConfig],
    options: Mapping[str, Any],
    calibration: Any,
    reference: Reference,
    extractor: ExtractorSpec,
    seed: Optional[int] = None,
) -> Measured:
    """Quantize ``model`` with ``method`` (``recipes.quantize``: calibration / training inputs
    ``calibration``), generate for the reference inputs, and measure against the float outputs.

    ``seed``: the quantization runs under this torch seed, leaving the caller's RNG as it was.
    """
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        qmodel = recipes.quantize(model, method, config=config, inputs=calibration, **options)
    images = generate(qmodel, reference.inputs, reference.inputs.shape[0], progress=False)
    metrics = evaluate_outputs(images, reference.images, reference.real, extractor)
    return Measured(qmodel, images, metrics, time.perf_counter() - start)


def float_noise_floor(model: nn.Module, other_inputs: Tensor, reference_images: Tensor, extractor: ExtractorSpec) -> float:
    """qFID of the float ``model`` against itself: its outputs for another draw of inputs vs the
    reference images. Two samples of n images differ by this much with no quantization at all, so
    a qFID near it is noise."""
    images = generate(model, other_inputs, other_inputs.shape[0], progress=False)
    return fid(images, reference_images, extractor=extractor).value
