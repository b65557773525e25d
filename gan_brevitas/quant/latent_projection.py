"""A generator's first ConvTranspose over a 1x1 latent, computed as the Linear layer it is.

DCGAN-style generators reshape a latent z of shape (N, L) to (N, L, 1, 1) and run a
ConvTranspose2d (kernel k, padding 0) on it: the output (N, C, k, k) is ``z @ W`` reshaped, a
Linear layer with C*k*k outputs. As a ConvTranspose its weights are quantized per output
channel (C scales, each shared by L*k*k weights); as a Linear each of the C*k*k outputs has its
own scale (L weights each), a finer grid at no cost to an int8 engine (a Gemm). The layer is
often most of the generator's weights (the suite's MNIST DCGAN: 66%), so at few bits the finer
grid matters: 4-bit weights of that layer halve their output error (measured on its weights,
random latents).

`latent_projections_as_linear` rewrites, in place, each ``nn.Unflatten(1, (L, 1, 1))``
followed in a Sequential by a plain ConvTranspose2d (groups 1, dilation 1, padding 0, output
padding 0, L input channels): the Unflatten becomes an Identity (its input is the (N, L)
latent: an Unflatten of any other shape would have made the ConvTranspose fail) and the
ConvTranspose a `LatentProjection`, a Linear layer that unflattens its output to (C, k, k),
under the same module name (a user's ``skip`` or per-layer bits still name it). The input
quantizer then sits right in front of the Linear, where int8 engines look for it. The rewrite
is exact (the same products, summed in a different order).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn


class LatentProjection(nn.Linear):
    """A Linear layer whose output is unflattened to ``out_shape`` (C, k, k): a ConvTranspose2d
    over a 1x1 input. It keeps the ConvTranspose's module name."""

    def __init__(self, in_features: int, out_features: int, out_shape: tuple[int, int, int], bias: bool = True,
                 device: Optional[torch.device] = None, dtype: Optional[torch.dtype] = None) -> None:
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        self.out_shape = tuple(out_shape)

    def forward(self, x: Tensor) -> Tensor:
        # reshape to a constant shape: exported as one Reshape (unflatten exports Shape / Slice / Concat)
        return super().forward(x).reshape(-1, *self.out_shape)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, out_shape={self.out_shape}"


def _is_latent_unflatten(module: nn.Module) -> bool:
    return isinstance(module, nn.Unflatten) and module.dim == 1 and tuple(module.unflattened_size)[1:] == (1, 1)


def _projects_latent(conv: nn.Module, latent: int) -> bool:
    return (type(conv) is nn.ConvTranspose2d and conv.in_channels == latent and conv.groups == 1
            and tuple(conv.dilation) == (1, 1) and tuple(conv.padding) == (0, 0)
            and tuple(conv.output_padding) == (0, 0) and conv.padding_mode == "zeros")


def as_linear(conv: nn.ConvTranspose2d) -> LatentProjection:
    """The `LatentProjection` computing ``conv`` on a 1x1 input."""
    c_in, c_out, k_h, k_w = conv.weight.shape
    linear = LatentProjection(c_in, c_out * k_h * k_w, (c_out, k_h, k_w), bias=conv.bias is not None,
                              device=conv.weight.device, dtype=conv.weight.dtype)
    with torch.no_grad():
        # output feature (c, y, x) = sum_i z[i] * W[i, c, y, x]
        linear.weight.copy_(conv.weight.permute(1, 2, 3, 0).reshape(c_out * k_h * k_w, c_in))
        if conv.bias is not None:
            linear.bias.copy_(conv.bias.repeat_interleave(k_h * k_w))
    return linear.train(conv.training)


def latent_projections_as_linear(model: nn.Module) -> list[str]:
    """Rewrite every latent-projection ConvTranspose2d of ``model`` IN PLACE (see the module
    docstring); returns the names of the rewritten layers."""
    done = []
    for parent_name, parent in list(model.named_modules()):
        if not isinstance(parent, nn.Sequential):
            continue
        names = list(parent._modules)
        for before, name in zip(names, names[1:]):
            reshape, conv = parent._modules[before], parent._modules[name]
            if _is_latent_unflatten(reshape) and _projects_latent(conv, reshape.unflattened_size[0]):
                parent._modules[before] = nn.Identity()
                parent._modules[name] = as_linear(conv)
                done.append(f"{parent_name}.{name}" if parent_name else name)
    return done
