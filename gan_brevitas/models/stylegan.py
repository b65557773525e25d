"""Style-based generator with the parameter layout of rosinality's style-based-gan-pytorch.

Every parameter and persistent buffer has the name and shape that the public checkpoints use,
so ``load_state_dict(strict=True)`` accepts their files. The code is our own.

Layout (``StyledGenerator``)::

    style        Sequential(PixelNorm, [EqualLinear(code_dim, code_dim), LeakyReLU(0.2)] x n_mlp)
    generator    SynthesisNetwork
      progression.0..8   StyledConvBlock, 4 px ... 1024 px
      to_rgb.0..8        EqualConv2d(C_i, 3, 1)

The full progression always has 9 blocks so that reference files load strictly; ``size`` only
chooses the block at which the image is produced (``step = log2(size) - 2``).

Equalized learning rate: a layer stores ``weight_orig`` and uses ``weight_orig * sqrt(2 /
fan_in)`` in its forward (fan_in = in_channels * k * k). The layers here compute that product
explicitly instead of with a forward pre-hook; the result is the same tensor.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gan_brevitas.errors import CheckpointError, ConfigError

#: Channels of progression blocks 0..8 in the reference generator (4 px ... 1024 px).
REFERENCE_CHANNELS: tuple[int, ...] = (512, 512, 512, 512, 256, 128, 64, 32, 16)
#: Blocks from this index on use FusedUpsample when ``fused=True`` (reference default).
FIRST_FUSED_BLOCK = 5
NOISE_MODES = ("random", "const")
LRELU_SLOPE = 0.2


# --------------------------------------------------------------------------- math


def equal_lr_scale(fan_in: int) -> float:
    """He-init constant of the equalized learning rate: ``sqrt(2 / fan_in)``."""
    return math.sqrt(2.0 / fan_in)


def fused_upsample_kernel(weight: Tensor, multiplier: float) -> Tensor:
    """Effective transposed-conv kernel of ``FusedUpsample``.

    ``weight`` is [C_in, C_out, k, k]. The scaled kernel is zero padded by one pixel on each
    side and the four one-pixel shifts are averaged, giving a [C_in, C_out, k+1, k+1] kernel:
    a stride-2 transposed conv with it equals upsampling, conv and a 2x2 box filter in one op.
    """
    padded = F.pad(weight * multiplier, [1, 1, 1, 1])
    return (
        padded[:, :, 1:, 1:]
        + padded[:, :, :-1, 1:]
        + padded[:, :, 1:, :-1]
        + padded[:, :, :-1, :-1]
    ) / 4


def blur_kernel(channels: int) -> Tensor:
    """Depthwise [channels, 1, 3, 3] binomial filter ``[1, 2, 1] x [1, 2, 1] / 16``."""
    row = torch.tensor([1.0, 2.0, 1.0])
    kernel = torch.outer(row, row)
    kernel = kernel / kernel.sum()
    return kernel.view(1, 1, 3, 3).repeat(channels, 1, 1, 1)


def pixel_norm(x: Tensor, eps: float = 1e-8) -> Tensor:
    """Normalize each sample's feature vector to unit root-mean-square over dim 1."""
    return x / torch.sqrt(torch.mean(x**2, dim=1, keepdim=True) + eps)


def truncate_style(style: Tensor, mean_style: Tensor, weight: float) -> Tensor:
    """Truncation trick: move ``style`` towards ``mean_style`` (``weight`` 1 = unchanged)."""
    return mean_style + weight * (style - mean_style)


def step_for_size(size: int) -> int:
    """Progression step that outputs ``size`` px: 4 px -> 0, 128 px -> 5, 1024 px -> 8."""
    step = int(round(math.log2(size))) - 2 if size > 0 else -1
    if step < 0 or step >= len(REFERENCE_CHANNELS) or 4 * 2**step != size:
        raise ConfigError(
            f"StyleGAN size must be a power of two from 4 to 1024, got {size}; "
            "use e.g. size=128 (the paper's FFHQ thumbnails)"
        )
    return step


