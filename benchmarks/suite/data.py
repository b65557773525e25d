"""Calibration and held-out test inputs for the suite: scikit-image photos and fixed latents.

The calibration photos and the test photos are different pictures (no crop of a test photo is
ever used to calibrate). Each photo is centre-cropped to a square and resized; super-resolution
models get the x4 bicubic (antialiased) downscale of that square as input.
"""

from __future__ import annotations

import numpy as np
import torch
from skimage import data as skdata
from torch import Tensor
from torch.nn import functional as F

#: Eight calibration photos and four held-out test photos, by scikit-image loader name.
CALIBRATION_PHOTOS = ("rocket", "hubble_deep_field", "retina", "immunohistochemistry",
                      "camera", "coins", "grass", "gravel")  # fmt: skip
TEST_PHOTOS = ("astronaut", "chelsea", "coffee", "stereo_motorcycle")

CALIBRATION_SEED = 0
TEST_SEED = 1


def _photo(name: str) -> np.ndarray:
    image = getattr(skdata, name)()
    if name == "stereo_motorcycle":  # (left, right, disparity): the left view
        image = image[0]
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    return image[..., :3]


def _square(image: np.ndarray, size: int) -> Tensor:
    """Centre square of ``image`` resized to ``size`` px: (3, size, size) float in [0, 1]."""
    height, width = image.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    crop = image[top : top + side, left : left + side]
    tensor = torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1).float() / 255.0
    resized = F.interpolate(tensor[None], size=(size, size), mode="bicubic", antialias=True)
    return resized[0].clamp(0.0, 1.0)


def photos(names: tuple[str, ...], size: int) -> Tensor:
    """(N, 3, size, size) photos in [0, 1]."""
    return torch.stack([_square(_photo(name), size) for name in names])


def downscale(images: Tensor, factor: int) -> Tensor:
    """Bicubic antialiased downscale by ``factor``, clamped to [0, 1]."""
    size = images.shape[-1] // factor
    return F.interpolate(images, size=(size, size), mode="bicubic", antialias=True).clamp(0.0, 1.0)


def latents(n: int, dim: int, seed: int) -> Tensor:
    """(n, dim) standard normal latents from a fixed seed."""
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))


#: Seed of the training inputs a QAT method draws (crops of the calibration photos, or latents).
TRAINING_SEED = 2


class CalibrationCrops:
    """Training inputs for QAT: random square crops of the CALIBRATION photos (never a test
    photo), each side between ``size x factor`` px and the photo's short side, resized to
    ``size x factor`` and then downscaled by ``factor`` (1: no downscale); values in [0, 1].
    Called with a batch size, like any `gan_brevitas.inputs` sampler."""

    def __init__(self, size: int, factor: int = 1, seed: int = TRAINING_SEED) -> None:
        self.size, self.factor = size, factor
        self.photos = [torch.from_numpy(np.ascontiguousarray(_photo(name))).permute(2, 0, 1).float() / 255.0
                       for name in CALIBRATION_PHOTOS]  # fmt: skip
        self.rng = torch.Generator().manual_seed(seed)

    def _int(self, low: int, high: int) -> int:
        return int(torch.randint(low, high + 1, (1,), generator=self.rng))

    def crop(self) -> Tensor:
        photo = self.photos[self._int(0, len(self.photos) - 1)]
        side, (height, width) = self.size * self.factor, photo.shape[1:]
        crop_side = self._int(min(side, height, width), min(height, width))
        top, left = self._int(0, height - crop_side), self._int(0, width - crop_side)
        crop = photo[None, :, top : top + crop_side, left : left + crop_side]
        image = F.interpolate(crop, size=(side, side), mode="bicubic", antialias=True)
        if self.factor > 1:
            image = F.interpolate(image, size=(self.size, self.size), mode="bicubic", antialias=True)
        return image[0].clamp(0.0, 1.0)

    def __call__(self, batch_size: int) -> Tensor:
        return torch.stack([self.crop() for _ in range(batch_size)])
