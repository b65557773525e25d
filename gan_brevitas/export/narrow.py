"""Pad quantized convolutions with few output channels to 16, with zero filters (exact).

Why: ONNX Runtime's int8 convolution (QLinearConv) is slow for narrow outputs. Measured on our
CPU (Xeon, AVX-512 VNNI / AMX), one thread, 128x128: a 7x7 conv 64 -> 3 took 42 ms in int8 vs
29 ms in fp32, while 64 -> 16 took 15 ms in int8. Generators end in exactly such layers (the
RGB conv of CycleGAN, StyleGAN's to_rgb, SAGAN's last layer after the sub-pixel rewrite: 12
outputs), and CycleGAN's 64 -> 3 7x7 conv alone cost a quarter of the int8 run. Output
channels of a convolution are independent, so computing zero filters as well and slicing
them away changes nothing in the kept channels (the output quantizer is per tensor).
Convs with a float output (the float tail) are left as they are: the ONNX Runtime export runs
them as ConvInteger (`conv_integer`), which is fastest with the real channel count. So are
narrow convs with large kernels: `space_to_depth` computes them on pixel blocks instead.
"""

from __future__ import annotations

import logging

import torch
from brevitas.nn import QuantConv2d
from torch import Tensor, nn

from gan_brevitas.export import space_to_depth
from gan_brevitas.export.frozen_conv import frozen_quant_conv
from gan_brevitas.quant.convert import replace_module

log = logging.getLogger(__name__)

#: Fewest output channels ONNX Runtime's int8 convolution handles at full speed (measured).
MIN_INT8_OUT_CHANNELS = 16


class ChannelPaddedConv2d(nn.Module):
    """``conv`` (with extra zero filters) followed by keeping its first ``out_channels``."""

    def __init__(self, conv: nn.Module, out_channels: int) -> None:
        super().__init__()
        self.conv = conv
        self.out_channels = out_channels

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)[:, : self.out_channels]


def _padded(layer: QuantConv2d, channels: int) -> ChannelPaddedConv2d:
    with torch.no_grad():
        quant_weight = layer.quant_weight()
        weight = quant_weight.value.detach()
        scale = quant_weight.scale.detach()
    extra = channels - layer.out_channels
    weight = torch.cat([weight, weight.new_zeros(extra, *weight.shape[1:])])
    if scale.numel() > 1:  # the zero filters get scale 1: any positive value quantizes 0 to 0
        scale = torch.cat([scale.flatten(), scale.new_ones(extra)])
    bias = torch.cat([layer.bias.detach(), layer.bias.new_zeros(extra)]) if layer.bias is not None else None
    conv = frozen_quant_conv(
        layer, weight, scale, bias, stride=layer.stride, padding=layer.padding, dilation=layer.dilation,
        padding_mode=layer.padding_mode,
    )
    return ChannelPaddedConv2d(conv, layer.out_channels)


def _blocked(layer: QuantConv2d) -> bool:
    """Left to `space_to_depth` (computed on pixel blocks, faster than padded filters there)."""
    return space_to_depth.eligible(layer.out_channels, tuple(layer.kernel_size), tuple(layer.stride),
                                   tuple(layer.dilation), layer.groups)


def pad_narrow_convs(model: nn.Module, min_channels: int = MIN_INT8_OUT_CHANNELS) -> list[str]:
    """Swap (in place) every ungrouped QuantConv2d with a quantized output and fewer than
    ``min_channels`` outputs for an exact `ChannelPaddedConv2d`; returns the names swapped."""
    targets = [
        (name, module) for name, module in model.named_modules()
        if type(module) is QuantConv2d and module.out_channels < min_channels and module.groups == 1
        and module.output_quant.is_quant_enabled and not _blocked(module)
    ]
    for name, layer in targets:
        replace_module(model, name, _padded(layer, min_channels))
    if targets:
        log.info("padded %d narrow conv(s) to %d output channels: %s", len(targets), min_channels,
                 ", ".join(name for name, _ in targets))
    return [name for name, _ in targets]
