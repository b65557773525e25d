"""The discriminator of the adversarial term: a given one (checked) or a fresh small one.

QAT trains a copy of the discriminator it is given (the demo models ship theirs); without one
it builds a fresh PatchGAN-style critic for the generator's output shape. Either way the
discriminator must accept the generator's output shape, which is checked before any file is
written.
"""

from __future__ import annotations

import copy
import logging

import torch
from torch import Tensor, nn

from gan_brevitas.errors import ConfigError

log = logging.getLogger(__name__)

LRELU_SLOPE = 0.2
#: Stop downsampling at this side: the score map stays a small patch grid (PatchGAN).
MIN_SIDE = 4
MAX_DOWNSAMPLINGS = 3


def fresh_discriminator(channels: int, size: int, width: int = 32, seed: int = 0) -> nn.Sequential:
    """A small PatchGAN critic for [B, channels, size, size] images in [-1, 1].

    Conv 4x4 stride 2 + LeakyReLU(0.2) while the side stays >= 4 (at most 3 times, widths
    doubling), then a 3x3 conv to one score per patch. Initialised from ``seed`` without
    touching the global RNG.
    """
    if channels < 1 or size < 1:
        raise ConfigError(f"cannot build a discriminator for images of {channels} channels, side {size}.")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        layers: list[nn.Module] = []
        in_ch, out_ch, side = channels, width, size
        for _ in range(MAX_DOWNSAMPLINGS):
            if side // 2 < MIN_SIDE:
                break
            layers += [nn.Conv2d(in_ch, out_ch, 4, 2, 1), nn.LeakyReLU(LRELU_SLOPE)]
            in_ch, out_ch, side = out_ch, out_ch * 2, side // 2
        if not layers:  # tiny images: one stride-1 feature layer so the critic still has features
            layers += [nn.Conv2d(in_ch, out_ch, 3, 1, 1), nn.LeakyReLU(LRELU_SLOPE)]
            in_ch = out_ch
        layers.append(nn.Conv2d(in_ch, 1, 3, 1, 1))
        model = nn.Sequential(*layers)
    return model


def _describe(shape: tuple[int, ...]) -> str:
    return "[B, " + ", ".join(str(s) for s in shape) + "]"


def check_discriminator(discriminator: nn.Module, sample: Tensor) -> None:
    """Raise ConfigError unless ``discriminator`` accepts generator outputs like ``sample``.

    Checks the declared ``in_channels`` / ``image_size`` attributes when the discriminator has
    them, then runs it (on a copy, so no state such as spectral-norm vectors moves) on the
    sample and requires finite scores.
    """
    shape = tuple(sample.shape[1:])
    declared_channels = getattr(discriminator, "in_channels", None)
    if isinstance(declared_channels, int) and len(shape) == 3 and declared_channels != shape[0]:
        raise ConfigError(
            f"the discriminator takes {declared_channels}-channel images but the generator outputs "
            f"{_describe(shape)}: give a discriminator for the generator's output, or none for a fresh one."
        )
    declared_size = getattr(discriminator, "image_size", None)
    if isinstance(declared_size, int) and len(shape) == 3 and declared_size != shape[-1]:
        raise ConfigError(
            f"the discriminator takes {declared_size}x{declared_size} images but the generator "
            f"outputs {_describe(shape)}: give a discriminator for the generator's output, or none "
            "for a fresh one."
        )
    probe = copy.deepcopy(discriminator)
    try:
        with torch.no_grad():
            scores = probe(sample)
    except (RuntimeError, ValueError, TypeError) as err:
        raise ConfigError(
            f"the discriminator does not accept the generator's output shape {_describe(shape)}: "
            f"{str(err).splitlines()[0]}. Give a discriminator built for that shape, or none for a fresh one."
        ) from None
    if isinstance(scores, (tuple, list)):
        scores = scores[0]
    if not torch.is_tensor(scores) or scores.numel() == 0 or not torch.isfinite(scores).all():
        raise ConfigError(
            "the discriminator must return a finite score tensor for generator outputs of shape "
            f"{_describe(shape)}."
        )


def discriminator_scores(output: object) -> Tensor:
    """Scores from a discriminator's output (the first element when it returns a tuple)."""
    return output[0] if isinstance(output, (tuple, list)) else output  # type: ignore[return-value]
