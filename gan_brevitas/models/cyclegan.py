"""ResNet generator with the parameter layout of junyanz's pytorch-CycleGAN-and-pix2pix.

One ``nn.Sequential`` named ``model``; with the defaults (ngf 64, 9 blocks) its indices are::

    0 ReflectionPad2d(3)   1 Conv2d(3, 64, 7)    2 norm  3 ReLU
    4 Conv2d(64, 128, 3, s2, p1)                 5 norm  6 ReLU
    7 Conv2d(128, 256, 3, s2, p1)                8 norm  9 ReLU
    10..18 ResnetBlock(256)
    19 ConvTranspose2d(256, 128, 3, s2, p1, output_padding 1)   20 norm  21 ReLU
    22 ConvTranspose2d(128, 64, ...)                             23 norm  24 ReLU
    25 ReflectionPad2d(3)  26 Conv2d(64, 3, 7)   27 Tanh

norm="instance" (CycleGAN's setting): InstanceNorm2d without affine parameters or running
statistics, and every conv has a bias. norm="batch": BatchNorm2d(affine) and convs before a
norm have no bias (the final conv keeps its bias), as in the reference.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from gan_brevitas.errors import ConfigError

NORMS = ("instance", "batch")
N_DOWNSAMPLING = 2


def _norm_layer(norm: str, channels: int) -> nn.Module:
    if norm == "instance":
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    return nn.BatchNorm2d(channels, affine=True)


class ResnetBlock(nn.Module):
    """x + conv_block(x), conv_block = [ReflPad1, Conv3, norm, ReLU, (Dropout), ReflPad1,
    Conv3, norm]; the convs are at indices 1 and 5 (6 with dropout)."""

    def __init__(self, dim: int, norm: str, use_dropout: bool = False) -> None:
        super().__init__()
        use_bias = norm == "instance"
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, kernel_size=3, padding=0, bias=use_bias),
            _norm_layer(norm, dim),
            nn.ReLU(True),
        ]
        if use_dropout:
            layers.append(nn.Dropout(0.5))
        layers += [
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, kernel_size=3, padding=0, bias=use_bias),
            _norm_layer(norm, dim),
        ]
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv_block(x)


def _resnet_layers(input_nc: int, output_nc: int, ngf: int, n_blocks: int, norm: str, use_dropout: bool
                   ) -> list[nn.Module]:
    """The reference generator's layers in the order of its checkpoints' ``model.N`` keys:
    a 7x7 stem, two stride-2 downsamplings, the residual blocks, two ConvTranspose
    upsamplings and a 7x7 Tanh head."""
    use_bias = norm == "instance"
    layers: list[nn.Module] = [
        nn.ReflectionPad2d(3),
        nn.Conv2d(input_nc, ngf, kernel_size=7, padding=0, bias=use_bias),
        _norm_layer(norm, ngf),
        nn.ReLU(True),
    ]
    for i in range(N_DOWNSAMPLING):
        width = ngf * 2**i
        layers += [
            nn.Conv2d(width, width * 2, kernel_size=3, stride=2, padding=1, bias=use_bias),
            _norm_layer(norm, width * 2),
            nn.ReLU(True),
        ]
    width = ngf * 2**N_DOWNSAMPLING
    layers += [ResnetBlock(width, norm, use_dropout) for _ in range(n_blocks)]
    for i in range(N_DOWNSAMPLING):
        width = ngf * 2 ** (N_DOWNSAMPLING - i)
        layers += [
            nn.ConvTranspose2d(width, width // 2, kernel_size=3, stride=2, padding=1, output_padding=1, bias=use_bias),
            _norm_layer(norm, width // 2),
            nn.ReLU(True),
        ]
    return layers + [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, kernel_size=7, padding=0), nn.Tanh()]


class ResnetGenerator(nn.Module):
    """CycleGAN generator: 2 downsamplings, ``n_blocks`` residual blocks, 2 upsamplings.

    Args:
        input_nc / output_nc: image channels in and out (3, 3).
        ngf: width of the first conv (64); the residual blocks have 4 * ngf channels.
        n_blocks: residual blocks (9 for 256 px CycleGAN, 6 for 128 px).
        norm: "instance" (CycleGAN) or "batch".
        use_dropout: dropout(0.5) inside each residual block (off for CycleGAN).
        image_size: the side of the images callers should feed (the net itself is fully
            convolutional; sides must be multiples of 4).

    Attributes ``input_kind`` ("image"), ``in_channels`` and ``image_size`` describe the input:
    images of shape [B, in_channels, image_size, image_size] in [-1, 1].
    """

    input_kind = "image"

    def __init__(
        self,
        input_nc: int = 3,
        output_nc: int = 3,
        ngf: int = 64,
        n_blocks: int = 9,
        norm: str = "instance",
        use_dropout: bool = False,
        image_size: int = 256,
    ) -> None:
        super().__init__()
        if norm not in NORMS:
            raise ConfigError(f"CycleGAN norm must be one of {NORMS}, got {norm!r}")
        if min(input_nc, output_nc, ngf) < 1 or n_blocks < 0:
            raise ConfigError(
                "CycleGAN needs input_nc, output_nc, ngf >= 1 and n_blocks >= 0, got "
                f"{input_nc}, {output_nc}, {ngf}, {n_blocks}"
            )
        if image_size % (2**N_DOWNSAMPLING) != 0:
            raise ConfigError(f"CycleGAN image_size must be a multiple of 4, got {image_size}")
        self.input_nc = input_nc
        self.in_channels = input_nc
        self.output_nc = output_nc
        self.ngf = ngf
        self.n_blocks = n_blocks
        self.norm = norm
        self.image_size = image_size
        self.model = nn.Sequential(*_resnet_layers(input_nc, output_nc, ngf, n_blocks, norm, use_dropout))

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


def infer_kwargs(state: Mapping[str, Tensor]) -> dict[str, Any]:
    """Constructor arguments that a checkpoint's shapes reveal (the rest keep their defaults)."""
    kwargs: dict[str, Any] = {}
    first = state.get("model.1.weight")
    if first is None or first.ndim != 4:
        return kwargs
    kwargs["ngf"] = int(first.shape[0])
    kwargs["input_nc"] = int(first.shape[1])
    blocks = {
        int(match.group(1))
        for key in state
        if (match := re.fullmatch(r"model\.(\d+)\.conv_block\.1\.weight", key))
    }
    kwargs["n_blocks"] = len(blocks)
    kwargs["norm"] = "batch" if "model.2.weight" in state else "instance"
    if blocks:
        second = state.get(f"model.{min(blocks)}.conv_block.6.weight")
        kwargs["use_dropout"] = second is not None and second.ndim == 4
    convs = [
        (int(match.group(1)), value)
        for key, value in state.items()
        if (match := re.fullmatch(r"model\.(\d+)\.weight", key)) and value.ndim == 4
    ]
    kwargs["output_nc"] = int(max(convs, key=lambda item: item[0])[1].shape[0])
    return kwargs
