"""Generator inputs given by the user: a sampler, a tensor, or an iterable of batches.

Every consumer (calibration, reconstruction, training data, metrics) reads inputs through
`iter_batches`, so the three forms behave the same everywhere and bad data fails the same way.
"""

from __future__ import annotations

import logging
from typing import Callable, Iterable, Iterator, Optional, Sequence, Union

import torch
from torch import Tensor

from gan_brevitas.errors import CalibrationError
from gan_brevitas.limits import check_samples

#: A callable ``sampler(batch_size) -> batch``, one tensor of all inputs, or an iterable of batches.
InputSource = Union[Callable[[int], Tensor], Tensor, Iterable[Tensor]]

log = logging.getLogger(__name__)

#: An iterable that yields this many empty batches in a row is broken (it would never end).
MAX_EMPTY_BATCHES = 100


def _first_tensor(batch: object) -> Tensor:
    """Batches from a DataLoader may be (inputs, labels) pairs: keep the inputs."""
    if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], Tensor):
        return batch[0]
    if not isinstance(batch, Tensor):
        raise CalibrationError(
            f"an input batch is a {type(batch).__name__}, not a tensor: give latents or images as "
            "torch tensors (or a sampler returning them)."
        )
    return batch


def check_finite(batch: Tensor, index: int) -> Tensor:
    """Raise a CalibrationError naming the batch if it holds NaN or Inf."""
    if batch.is_floating_point() and not torch.isfinite(batch).all():
        bad = int((~torch.isfinite(batch)).sum())
        raise CalibrationError(
            f"input batch {index} contains {bad} NaN/Inf value(s): clean the calibration data "
            "(or fix the sampler) before quantizing."
        )
    return batch


def _raw_batches(inputs: InputSource, batch_size: int) -> Iterator[Tensor]:
    if isinstance(inputs, Tensor):
        if inputs.dim() == 0:
            raise CalibrationError("the inputs tensor is a scalar: give a batch [N, ...] of inputs.")
        yield from inputs.split(batch_size)
    elif callable(inputs):
        while True:
            batch = _first_tensor(inputs(batch_size))
            if batch.dim() == 0 or batch.shape[0] == 0:
                raise CalibrationError(
                    f"the sampler returned {'a scalar' if batch.dim() == 0 else 'an empty batch'} "
                    f"(shape {tuple(batch.shape)}) for batch_size={batch_size}: it must return "
                    f"[{batch_size}, ...] inputs."
                )
            yield batch
    else:
        try:
            iterator = iter(inputs)
        except TypeError:
            raise CalibrationError(
                f"inputs of type {type(inputs).__name__} are neither a sampler, a tensor nor an "
                "iterable of batches."
            ) from None
        for batch in iterator:
            yield _first_tensor(batch)


def iter_batches(inputs: InputSource, n: int, batch_size: int) -> Iterator[Tensor]:
    """Yield batches of at most ``batch_size`` rows, ``n`` rows in all (fewer if ``inputs`` ends).

    Raises CalibrationError for no data at all and for NaN/Inf in any batch.
    """
    if n <= 0:
        raise CalibrationError(f"the number of samples must be positive, got {n}.")
    if batch_size <= 0:
        raise CalibrationError(f"batch_size must be positive, got {batch_size}.")
    check_samples(n)
    seen, empty_in_a_row = 0, 0
    for index, batch in enumerate(_raw_batches(inputs, batch_size)):
        batch = check_finite(_first_tensor(batch), index)
        if batch.dim() == 0:
            raise CalibrationError(f"input batch {index} is a scalar: give batches [N, ...] of inputs.")
        if batch.shape[0] == 0:
            empty_in_a_row += 1
            if empty_in_a_row >= MAX_EMPTY_BATCHES:
                raise CalibrationError(
                    f"the inputs gave {empty_in_a_row} empty batches in a row (after {seen} samples): "
                    "fix the data source so that it yields non-empty batches."
                )
            continue
        empty_in_a_row = 0
        for chunk in batch.split(batch_size):
            take = chunk[: n - seen]
            seen += take.shape[0]
            yield take
            if seen >= n:
                return
    if seen == 0:
        raise CalibrationError(
            "the calibration inputs are empty: give at least one latent / image batch."
        )
    log.warning("inputs ended after %d of the %d requested samples; using those.", seen, n)


def latent_sampler(
    latent_dim: Union[int, Sequence[int]], seed: int = 0, device: str = "cpu"
) -> Callable[[int], Tensor]:
    """A deterministic standard-normal sampler ``sampler(batch_size) -> [B, latent_dim]``
    (``latent_dim`` may be a shape, e.g. (100, 1, 1) for DCGAN-style generators)."""
    generator = torch.Generator().manual_seed(seed)
    shape = (latent_dim,) if isinstance(latent_dim, int) else tuple(latent_dim)

    def sample(batch_size: int) -> Tensor:
        return torch.randn(batch_size, *shape, generator=generator).to(device)

    return sample


