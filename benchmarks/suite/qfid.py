"""qFID of a suite noise-to-image generator: how far a method's images are from the float model's.

qFID (the paper's metric for noise-to-image generators) is the Fréchet distance between the
outputs of a quantized generator and of its float original for the same latents; 0 is a perfect
quantization. The features come from the package's offline demo CNN, which was trained on MNIST
digits (and textures), so they suit the suite's MNIST DCGAN; they are NOT Inception features,
and the values are not comparable with published FIDs (no Inception weights can be had offline).

It is computed on all test latents and on each half of them: a comparison that holds on the
whole set and on both halves is not an accident of which latents were drawn.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Union

import numpy as np
import torch
from torch import Tensor

from gan_brevitas.metrics.extractors import demo_cnn_spec
from gan_brevitas.metrics.fid import fid

#: Families scored by qFID besides PSNR.
QFID_FAMILIES = ("noise-to-image",)
#: This file's content, part of the benchmarks' cache keys (a change here measures qFID again).
SOURCE_SHA256 = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()


def qfid_scores(output: Union[Tensor, np.ndarray], reference: Union[Tensor, np.ndarray]) -> dict[str, object]:
    """``{"qfid": whole set, "qfid_halves": [first half, second half]}`` of ``output`` against
    ``reference`` (float images [N, C, H, W] in [-1, 1], the same latents in the same order)."""
    output, reference = torch.as_tensor(np.asarray(output)), torch.as_tensor(np.asarray(reference))
    if output.shape != reference.shape or output.shape[0] < 8:
        raise ValueError(f"qFID needs two image sets of the same shape with >= 8 images, got "
                         f"{tuple(output.shape)} and {tuple(reference.shape)}.")
    spec = demo_cnn_spec()
    half = output.shape[0] // 2

    def score(part: slice) -> float:
        return round(fid(output[part], reference[part], spec, cuda=False, name="qfid").value, 5)

    return {"qfid": score(slice(None)), "qfid_halves": [score(slice(0, half)), score(slice(half, None))]}
