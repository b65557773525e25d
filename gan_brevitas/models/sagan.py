"""Self-attention GAN generator with the parameter layout of heykeetae's Self-Attention-GAN.

Layout at the reference size (image_size 64, z_dim 128, conv_dim 64)::

    l1    Sequential(SpectralNorm(ConvTranspose2d(z, 512, 4)), BatchNorm2d, ReLU)      4x4
    l2    Sequential(SpectralNorm(ConvTranspose2d(512, 256, 4, 2, 1)), BN, ReLU)         8x8
    l3    Sequential(SpectralNorm(ConvTranspose2d(256, 128, 4, 2, 1)), BN, ReLU)       16x16
    attn1 SelfAttention(128)
    l4    Sequential(SpectralNorm(ConvTranspose2d(128, 64, 4, 2, 1)), BN, ReLU)        32x32
    attn2 SelfAttention(64)
    last  Sequential(ConvTranspose2d(64, 3, 4, 2, 1), Tanh)                            64x64

Other sizes keep all seven stages (so the keys never change) and scale the first layer's
kernel: l1 makes an (image_size/16)^2 map. Widths are conv_dim * (8, 4, 2, 1).

``upsample="upsample_conv"`` is the paper's retrained variant: every stride-2 transposed conv
becomes nearest 2x Upsample + 3x3 conv (padding 1), so l2..l4 are Sequential(Upsample,
SpectralNorm(Conv2d), BN, ReLU) and last is Sequential(Upsample, Conv2d, Tanh). l1 stays a
transposed conv: on a 1x1 input it is a dense projection, not an upsampling.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gan_brevitas.errors import ConfigError

UPSAMPLE_MODES = ("convtranspose", "upsample_conv")
#: Power iterations run once at construction. The reference starts u, v random and lets
#: training converge them; a freshly built (untrained) model would otherwise change its
#: output by ~1% from one call to the next. Loaded checkpoints bring their own u, v.
INIT_POWER_ITERATIONS = 30
#: Width multipliers of l1..l4 relative to conv_dim (the reference's 2**(log2(64)-3) = 8 ...).
WIDTH_MULTIPLIERS = (8, 4, 2, 1)


# --------------------------------------------------------------------------- math


def l2_normalize(v: Tensor, eps: float = 1e-12) -> Tensor:
    """``v / (||v|| + eps)`` (the reference adds eps, it does not clamp)."""
    return v / (v.norm() + eps)


def power_iteration(weight: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
    """One power-iteration step on ``weight`` viewed as [weight.shape[0], -1].

    As in the reference: v = normalize(W^T u), then u = normalize(W v). The previous v is not
    needed. Returns the new (u, v).
    """
    matrix = weight.reshape(weight.shape[0], -1)
    new_v = l2_normalize(torch.mv(matrix.t(), u))
    new_u = l2_normalize(torch.mv(matrix, new_v))
    return new_u, new_v


def spectral_sigma(weight: Tensor, u: Tensor, v: Tensor) -> Tensor:
    """Estimated largest singular value ``u^T W v`` (a 0-d tensor, differentiable in W)."""
    return torch.dot(u, torch.mv(weight.reshape(weight.shape[0], -1), v))


# --------------------------------------------------------------------------- layers


class SpectralNorm(nn.Module):
    """Spectral normalization in the reference's layout.

    The wrapped layer ``module`` (an ``nn.ConvTranspose2d`` or ``nn.Conv2d``) has its ``weight``
    replaced by ``weight_bar`` (trainable) and the power-iteration vectors ``weight_u`` [out]
    and ``weight_v`` [in*k*k] (buffers here; parameters without grad in the reference, the
    state_dict keys are the same). A new layer starts with converged u, v (see
    ``INIT_POWER_ITERATIONS``). Every forward, in train and eval mode alike, runs one power
    iteration, stores the new u, v, and uses ``weight_bar / (u^T W v)``.
    """

    def __init__(self, module: nn.ConvTranspose2d | nn.Conv2d) -> None:
        super().__init__()
        if not isinstance(module, (nn.ConvTranspose2d, nn.Conv2d)):
            raise ConfigError(f"SpectralNorm wraps Conv2d or ConvTranspose2d, got {type(module)}")
        weight = module.weight.detach()
        del module._parameters["weight"]
        height = weight.shape[0]
        width = weight[0].numel()
        u = l2_normalize(torch.randn(height))
        v = l2_normalize(torch.randn(width))
        for _ in range(INIT_POWER_ITERATIONS):
            u, v = power_iteration(weight, u)
        module.register_buffer("weight_u", u)
        module.register_buffer("weight_v", v)
        module.register_parameter("weight_bar", nn.Parameter(weight.clone()))
        self.module = module

    @torch.no_grad()
    def next_u_v(self) -> tuple[Tensor, Tensor]:
        """The (u, v) that the next forward will use, without storing them."""
        return power_iteration(self.module.weight_bar, self.module.weight_u)

    def normalized_weight(self, u: Tensor, v: Tensor) -> Tensor:
        weight_bar = self.module.weight_bar
        return weight_bar / spectral_sigma(weight_bar, u, v)

    def forward(self, x: Tensor) -> Tensor:
        u, v = self.next_u_v()
        with torch.no_grad():
            self.module.weight_u.copy_(u)
            self.module.weight_v.copy_(v)
        return apply_layer(self.module, x, self.normalized_weight(u, v))


def apply_layer(layer: nn.ConvTranspose2d | nn.Conv2d, x: Tensor, weight: Tensor) -> Tensor:
    """Run ``layer``'s convolution on ``x`` with an explicit ``weight``."""
    if isinstance(layer, nn.ConvTranspose2d):
        return F.conv_transpose2d(
            x,
            weight,
            layer.bias,
            stride=layer.stride,
            padding=layer.padding,
            output_padding=layer.output_padding,
            groups=layer.groups,
            dilation=layer.dilation,
        )
    return F.conv2d(
        x,
        weight,
        layer.bias,
        stride=layer.stride,
        padding=layer.padding,
        dilation=layer.dilation,
        groups=layer.groups,
    )