def input_shape_of(inputs: InputSource) -> Optional[tuple[int, ...]]:
    """The shape of one input (no batch axis), read without consuming a one-shot iterator.

    A tensor gives it directly, a sampler is asked for one more input, a re-iterable (list,
    DataLoader) for its first batch; a one-shot iterator gives None (it was used up already).
    """
    if isinstance(inputs, Tensor):
        return tuple(inputs.shape[1:]) if inputs.dim() > 1 else None
    if callable(inputs):
        return tuple(_first_tensor(inputs(1)).shape[1:])
    if isinstance(inputs, Iterable) and iter(inputs) is not inputs:
        for batch in inputs:
            return tuple(_first_tensor(batch).shape[1:])
    return None


def _resize_and_crop(image, height: int, width: int):
    """Scale so the image covers height x width, then cut the centre: no distortion."""
    from PIL import Image

    scale = max(height / image.height, width / image.width)
    size = (max(width, round(image.width * scale)), max(height, round(image.height * scale)))
    image = image.resize(size, Image.BICUBIC)
    left, top = (size[0] - width) // 2, (size[1] - height) // 2
    return image.crop((left, top, left + width, top + height))


def load_image_folder(folder: str, size: Union[int, tuple[int, int]], limit: Optional[int] = None) -> Tensor:
    """Images (png/jpg/bmp) of a folder, sorted by name, in [-1, 1], [N, 3, H, W].

    Each is scaled so that it covers ``size`` (side, or (height, width)) and centre-cropped to
    it, so photos of another aspect ratio are not distorted.
    """
    from pathlib import Path

    import numpy as np
    from PIL import Image

    height, width = (size, size) if isinstance(size, int) else size
    if not Path(folder).is_dir():
        raise CalibrationError(f"image folder {folder} does not exist (or is not a folder).")
    paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg", ".bmp"})
    if limit is not None:
        paths = paths[:limit]
    if not paths:
        raise CalibrationError(f"no .png/.jpg/.bmp images found in {folder}.")
    images = []
    for path in paths:
        try:
            with Image.open(path) as image:
                array = np.asarray(_resize_and_crop(image.convert("RGB"), height, width), dtype=np.float32)
        except (OSError, ValueError, Image.DecompressionBombError) as err:
            raise CalibrationError(
                f"cannot read the image {path} ({type(err).__name__}: {err}): remove or replace it, "
                "or point --images at a folder of valid PNG/JPEG/BMP files."
            ) from None
        images.append(torch.from_numpy(array).permute(2, 0, 1) / 127.5 - 1.0)
    return torch.stack(images)


def expected_input_shape(model: object) -> Optional[tuple[Optional[int], ...]]:
    """The per-sample input shape a generator declares (``input_kind`` with ``latent_dim`` or
    ``in_channels``): (latent_dim,) or (channels, None, None); None when it declares nothing."""
    kind = getattr(model, "input_kind", None)
    if kind == "latent" and isinstance(getattr(model, "latent_dim", None), int):
        return (model.latent_dim,)
    if kind == "image" and isinstance(getattr(model, "in_channels", None), int):
        return (model.in_channels, None, None)
    return None


def _check_shape(batch: Tensor, expected: tuple[Optional[int], ...]) -> Tensor:
    tensor = batch[0] if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], Tensor) else batch
    if not isinstance(tensor, Tensor) or tensor.dim() == 0 or tensor.shape[0] == 0:
        return batch  # iter_batches gives the error for these
    found = tuple(tensor.shape[1:])
    fits = len(found) == len(expected) and all(e is None or e == f for e, f in zip(expected, found))
    if not fits:
        shown = ", ".join("H" if e is None and i == 1 else "W" if e is None else str(e) for i, e in enumerate(expected))
        what = "latents" if len(expected) == 1 else "images"
        raise CalibrationError(
            f"an input batch has shape {tuple(tensor.shape)}, but this generator expects {what} of shape "
            f"[N, {shown}]: give inputs of that shape (e.g. latent_sampler({expected[0]}) for latents, "
            f"{expected[0]}-channel images for image generators)."
        )
    return batch


class _ShapeChecked:
    """An iterable of batches whose every batch is shape-checked as it is read."""

    def __init__(self, inputs: Iterable[Tensor], expected: tuple[Optional[int], ...]) -> None:
        self.inputs, self.expected = inputs, expected

    def __iter__(self) -> Iterator[Tensor]:
        for batch in self.inputs:
            yield _check_shape(batch, self.expected)


def shape_checked(inputs: InputSource, model: object) -> InputSource:
    """``inputs`` in the same form, each batch checked against the shape ``model`` declares.

    A tensor is checked at once; a sampler's or an iterable's batches when they are drawn (so
    nothing extra is drawn and results are unchanged), always before the model sees them.
    """
    expected = expected_input_shape(model)
    if expected is None:
        return inputs
    if isinstance(inputs, Tensor):
        return _check_shape(inputs, expected)
    if callable(inputs):
        sampler = inputs
        return lambda batch_size: _check_shape(sampler(batch_size), expected)
    return _ShapeChecked(inputs, expected)
