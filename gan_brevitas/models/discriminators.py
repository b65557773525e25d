"""Small discriminators for the demo generators (32 px images in [-1, 1]).

Quantization-aware training of a generator needs its discriminator, so the demo keeps one per
model. Two families:

* :class:`ConvDiscriminator`: the "standard CNN" discriminator of the spectral-norm GAN paper
  (Miyato et al. 2018, used for CIFAR-10 at 32 px): pairs of 3x3 / 4x4-stride-2 convolutions,
  LeakyReLU(0.1), every layer spectrally normalised, then a minibatch-stddev channel (ProGAN)
  and one linear score. Used by the StyleGAN and SAGAN demos (unconditional MNIST digits).
* :class:`NLayerDiscriminator`: junyanz's PatchGAN (pytorch-CycleGAN-and-pix2pix, same
  ``model`` Sequential layout and indices), one real/fake score per overlapping patch. Used by
  the CycleGAN demo (is this patch brick?).

Spectral norm uses ``torch.nn.utils.parametrizations.spectral_norm``: the power iteration
only runs in train mode, so an eval-mode discriminator scores deterministically.
``build_discriminator(name, **kwargs)`` builds the one that goes with a demo generator.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

from gan_brevitas.errors import ConfigError

__all__ = [
    "DISCRIMINATORS",
    "ConvDiscriminator",
    "NLayerDiscriminator",
    "build_discriminator",
    "minibatch_stddev",
]

LRELU_SLOPE_SN = 0.1  # SN-GAN's standard CNN
LRELU_SLOPE_PATCH = 0.2  # junyanz's PatchGAN
PATCH_KERNEL = 4


def _maybe_sn(layer: nn.Module, spectral: bool) -> nn.Module:
    return spectral_norm(layer) if spectral else layer


def _conv(in_channels: int, out_channels: int, kernel: int, stride: int, padding: int, spectral: bool) -> nn.Module:
    return _maybe_sn(nn.Conv2d(in_channels, out_channels, kernel, stride, padding), spectral)


def minibatch_stddev(x: Tensor, group_size: int) -> Tensor:
    """Append one channel: the feature standard deviation within groups of samples (ProGAN).

    The batch is split into groups of ``group_size`` samples (the largest size <= group_size
    that divides the batch); each sample gets its group's std averaged over channels and
    positions, as a constant [1, H, W] map. A generator whose samples all look alike has a
    visibly low value, so the discriminator can penalise mode collapse. A batch of one sample
    gets the value sqrt(1e-8) ~ 0.
    """
    batch, channels, height, width = x.shape
    group = min(group_size, batch)
    while batch % group:
        group -= 1
    grouped = x.reshape(group, batch // group, channels, height, width)
    std = torch.sqrt(grouped.var(dim=0, unbiased=False) + 1e-8).mean(dim=(1, 2, 3))  # [batch / group]
    stat = std.repeat(group).reshape(batch, 1, 1, 1).expand(batch, 1, height, width)
    return torch.cat([x, stat], dim=1)


class ConvDiscriminator(nn.Module):
    """SN-GAN standard CNN discriminator with a minibatch-stddev head; one logit per image, [B].

    Layout at 32 px (LeakyReLU 0.1; every conv / linear spectrally normalised unless
    ``spectral=False``)::

        features   3x3 (3 -> ch)        4x4/2 (ch -> 2ch)      32 -> 16
                   3x3 (2ch -> 2ch)     4x4/2 (2ch -> 4ch)     16 -> 8
                   3x3 (4ch -> 4ch)     4x4/2 (4ch -> 8ch)      8 -> 4
        head       minibatch stddev (+1 channel), 3x3 (8ch + 1 -> 8ch)
        score      linear(8ch * 4 * 4 -> 1)

    The minibatch-stddev channel (ProGAN / StyleGAN's discriminator) is what keeps the small
    demo generators from collapsing to a few digits: without it, SAGAN collapsed to a single
    image within 200 steps. It makes a score depend on the other images of its group (groups
    of ``group_size``); score single images (batch 1) for a batch-independent value.

    Args:
        image_size: input side, a multiple of 8 (32 for the demos).
        in_channels: image channels (3).
        ch: base width (SN-GAN uses 64; the demos use 16, about 0.4 M parameters: plenty for
            32 px digits and fast to train on a CPU).
        group_size: minibatch-stddev group size (4, as StyleGAN); 0 turns the channel off.
        spectral: spectral norm on every layer (SN-GAN, used with SAGAN). StyleGAN's own
            discriminator has none and relies on the R1 penalty alone: with both, the StyleGAN
            demo's discriminator was too smooth to push its generator off a few digits.
    """

    def __init__(
        self, image_size: int = 32, in_channels: int = 3, ch: int = 32, group_size: int = 4, spectral: bool = True
    ) -> None:
        super().__init__()
        if image_size < 8 or image_size % 8 != 0:
            raise ConfigError(f"ConvDiscriminator image_size must be a multiple of 8, got {image_size}")
        if ch < 1 or in_channels < 1 or group_size < 0:
            raise ConfigError(
                "ConvDiscriminator needs ch >= 1, in_channels >= 1 and group_size >= 0, got "
                f"{ch}, {in_channels}, {group_size}"
            )
        self.image_size = image_size
        self.in_channels = in_channels
        self.group_size = group_size
        widths = (ch, 2 * ch, 4 * ch, 8 * ch)
        layers: list[nn.Module] = []
        previous = in_channels
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            layers += [
                _conv(previous, c_in, 3, 1, 1, spectral),
                nn.LeakyReLU(LRELU_SLOPE_SN),
                _conv(c_in, c_out, 4, 2, 1, spectral),
                nn.LeakyReLU(LRELU_SLOPE_SN),
            ]
            previous = c_out
        self.features = nn.Sequential(*layers)
        extra = 1 if group_size > 0 else 0
        self.head = nn.Sequential(
            _conv(widths[-1] + extra, widths[-1], 3, 1, 1, spectral), nn.LeakyReLU(LRELU_SLOPE_SN)
        )
        final_side = image_size // 8
        self.score = _maybe_sn(nn.Linear(widths[-1] * final_side * final_side, 1), spectral)

    def forward(self, x: Tensor) -> Tensor:
        """x: [B, in_channels, S, S] in [-1, 1]. Returns logits [B] (higher = judged real)."""
        features = self.features(x)
        if self.group_size > 0:
            features = minibatch_stddev(features, self.group_size)
        return self.score(self.head(features).flatten(1)).squeeze(1)


class NLayerDiscriminator(nn.Module):
    """junyanz's PatchGAN; ``forward(x)`` returns a map of patch logits [B, 1, H', W'].

    ``model`` indices (n_layers = 2, instance norm)::

        0 Conv(3, ndf, 4, s2, p1)   1 LeakyReLU(0.2)
        2 Conv(ndf, 2ndf, 4, s2, p1)   3 norm   4 LeakyReLU
        5 Conv(2ndf, 4ndf, 4, s1, p1)  6 norm   7 LeakyReLU
        8 Conv(4ndf, 1, 4, s1, p1)

    With ``norm="instance"`` (CycleGAN) the norms have no parameters and every conv has a bias,
    as in the reference. A 32 px input gives a 6x6 map with n_layers = 2 (each logit sees a 34 px
    receptive field, the whole crop); n_layers = 3 is the reference's 70 px PatchGAN.

    Args:
        input_nc: image channels (3).
        ndf: width of the first conv (64 in the reference).
        n_layers: stride-2 convolutions (3 in the reference; 2 suits 32 px).
        norm: "instance" or "batch".
    """

    def __init__(self, input_nc: int = 3, ndf: int = 64, n_layers: int = 3, norm: str = "instance") -> None:
        super().__init__()
        if norm not in ("instance", "batch"):
            raise ConfigError(f"NLayerDiscriminator norm must be 'instance' or 'batch', got {norm!r}")
        if input_nc < 1 or ndf < 1 or n_layers < 1:
            raise ConfigError(
                f"NLayerDiscriminator needs input_nc, ndf, n_layers >= 1, got {input_nc}, {ndf}, {n_layers}"
            )
        self.input_nc = input_nc
        self.in_channels = input_nc
        use_bias = norm == "instance"

        def norm_layer(channels: int) -> nn.Module:
            if norm == "instance":
                return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
            return nn.BatchNorm2d(channels)

        layers: list[nn.Module] = [
            nn.Conv2d(input_nc, ndf, PATCH_KERNEL, stride=2, padding=1),
            nn.LeakyReLU(LRELU_SLOPE_PATCH, True),
        ]
        mult = 1
        for n in range(1, n_layers):
            previous, mult = mult, min(2**n, 8)
            layers += [
                nn.Conv2d(ndf * previous, ndf * mult, PATCH_KERNEL, stride=2, padding=1, bias=use_bias),
                norm_layer(ndf * mult),
                nn.LeakyReLU(LRELU_SLOPE_PATCH, True),
            ]
        previous, mult = mult, min(2**n_layers, 8)
        layers += [
            nn.Conv2d(ndf * previous, ndf * mult, PATCH_KERNEL, stride=1, padding=1, bias=use_bias),
            norm_layer(ndf * mult),
            nn.LeakyReLU(LRELU_SLOPE_PATCH, True),
            nn.Conv2d(ndf * mult, 1, PATCH_KERNEL, stride=1, padding=1),
        ]
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """x: [B, input_nc, S, S] in [-1, 1]. Returns patch logits [B, 1, H', W']."""
        return self.model(x)


#: Discriminator kind -> class (the kinds are what the demo checkpoints' JSON records).
DISCRIMINATORS: dict[str, type[nn.Module]] = {
    "conv": ConvDiscriminator,
    "patch": NLayerDiscriminator,
}


def build_discriminator(kind: str, **kwargs: Any) -> nn.Module:
    """Build a freshly initialised discriminator of ``kind`` ("conv" or "patch")."""
    try:
        cls = DISCRIMINATORS[kind]
    except KeyError:
        raise ConfigError(f"unknown discriminator {kind!r}; choose one of {sorted(DISCRIMINATORS)}") from None
    signature = inspect.signature(cls)
    try:
        signature.bind(**kwargs)
    except TypeError as err:
        raise ConfigError(
            f"bad arguments for discriminator {kind!r}: {err}; it accepts: {', '.join(signature.parameters)}"
        ) from None
    return cls(**kwargs)