def resolve_channels(channels: int | Sequence[int] | None) -> tuple[int, ...]:
    """Channel counts of the 9 progression blocks.

    ``None`` gives the reference sizes; an int caps every block at that many channels (small
    models for tests and demos); a sequence must list all 9 counts.
    """
    if channels is None:
        return REFERENCE_CHANNELS
    if isinstance(channels, int):
        if channels < 1:
            raise ConfigError(f"StyleGAN channels must be >= 1, got {channels}")
        return tuple(min(c, channels) for c in REFERENCE_CHANNELS)
    resolved = tuple(int(c) for c in channels)
    if len(resolved) != len(REFERENCE_CHANNELS) or min(resolved) < 1:
        raise ConfigError(
            f"StyleGAN channels must be an int or {len(REFERENCE_CHANNELS)} positive counts "
            f"(one per progression block, 4 px ... 1024 px), got {list(resolved)}"
        )
    return resolved


# --------------------------------------------------------------------------- layers


class PixelNorm(nn.Module):
    """Normalizes latents to unit RMS; first layer of the mapping network. Stays float."""

    def forward(self, x: Tensor) -> Tensor:
        return pixel_norm(x)


class Blur(nn.Module):
    """Fixed depthwise 3x3 binomial blur, padding 1.

    Buffers ``weight`` and ``weight_flip`` ([C, 1, 3, 3]) are in the reference checkpoints; the
    kernel is symmetric so both hold the same values (the flip served the reference's custom
    backward). It is kept as its own module, not an ``nn.Conv2d``, so that a converter mapping
    ``nn.Conv2d`` does not quantize a fixed filter by accident.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        kernel = blur_kernel(channels)
        self.register_buffer("weight", kernel)
        self.register_buffer("weight_flip", torch.flip(kernel, [2, 3]))

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight, padding=1, groups=x.shape[1])


class EqualLRLinear(nn.Module):
    """Linear layer storing ``weight_orig`` [out, in]; uses ``weight_orig * sqrt(2 / in)``."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.in_features = in_dim
        self.out_features = out_dim
        self.weight_orig = nn.Parameter(torch.randn(out_dim, in_dim))
        self.bias = nn.Parameter(torch.zeros(out_dim))

    def effective_weight(self) -> Tensor:
        return self.weight_orig * equal_lr_scale(self.in_features)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.effective_weight(), self.bias)


class EqualLRConv2d(nn.Module):
    """Conv2d storing ``weight_orig`` [out, in, k, k]; uses ``weight_orig * sqrt(2/(in*k*k))``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, padding: int = 0):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.padding = padding
        self.weight_orig = nn.Parameter(
            torch.randn(out_channels, in_channels, kernel_size, kernel_size)
        )
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def effective_weight(self) -> Tensor:
        fan_in = self.in_channels * self.kernel_size * self.kernel_size
        return self.weight_orig * equal_lr_scale(fan_in)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.effective_weight(), self.bias, padding=self.padding)


class EqualLinear(nn.Module):
    """Reference wrapper: the equal-LR layer lives in child ``linear``."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.linear = EqualLRLinear(in_dim, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x)