class SelfAttention(nn.Module):
    """The reference's ``Self_Attn``: out = gamma * attention(x) + x, gamma starts at 0.

    query/key are 1x1 convs C -> C/8, value C -> C. For N = H*W positions the attention map
    is softmax over keys of (query^T key), [B, N, N]; the output at each position is the
    attention-weighted sum of values. Returns (out [B, C, H, W], attention [B, N, N]).
    """

    def __init__(self, in_dim: int) -> None:
        super().__init__()
        if in_dim < 8:
            raise ConfigError(f"SelfAttention needs >= 8 channels (C/8 query channels), got {in_dim}")
        self.chanel_in = in_dim  # reference spelling
        self.query_conv = nn.Conv2d(in_dim, in_dim // 8, kernel_size=1)
        self.key_conv = nn.Conv2d(in_dim, in_dim // 8, kernel_size=1)
        self.value_conv = nn.Conv2d(in_dim, in_dim, kernel_size=1)
        self.gamma = nn.Parameter(torch.zeros(1))
        self.softmax = nn.Softmax(dim=-1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        batch, channels, height, width = x.shape
        positions = height * width
        query = self.query_conv(x).view(batch, -1, positions).permute(0, 2, 1)  # B, N, C/8
        key = self.key_conv(x).view(batch, -1, positions)  # B, C/8, N
        attention = self.softmax(torch.bmm(query, key))  # B, N, N
        value = self.value_conv(x).view(batch, -1, positions)  # B, C, N
        out = torch.bmm(value, attention.permute(0, 2, 1)).view(batch, channels, height, width)
        return self.gamma * out + x, attention


def _first_stage(z_dim: int, out_channels: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(
        SpectralNorm(nn.ConvTranspose2d(z_dim, out_channels, kernel)),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
    )


def _upsampling_stage(in_channels: int, out_channels: int, upsample: str) -> nn.Sequential:
    if upsample == "convtranspose":
        return nn.Sequential(
            SpectralNorm(nn.ConvTranspose2d(in_channels, out_channels, 4, 2, 1)),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(),
        )
    return nn.Sequential(
        nn.Upsample(scale_factor=2, mode="nearest"),
        SpectralNorm(nn.Conv2d(in_channels, out_channels, 3, 1, 1)),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
    )


def _last_stage(in_channels: int, upsample: str) -> nn.Sequential:
    if upsample == "convtranspose":
        return nn.Sequential(nn.ConvTranspose2d(in_channels, 3, 4, 2, 1), nn.Tanh())
    return nn.Sequential(
        nn.Upsample(scale_factor=2, mode="nearest"),
        nn.Conv2d(in_channels, 3, 3, 1, 1),
        nn.Tanh(),
    )


def first_kernel_for_size(image_size: int) -> int:
    """Kernel of l1 so that four 2x upsamplings reach ``image_size`` (64 px -> 4)."""
    if image_size < 16 or image_size % 16 != 0:
        raise ConfigError(
            f"SAGAN image_size must be a multiple of 16 (>= 16), got {image_size}; "
            "the reference is 64, tests use 32"
        )
    return image_size // 16


class Generator(nn.Module):
    """SAGAN generator; ``forward(z)`` returns (image [B,3,S,S], attn1 map, attn2 map).

    Args:
        image_size: output side S (64 in the reference; any multiple of 16).
        z_dim: latent size (128).
        conv_dim: width of the last hidden stage (64); l1..l4 have 8, 4, 2, 1 times it.
        upsample: "convtranspose" (reference keys) or "upsample_conv" (the paper's variant).

    Attributes ``input_kind`` ("latent"), ``latent_dim`` and ``image_size`` describe the input:
    latents of shape [B, z_dim] (or [B, z_dim, 1, 1]).
    """

    input_kind = "latent"

    def __init__(
        self,
        image_size: int = 64,
        z_dim: int = 128,
        conv_dim: int = 64,
        upsample: str = "convtranspose",
    ) -> None:
        super().__init__()
        if upsample not in UPSAMPLE_MODES:
            raise ConfigError(f"SAGAN upsample must be one of {UPSAMPLE_MODES}, got {upsample!r}")
        if z_dim < 1 or conv_dim < 8:
            raise ConfigError(
                f"SAGAN needs z_dim >= 1 and conv_dim >= 8 (attention uses C/8), got {z_dim}, {conv_dim}"
            )
        self.imsize = image_size  # reference name
        self.image_size = image_size
        self.latent_dim = z_dim
        self.z_dim = z_dim
        self.conv_dim = conv_dim
        self.upsample = upsample
        widths = [conv_dim * m for m in WIDTH_MULTIPLIERS]
        self.l1 = _first_stage(z_dim, widths[0], first_kernel_for_size(image_size))
        self.l2 = _upsampling_stage(widths[0], widths[1], upsample)
        self.l3 = _upsampling_stage(widths[1], widths[2], upsample)
        self.l4 = _upsampling_stage(widths[2], widths[3], upsample)
        self.last = _last_stage(widths[3], upsample)
        self.attn1 = SelfAttention(widths[2])
        self.attn2 = SelfAttention(widths[3])

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        out = self.l3(self.l2(self.l1(z.view(z.shape[0], z.shape[1], 1, 1))))
        out, attention1 = self.attn1(out)
        out, attention2 = self.attn2(self.l4(out))
        return self.last(out), attention1, attention2


def infer_kwargs(state: Mapping[str, Tensor]) -> dict[str, Any]:
    """Constructor arguments that a checkpoint's shapes reveal (the rest keep their defaults)."""
    kwargs: dict[str, Any] = {}
    first = state.get("l1.0.module.weight_bar")
    if first is not None and first.ndim == 4:
        kwargs["z_dim"] = int(first.shape[0])
        kwargs["image_size"] = 16 * int(first.shape[-1])
    if "last.1.weight" in state and state["last.1.weight"].ndim == 4:
        kwargs["upsample"] = "upsample_conv"
        kwargs["conv_dim"] = int(state["last.1.weight"].shape[1])
    elif "last.0.weight" in state and state["last.0.weight"].ndim == 4:
        kwargs["upsample"] = "convtranspose"
        kwargs["conv_dim"] = int(state["last.0.weight"].shape[0])
    return kwargs


def brecq_blocks(model: Generator) -> list[tuple[str, ...]]:
    """BRECQ's blocks: each upsampling stage, the two attention layers with the stage before them."""
    return [("l1",), ("l2",), ("l3", "attn1"), ("l4", "attn2"), ("last",)]
