"""Fold custom weight parametrisations into plain torch layers (exact rewrites).

After :func:`fold_generator` a quantizer meets ordinary ``nn.Linear``, ``nn.Conv2d`` and
``nn.ConvTranspose2d`` modules holding the effective weights:

==========================  =============================================================
before                      after
==========================  =============================================================
EqualLinear / EqualLRLinear nn.Linear, weight = weight_orig * sqrt(2 / in)
EqualConv2d / EqualLRConv2d nn.Conv2d, weight = weight_orig * sqrt(2 / (in*k*k))
FusedUpsample               nn.ConvTranspose2d(k+1, stride 2, same padding) with the
                            padded, 4-shift-averaged kernel (the same op it runs)
EqualLRNoiseInjection       NoiseInjection with a plain ``weight`` parameter
SpectralNorm(layer)         the plain layer with weight_bar / sigma, where sigma uses the
                            (u, v) the next forward would compute (one power iteration on
                            the stored u), so the folded model equals the original's next
                            call and is deterministic from then on
==========================  =============================================================

Left as they are: PixelNorm, Blur (a fixed depthwise 3x3 filter module, not an nn.Conv2d),
AdaIN, ConstantInput, self-attention, InstanceNorm, BatchNorm (BatchNorm folding belongs to
the converter), activations.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import Tensor, nn

from gan_brevitas.models.sagan import SpectralNorm
from gan_brevitas.models.stylegan import (
    EqualConv2d,
    EqualLinear,
    EqualLRConv2d,
    EqualLRLinear,
    EqualLRNoiseInjection,
    FusedUpsample,
    NoiseInjection,
)


def _with_weights(layer: nn.Module, weight: Tensor, bias: Tensor | None, training: bool) -> nn.Module:
    """Give a layer built on the meta device real (copied) weight and bias parameters.

    Building on ``meta`` skips the default random init, so folding never touches the RNG.
    """
    layer.weight = nn.Parameter(weight.detach().clone())
    if bias is not None:
        layer.bias = nn.Parameter(bias.detach().clone())
    return layer.train(training)


def _fold_equal_linear(module: EqualLinear | EqualLRLinear) -> nn.Module:
    layer = module.linear if isinstance(module, EqualLinear) else module
    plain = nn.Linear(layer.in_features, layer.out_features, device="meta")
    return _with_weights(plain, layer.effective_weight(), layer.bias, module.training)


def _fold_equal_conv(module: EqualConv2d | EqualLRConv2d) -> nn.Module:
    layer = module.conv if isinstance(module, EqualConv2d) else module
    plain = nn.Conv2d(
        layer.in_channels,
        layer.out_channels,
        layer.kernel_size,
        padding=layer.padding,
        device="meta",
    )
    return _with_weights(plain, layer.effective_weight(), layer.bias, module.training)


def _fold_fused_upsample(module: FusedUpsample) -> nn.Module:
    weight = module.effective_weight()
    plain = nn.ConvTranspose2d(
        module.in_channels,
        module.out_channels,
        weight.shape[-1],
        stride=2,
        padding=module.pad,
        device="meta",
    )
    return _with_weights(plain, weight, module.bias, module.training)


def _fold_noise(module: EqualLRNoiseInjection) -> nn.Module:
    plain = NoiseInjection(module.channels)
    plain.weight = nn.Parameter(module.effective_weight().detach().clone())
    return plain.train(module.training)


def _plain_like(layer: nn.Module) -> nn.Module:
    """An empty (meta) layer of the same kind and hyper-parameters as ``layer``."""
    has_bias = layer.bias is not None
    if isinstance(layer, nn.ConvTranspose2d):
        return nn.ConvTranspose2d(
            layer.in_channels,
            layer.out_channels,
            layer.kernel_size,
            stride=layer.stride,
            padding=layer.padding,
            output_padding=layer.output_padding,
            groups=layer.groups,
            bias=has_bias,
            dilation=layer.dilation,
            device="meta",
        )
    if isinstance(layer, nn.Conv2d):
        return nn.Conv2d(
            layer.in_channels,
            layer.out_channels,
            layer.kernel_size,
            stride=layer.stride,
            padding=layer.padding,
            dilation=layer.dilation,
            groups=layer.groups,
            bias=has_bias,
            padding_mode=layer.padding_mode,
            device="meta",
        )
    raise TypeError(f"cannot fold spectral norm around {type(layer).__name__}")


def _fold_spectral_norm(module: SpectralNorm) -> nn.Module:
    u, v = module.next_u_v()
    weight = module.normalized_weight(u, v)
    plain = _plain_like(module.module)
    return _with_weights(plain, weight, module.module.bias, module.training)


#: Exact module type -> function returning its plain replacement.
FOLDERS: dict[type[nn.Module], Callable[..., nn.Module]] = {
    EqualLinear: _fold_equal_linear,
    EqualLRLinear: _fold_equal_linear,
    EqualConv2d: _fold_equal_conv,
    EqualLRConv2d: _fold_equal_conv,
    FusedUpsample: _fold_fused_upsample,
    EqualLRNoiseInjection: _fold_noise,
    SpectralNorm: _fold_spectral_norm,
}


def _fold_children(module: nn.Module) -> None:
    for name, child in list(module.named_children()):
        folder = FOLDERS.get(type(child))
        if folder is None:
            _fold_children(child)
        else:
            setattr(module, name, folder(child))


def fold_generator(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` with every equal-LR, fused-upsample and spectral-norm layer
    replaced by a plain torch layer holding its effective weight (see the module docstring).

    ``model`` itself is not modified (its spectral-norm vectors do not advance). The copy has
    the same train/eval mode, device and dtype, and the same output as the original (exactly
    for equal-LR and fused upsampling; for spectral norm, equal to the original's next call).
    """
    folded = copy.deepcopy(model)
    with torch.no_grad():
        if type(folded) in FOLDERS:
            return FOLDERS[type(folded)](folded)
        _fold_children(folded)
    return folded