class EqualConv2d(nn.Module):
    """Reference wrapper: the equal-LR layer lives in child ``conv``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, padding: int = 0):
        super().__init__()
        self.conv = EqualLRConv2d(in_channels, out_channels, kernel_size, padding)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class FusedUpsample(nn.Module):
    """2x upsampling + conv + box filter as one stride-2 transposed conv (blocks 5-8).

    ``weight`` [C_in, C_out, k, k] is a plain parameter; the equal-LR multiplier
    ``sqrt(2 / (C_in*k*k))`` and the 4-shift average are applied in forward
    (:func:`fused_upsample_kernel`), so the effective kernel is (k+1)x(k+1).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, padding: int = 0):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.pad = padding
        self.multiplier = equal_lr_scale(in_channels * kernel_size * kernel_size)
        self.weight = nn.Parameter(torch.randn(in_channels, out_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def effective_weight(self) -> Tensor:
        return fused_upsample_kernel(self.weight, self.multiplier)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv_transpose2d(x, self.effective_weight(), self.bias, stride=2, padding=self.pad)


class NoiseInjection(nn.Module):
    """Adds per-channel scaled noise: ``x + weight * noise``; ``weight`` is [1, C, 1, 1].

    This plain form is what :func:`gan_brevitas.models.fold.fold_generator` produces.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: Tensor, noise: Tensor) -> Tensor:
        return x + self.weight * noise


class EqualLRNoiseInjection(nn.Module):
    """Noise injection with equal-LR weight: ``x + weight_orig * sqrt(2 / C) * noise``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.weight_orig = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def effective_weight(self) -> Tensor:
        return self.weight_orig * equal_lr_scale(self.channels)

    def forward(self, x: Tensor, noise: Tensor) -> Tensor:
        return x + self.effective_weight() * noise


class AdaptiveInstanceNorm(nn.Module):
    """AdaIN: instance-normalize x, then scale/shift per channel from the style vector.

    ``style`` maps a [B, style_dim] style to [B, 2C] = (gamma, beta); its bias starts at
    gamma = 1, beta = 0. The instance norm has no affine parameters and no running stats.
    """

    def __init__(self, channels: int, style_dim: int) -> None:
        super().__init__()
        self.norm = nn.InstanceNorm2d(channels)
        self.style = EqualLinear(style_dim, channels * 2)
        with torch.no_grad():
            self.style.linear.bias[:channels] = 1.0
            self.style.linear.bias[channels:] = 0.0

    def forward(self, x: Tensor, style: Tensor) -> Tensor:
        gamma, beta = self.style(style)[:, :, None, None].chunk(2, dim=1)
        return gamma * self.norm(x) + beta


class ConstantInput(nn.Module):
    """Learned [1, C, 4, 4] input of the first block, expanded to the batch of ``style``."""

    def __init__(self, channels: int, size: int = 4) -> None:
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, style: Tensor) -> Tensor:
        # A broadcast add instead of expand/repeat: the TorchScript ONNX exporter then keeps
        # the channel count static with a dynamic batch, which its InstanceNorm needs.
        batch_zeros = style[:, :1, None, None] * 0.0  # [B, 1, 1, 1]
        return self.input + batch_zeros


def _upsampling_conv1(in_channels: int, out_channels: int, fused: bool) -> nn.Sequential:
    """First conv of blocks 1-8: 2x upsampling then 3x3 conv, followed by a blur."""
    if fused:
        return nn.Sequential(
            FusedUpsample(in_channels, out_channels, 3, padding=1),
            Blur(out_channels),
        )
    return nn.Sequential(
        nn.Upsample(scale_factor=2, mode="nearest"),
        EqualConv2d(in_channels, out_channels, 3, padding=1),
        Blur(out_channels),
    )


class StyledConvBlock(nn.Module):
    """One resolution of the synthesis network.

    conv1 -> noise1 -> LeakyReLU -> AdaIN1 -> conv2 -> noise2 -> LeakyReLU -> AdaIN2.
    Block 0 has a ``ConstantInput`` as conv1; blocks 1-8 upsample 2x in conv1. Both noise
    injections of a block receive the same noise map (as in the reference).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        style_dim: int,
        initial: bool = False,
        fused: bool = False,
    ) -> None:
        super().__init__()
        self.conv1: nn.Module
        if initial:
            self.conv1 = ConstantInput(in_channels)
        else:
            self.conv1 = _upsampling_conv1(in_channels, out_channels, fused)
        self.initial = initial
        self.noise1 = EqualLRNoiseInjection(out_channels)
        self.adain1 = AdaptiveInstanceNorm(out_channels, style_dim)
        self.lrelu1 = nn.LeakyReLU(LRELU_SLOPE)
        self.conv2 = EqualConv2d(out_channels, out_channels, 3, padding=1)
        self.noise2 = EqualLRNoiseInjection(out_channels)
        self.adain2 = AdaptiveInstanceNorm(out_channels, style_dim)
        self.lrelu2 = nn.LeakyReLU(LRELU_SLOPE)

    def forward(self, x: Tensor | None, style: Tensor, noise: Tensor) -> Tensor:
        """x: [B, C_in, H/2, W/2] (ignored by block 0); style: [B, style_dim];
        noise: [B or 1, 1, H, W]. Returns [B, C_out, H, W]."""
        out = self.conv1(style) if self.initial else self.conv1(x)
        out = self.adain1(self.lrelu1(self.noise1(out, noise)), style)
        out = self.conv2(out)
        out = self.adain2(self.lrelu2(self.noise2(out, noise)), style)
        return out


class SynthesisNetwork(nn.Module):
    """The reference's ``Generator``: progression blocks and their to_rgb 1x1 convs."""

    def __init__(self, channels: Sequence[int], style_dim: int, fused: bool = True) -> None:
        super().__init__()
        blocks = [StyledConvBlock(channels[0], channels[0], style_dim, initial=True)]
        for i in range(1, len(channels)):
            use_fused = fused and i >= FIRST_FUSED_BLOCK
            blocks.append(StyledConvBlock(channels[i - 1], channels[i], style_dim, fused=use_fused))
        self.progression = nn.ModuleList(blocks)
        self.to_rgb = nn.ModuleList(EqualConv2d(c, 3, 1) for c in channels)

    def forward(
        self,
        styles: Sequence[Tensor],
        noise: Sequence[Tensor],
        step: int,
        alpha: float = -1,
        mixing_range: tuple[int, int] | None = None,
    ) -> Tensor:
        """styles: one or two [B, style_dim] tensors (two need ``mixing_range``: blocks
        lo..hi take styles[1]); noise: step+1 maps. Returns the [B, 3, 4*2^step, ...] image.

        ``0 <= alpha < 1`` blends in the nearest-upsampled RGB of the previous block (the
        progressive-growing fade-in); any other alpha returns the last block's RGB.
        """
        out: Tensor | None = None
        previous: Tensor | None = None
        for i in range(step + 1):
            style = styles[0]
            if mixing_range is not None and mixing_range[0] <= i <= mixing_range[1]:
                style = styles[1]
            previous = out
            out = self.progression[i](out, style, noise[i])
        assert out is not None  # step >= 0 is checked by the caller
        rgb = self.to_rgb[step](out)
        if step > 0 and 0 <= alpha < 1:
            assert previous is not None
            skip = F.interpolate(self.to_rgb[step - 1](previous), scale_factor=2, mode="nearest")
            rgb = (1 - alpha) * skip + alpha * rgb
        return rgb


def _mapping_network(code_dim: int, n_mlp: int) -> nn.Sequential:
    layers: list[nn.Module] = [PixelNorm()]
    for _ in range(n_mlp):
        layers.append(EqualLinear(code_dim, code_dim))
        layers.append(nn.LeakyReLU(LRELU_SLOPE))
    return nn.Sequential(*layers)


class StyledGenerator(nn.Module):
    """Style-based generator (mapping network ``style`` + synthesis network ``generator``).

    Args:
        code_dim: latent and style size (512 in the reference).
        n_mlp: number of EqualLinear layers of the mapping network (8).
        size: output resolution in px, a power of two 4..1024; sets the default ``step``.
        channels: per-block channel counts, see :func:`resolve_channels`.
        fused: blocks 5-8 use FusedUpsample (True, the reference) or Upsample + conv.
        noise_mode: "random" draws fresh noise every call from the global RNG (reference
            behaviour); "const" uses fixed maps made at construction from ``noise_seed``, so
            the same latents always give the same image (needed for qFID and ONNX export).
        noise_seed: seed of the constant noise maps (a private ``torch.Generator``).

    Attributes ``input_kind`` ("latent"), ``latent_dim`` and ``image_size`` describe the input
    callers must build: latents of shape [B, latent_dim].
    """

    input_kind = "latent"

    def __init__(
        self,
        code_dim: int = 512,
        n_mlp: int = 8,
        size: int = 128,
        channels: int | Sequence[int] | None = None,
        fused: bool = True,
        noise_mode: str = "random",
        noise_seed: int = 0,
    ) -> None:
        super().__init__()
        if code_dim < 1 or n_mlp < 1:
            raise ConfigError(f"StyleGAN needs code_dim >= 1 and n_mlp >= 1, got {code_dim}, {n_mlp}")
        self.step = step_for_size(size)
        self.channels = resolve_channels(channels)
        self.code_dim = code_dim
        self.latent_dim = code_dim
        self.image_size = size
        self.n_mlp = n_mlp
        self.fused = fused
        self.noise_mode = noise_mode
        self.noise_seed = noise_seed
        self.generator = SynthesisNetwork(self.channels, code_dim, fused=fused)
        self.style = _mapping_network(code_dim, n_mlp)
        self._register_const_noise(noise_seed)

    @property
    def noise_mode(self) -> str:
        return self._noise_mode

    @noise_mode.setter
    def noise_mode(self, mode: str) -> None:
        if mode not in NOISE_MODES:
            raise ConfigError(f"noise_mode must be one of {NOISE_MODES}, got {mode!r}")
        self._noise_mode = mode

    def _register_const_noise(self, seed: int) -> None:
        """Fixed [1, 1, 4*2^i, 4*2^i] maps for steps 0..self.step (not saved in state_dict)."""
        rng = torch.Generator(device="cpu").manual_seed(seed)
        for i in range(self.step + 1):
            side = 4 * 2**i
            noise = torch.randn(1, 1, side, side, generator=rng, device="cpu")
            self.register_buffer(f"noise_const_{i}", noise, persistent=False)

    def const_noise(self, step: int) -> list[Tensor]:
        """The constant noise maps for steps 0..step, each [1, 1, H, W] (broadcast over B)."""
        if step > self.step:
            raise ConfigError(
                f"constant noise was made for steps 0..{self.step} (size={self.image_size}); "
                f"build the generator with size={4 * 2**step} to run step {step} in const mode"
            )
        return [getattr(self, f"noise_const_{i}") for i in range(step + 1)]

    def random_noise(self, batch: int, step: int, like: Tensor) -> list[Tensor]:
        """Fresh [B, 1, H, W] noise maps from the global RNG (the reference behaviour)."""
        return [
            torch.randn(batch, 1, 4 * 2**i, 4 * 2**i, device=like.device, dtype=like.dtype)
            for i in range(step + 1)
        ]

    def forward(
        self,
        z: Tensor | Sequence[Tensor],
        noise: Sequence[Tensor] | None = None,
        step: int | None = None,
        alpha: float = -1,
        mean_style: Tensor | None = None,
        style_weight: float = 0,
        mixing_range: tuple[int, int] | None = None,
    ) -> Tensor:
        """z: [B, code_dim] latents (or a list of two for style mixing with ``mixing_range``).

        noise: step+1 maps [B or 1, 1, 4*2^i, 4*2^i]; None uses ``noise_mode``.
        mean_style / style_weight: truncation, ``mean + style_weight * (style - mean)``.
        Returns the [B, 3, 4*2^step, 4*2^step] image.
        """
        latents = [z] if isinstance(z, Tensor) else list(z)
        if not 1 <= len(latents) <= 2 or (len(latents) == 2) != (mixing_range is not None):
            raise ConfigError(
                "pass one latent tensor, or two together with mixing_range=(lo, hi) "
                f"(got {len(latents)} latents, mixing_range={mixing_range})"
            )
        step = self.step if step is None else step
        if not 0 <= step < len(self.generator.progression):
            raise ConfigError(f"step must be in 0..{len(self.generator.progression) - 1}, got {step}")
        styles = [self.style(latent) for latent in latents]
        if mean_style is not None:
            styles = [truncate_style(s, mean_style, style_weight) for s in styles]
        if noise is None:
            if self.noise_mode == "const":
                noise = self.const_noise(step)
            else:
                noise = self.random_noise(latents[0].shape[0], step, latents[0])
        return self.generator(styles, noise, step, alpha, mixing_range)

    @torch.no_grad()
    def mean_style(self, n: int = 10 * 1024, seed: int = 0, batch: int = 1024) -> Tensor:
        """Mean mapping-network output over ``n`` latents drawn from a private generator.

        The reference averages 10 batches of 1024 latents for its truncated samples.
        Returns [1, code_dim].
        """
        if n < 1 or batch < 1:
            raise ConfigError(f"mean_style needs n >= 1 and batch >= 1, got {n}, {batch}")
        rng = torch.Generator(device="cpu").manual_seed(seed)
        first = next(self.parameters())
        total = torch.zeros(1, self.code_dim, device=first.device, dtype=first.dtype)
        done = 0
        while done < n:
            count = min(batch, n - done)
            z = torch.randn(count, self.code_dim, generator=rng)
            total += self.style(z.to(first.device, first.dtype)).sum(0, keepdim=True)
            done += count
        return total / n


def infer_kwargs(state: Mapping[str, Tensor]) -> dict[str, Any]:
    """Constructor arguments that a checkpoint's shapes reveal (the rest keep their defaults)."""
    kwargs: dict[str, Any] = {}
    rgb = [state.get(f"generator.to_rgb.{i}.conv.weight_orig") for i in range(9)]
    if all(w is not None and w.ndim == 4 for w in rgb):
        kwargs["channels"] = [int(w.shape[1]) for w in rgb]  # type: ignore[union-attr]
    mapping = [key for key in state if re.fullmatch(r"style\.\d+\.linear\.weight_orig", key)]
    if mapping:
        kwargs["n_mlp"] = len(mapping)
        kwargs["code_dim"] = int(state[mapping[0]].shape[1])
    trained = trained_step(state)
    if trained is not None:
        kwargs["size"] = 4 * 2**trained
    if "generator.progression.5.conv1.0.weight" in state:
        kwargs["fused"] = True
    elif "generator.progression.5.conv1.1.conv.weight_orig" in state:
        kwargs["fused"] = False
    return kwargs


def trained_step(state: Mapping[str, Tensor]) -> int | None:
    """The last progression block that was ever trained, or None for an untrained file.

    A StyleGAN file holds all 9 blocks whatever resolution it was trained at; blocks above it
    keep their initial values, where the noise weights and conv biases are exactly zero (the
    reference initialisation). Training moves them off zero, so the highest block with a
    non-zero one is the resolution the generator was trained for.
    """
    trained = None
    for i in range(9):
        keys = [f"generator.progression.{i}.{part}" for part in
                ("noise1.weight_orig", "noise2.weight_orig", "conv2.conv.bias")]
        values = [state.get(key) for key in keys]
        if any(value is None for value in values):
            return None  # not the reference layout: the strict load reports it
        if any(bool(value.detach().abs().max() > 0) for value in values):  # type: ignore[union-attr]
            trained = i
    return trained


def check_kwargs(file: str | os.PathLike[str], kwargs: Mapping[str, Any], inferred: Mapping[str, Any]) -> None:
    """A StyleGAN asked to run above the resolution its file was trained at would use untrained blocks."""
    trained = inferred.get("size")
    wanted = kwargs.get("size")
    if trained is None or wanted is None or wanted <= trained:
        return
    raise CheckpointError(
        f"{file} was trained up to {trained} px (its progression blocks above {trained} px still hold "
        f"their zero initialisation), so size={wanted} would produce images from untrained layers. "
        f"Use size={trained} or smaller (CLI: --size {trained}), or leave it out to use {trained}."
    )


def brecq_blocks(model: StyledGenerator) -> list[tuple[str, ...]]:
    """BRECQ's blocks, as chains of module names: the mapping network (PixelNorm with the first
    linear layer, then each linear layer with its activation), one block per synthesis step up
    to the output size, and the last to_rgb."""
    style = list(model.style._modules)  # PixelNorm, then (Linear, LeakyReLU) x n_mlp
    mapping = [(f"style.{style[0]}", f"style.{style[1]}", f"style.{style[2]}")]
    for i in range(3, len(style), 2):
        mapping.append((f"style.{style[i]}", f"style.{style[i + 1]}"))
    synthesis = [(f"generator.progression.{i}",) for i in range(model.step + 1)]
    return mapping + synthesis + [(f"generator.to_rgb.{model.step}",)]
