"""PSNR between quantized and full-precision generator outputs.

A pixel-level companion to qFID: qFID says whether the quantized generator's images are
distributed like the original's, PSNR how close each image is to its full-precision twin.
"""

from __future__ import annotations

import math

import torch

from gan_brevitas.errors import MetricError

__all__ = ["PSNR_CAP_DB", "psnr"]

# Identical images have infinite PSNR; each image's PSNR is capped here so that one identical
# pair (e.g. a saturated output) does not turn the mean into inf. 100 dB is an MSE of 4e-10
# on [-1, 1] images, far below the 8-bit quantization step of the saved images.
PSNR_CAP_DB = 100.0


def psnr(a: torch.Tensor, b: torch.Tensor, data_range: float = 2.0) -> float:
    """Mean over images of the per-image PSNR in dB, capped at PSNR_CAP_DB.

    Args:
        a, b: images of the same shape, [N, C, H, W] (or one image [C, H, W]); float, [-1, 1]
            by the package convention. Values are compared as given (no clamping).
        data_range: max - min of the pixel range (2.0 for [-1, 1], 255 for uint8 data).
    """
    if not (torch.is_tensor(a) and torch.is_tensor(b)):
        raise MetricError(f"psnr expects two tensors, got {type(a).__name__} and {type(b).__name__}.")
    if a.shape != b.shape:
        raise MetricError(f"psnr compares images pairwise; shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}.")
    if a.dim() == 3:
        a, b = a.unsqueeze(0), b.unsqueeze(0)
    if a.dim() != 4 or a.numel() == 0:
        raise MetricError(f"psnr expects non-empty images [N, C, H, W] or [C, H, W], got shape {tuple(a.shape)}.")
    if not (math.isfinite(data_range) and data_range > 0):
        raise MetricError(f"data_range must be a positive number (2.0 for [-1, 1] images), got {data_range!r}.")
    a64, b64 = a.detach().to("cpu", torch.float64), b.detach().to("cpu", torch.float64)
    if not (torch.isfinite(a64).all() and torch.isfinite(b64).all()):
        raise MetricError("psnr inputs contain NaN or inf; check the generator (or its quantization) first.")
    mse = (a64 - b64).square().flatten(1).mean(dim=1)  # [N]
    floor = data_range**2 * 10.0 ** (-PSNR_CAP_DB / 10.0)  # the MSE at which PSNR reaches the cap
    per_image = 10.0 * torch.log10(data_range**2 / mse.clamp_min(floor))
    return float(per_image.mean())
