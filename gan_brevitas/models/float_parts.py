"""Which parts of a generator stay in floating point, and why.

The paper quantizes the compute layers (convs, transposed convs, linears) and keeps the
normalisation statistics, style modulation, noise, attention softmax and output Tanh in full
precision. :func:`float_parts` names those modules so that reports can show them.
"""

from __future__ import annotations

from torch import nn

from gan_brevitas.models.sagan import SelfAttention
from gan_brevitas.models.stylegan import (
    AdaptiveInstanceNorm,
    Blur,
    ConstantInput,
    EqualLRNoiseInjection,
    NoiseInjection,
    PixelNorm,
)

#: Module type -> why it stays float. A listed module's children are not listed again.
FLOAT_REASONS: dict[type[nn.Module], str] = {
    PixelNorm: "PixelNorm: per-sample RMS normalisation of the latent (division by a norm)",
    AdaptiveInstanceNorm: (
        "AdaIN: instance-norm statistics (per-sample mean/variance) and the style modulation "
        "gamma * x + beta; its `style` Linear is quantizable"
    ),
    NoiseInjection: "noise injection: adds weight * noise (noise is an input, not a weight)",
    EqualLRNoiseInjection: "noise injection: adds weight * noise (noise is an input, not a weight)",
    Blur: "Blur: fixed [1,2,1]x[1,2,1]/16 depthwise filter, kept float, not a trained layer",
    ConstantInput: "constant input: a learned 4x4 tensor, no computation",
    SelfAttention: (
        "self-attention: softmax over positions, the two bmm products and the gamma residual "
        "stay float; its query/key/value 1x1 convs are quantizable"
    ),
    nn.InstanceNorm2d: "InstanceNorm: per-sample statistics computed at run time",
    nn.Tanh: "Tanh: output nonlinearity, saturating, kept float",
}


def float_parts(model: nn.Module) -> list[tuple[str, str]]:
    """(module name, what stays float and why) for every float part of ``model``, in order.

    Works on the original and on the folded generator, and on any model built from these
    module types.
    """
    parts: list[tuple[str, str]] = []
    covered: list[str] = []
    for name, module in model.named_modules():
        if any(name.startswith(prefix + ".") for prefix in covered):
            continue
        reason = FLOAT_REASONS.get(type(module))
        if reason is not None:
            parts.append((name, reason))
            covered.append(name)
    return parts
