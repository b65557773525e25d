"""A Brevitas QuantConv2d that holds GIVEN quantized weights and scales (not re-derived).

Why: the export rewrites (sub-pixel ConvTranspose, channel padding of narrow convs) build new
convolutions from an existing quantized layer. Their kernels contain added zeros, so weight
statistics of them would give other scales; instead the new layer's weight quantizer holds
the original scales as fixed parameters, and its weights are the original dequantized
weights, so ``round(w / s)`` gives back the original integers exactly. Input, output and bias
quantizers are those of the original layer.
"""

from __future__ import annotations

import copy

import torch
from brevitas.inject.enum import ScalingImplType, ScalingPerOutputType
from brevitas.nn import QuantConv2d
from brevitas.nn.quant_layer import QuantWeightBiasInputOutputLayer
from torch import Tensor

from gan_brevitas.errors import ExportError
from gan_brevitas.quant.quantizers import SymmetricWeightQuant


def fixed_weight_quant(scale: Tensor, bit_width: int) -> type:
    """A symmetric weight quantizer whose scale (one, or one per output channel when ``scale``
    has several values) is a parameter set by `frozen_quant_conv`."""
    per_channel = scale.numel() > 1
    return SymmetricWeightQuant.let(
        bit_width=bit_width,
        scaling_impl_type=ScalingImplType.PARAMETER,
        scaling_per_output_type=ScalingPerOutputType.CHANNEL if per_channel else ScalingPerOutputType.TENSOR,
        scaling_init=torch.ones((scale.numel(), 1, 1, 1) if per_channel else ()),
    )


def frozen_quant_conv(
    template: QuantWeightBiasInputOutputLayer,
    weight: Tensor,
    scale: Tensor,
    bias: Tensor | None,
    **conv_kwargs: object,
) -> QuantConv2d:
    """A QuantConv2d with dequantized ``weight`` [Cout, Cin, kh, kw] on the grid ``scale`` (one
    value, or one per output channel), float ``bias``, and ``template``'s bit width and input,
    output and bias quantizers. ``conv_kwargs``: stride, padding, ... of the new convolution.

    Raises ExportError if the new layer does not reproduce ``weight`` exactly.
    """
    if not template.input_quant.is_quant_enabled:  # the output may be float (`quant.tail`)
        raise ExportError(
            "an export rewrite needs layers with a quantized input activation (models converted "
            "by gan_brevitas.quant.convert have one)."
        )
    with torch.no_grad():
        bit_width = int(template.quant_weight().bit_width)
    scale = scale.flatten() if scale.numel() > 1 else scale.reshape(())
    conv = QuantConv2d(
        weight.shape[1],
        weight.shape[0],
        tuple(weight.shape[2:]),
        bias=bias is not None,
        weight_quant=fixed_weight_quant(scale, bit_width),
        bias_quant=template.bias_quant.quant_injector if template.bias_quant.is_quant_enabled else None,
        input_quant=None,
        output_quant=None,
        return_quant_tensor=False,
        device=weight.device,
        dtype=weight.dtype,
        **conv_kwargs,
    )
    conv.input_quant = copy.deepcopy(template.input_quant)
    conv.output_quant = copy.deepcopy(template.output_quant)
    tensor_quant = conv.weight_quant.tensor_quant
    threshold = float(tensor_quant.int_scaling_impl(tensor_quant.msb_clamp_bit_width_impl()))
    with torch.no_grad():
        value = tensor_quant.scaling_impl.value
        value.copy_((scale * threshold).reshape(value.shape))
        conv.weight.copy_(weight)
        if bias is not None:
            conv.bias.copy_(bias)
        reproduced = conv.quant_weight().value
    if not torch.equal(reproduced, weight):
        raise ExportError(
            "a rewritten layer does not reproduce the quantized weights exactly; export with "
            "conv_transpose='keep' and pad_narrow_convs=False, and report this model."
        )
    return conv.train(template.training)
