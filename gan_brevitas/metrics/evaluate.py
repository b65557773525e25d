"""`evaluate`: FID, qFID and PSNR of a quantized generator against its float original.

Both generators see the SAME inputs (collected once), so qFID and PSNR compare outputs
pairwise (§4 of the paper); FID compares the quantized outputs with real images when given.
Every number carries the feature extractor that produced it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Optional

import torch
from torch import nn

from gan_brevitas.inputs import InputSource, iter_batches
from gan_brevitas.limits import check_memory
from gan_brevitas.metrics.extractors import ExtractorSpec, resolve_extractor
from gan_brevitas.metrics.fid import DEFAULT_BATCH_SIZE, fid, generate
from gan_brevitas.metrics.psnr import psnr


@dataclass(frozen=True)
class Evaluation:
    """FID (vs real; None without real images), qFID (vs float), PSNR (dB, vs float)."""

    fid: Optional[float]
    qfid: float
    psnr: float
    n: int
    extractor: str
    extractor_sha256: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def collect_inputs(inputs: InputSource, n: int, batch_size: int = DEFAULT_BATCH_SIZE) -> torch.Tensor:
    """The first ``n`` inputs as one tensor, so several generators can see the same ones."""
    return torch.cat(list(iter_batches(inputs, n, batch_size)))


def evaluate_outputs(
    q_images: torch.Tensor,
    fp_images: torch.Tensor,
    real: Optional[torch.Tensor],
    extractor: ExtractorSpec,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> Evaluation:
    """Metrics from already generated images (lets a caller reuse the float outputs)."""
    fid_value = fid(q_images, real, extractor=extractor, batch_size=batch_size).value if real is not None else None
    return Evaluation(
        fid=fid_value,
        qfid=fid(q_images, fp_images, extractor=extractor, batch_size=batch_size, name="qfid").value,
        psnr=psnr(q_images, fp_images),
        n=q_images.shape[0],
        extractor=extractor.label,
        extractor_sha256=extractor.weights_sha256,
    )


def evaluate(
    qmodel: nn.Module,
    model: nn.Module,
    inputs: InputSource,
    n: int = 1000,
    real: Optional[torch.Tensor] = None,
    extractor: Optional[ExtractorSpec] = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool = True,
) -> Evaluation:
    """FID / qFID / PSNR of ``qmodel`` against the float ``model`` over ``n`` shared inputs."""
    size = getattr(model, "image_size", None)
    if isinstance(size, int) and isinstance(n, int):
        check_memory(n * 3 * size * size * 4 * 3, f"evaluating {n:,} images of {size}x{size} px")
    extractor = extractor or resolve_extractor()
    x = collect_inputs(inputs, n, batch_size)
    fp_images = generate(model, x, x.shape[0], batch_size=batch_size, progress=progress)
    q_images = generate(qmodel, x, x.shape[0], batch_size=batch_size, progress=progress)
    return evaluate_outputs(q_images, fp_images, real, extractor, batch_size)
