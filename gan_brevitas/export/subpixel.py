"""Exact rewrite of ConvTranspose2d as Conv2d + PixelShuffle + crop (sub-pixel decomposition).

Why: ONNX Runtime never fuses a ConvTranspose into an int8 kernel (it stays a float op even
with Q/DQ around it), and TensorRT rejects per-output-channel ConvTranspose weight scales.
A stride-s transposed convolution is the same linear map as a stride-1 convolution over its
input producing s*s "phase" images, interleaved by PixelShuffle (ONNX DepthToSpace, CRD) and
cropped. The convolution then runs as QLinearConv in ONNX Runtime, and its per-channel weight
scales lie on axis 0 as TensorRT requires.

The maths, per spatial axis (kernel k, stride s, padding p, output padding op, input length
H). The uncropped transposed-conv output is ``yfull[s*m + r] = sum_j x[m - j] * w[r + s*j]``
for each phase r in [0, s). With ``J = ceil(k / s)`` taps per phase this is a correlation of
x (zero padded by P = J - 1 + e on both sides) with the phase kernel
``K_r[t] = w[r + s*(J - 1 - t)]`` (0 where that index is >= k); its output index m' holds the
full-output phase index m = m' - e. PixelShuffle puts phase r of m' at s*m' + r, so the
transposed conv's output (yfull shifted by p) starts at ``p + s*e``, and the crop keeps
``(H - 1)*s - 2p + k + op`` samples. ``e`` = the extra padding needed when op - p reaches
past the last phase row: ``e = max(0, ceil((k + op - p - s*J) / s))``.

Every term of the transposed convolution appears exactly once in the convolution and the zero
taps contribute exact zeros, so the rewrite is exact up to the order of float additions. For
a quantized layer the convolution reuses the transposed conv's integer weights and scales (the
scale per output channel repeated for its s*s phases), its input and output quantizers and
its int32 bias grid, so integer values are unchanged.

Supported: groups 1, dilation 1, equal strides on both axes (PixelShuffle's constraint).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
from brevitas.nn import QuantConvTranspose2d
from torch import Tensor, nn

from gan_brevitas.errors import ExportError
from gan_brevitas.export.frozen_conv import frozen_quant_conv
from gan_brevitas.quant.convert import replace_module

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AxisPlan:
    """How one spatial axis of a transposed conv maps to the sub-pixel convolution.

    Attributes:
        taps: J, kernel taps per phase.
        pad: P, zero padding of the convolution on both sides.
        crop_start: first kept sample of the pixel-shuffled output.
        extra_length: output length minus (input length - 1) * stride, i.e.
            ``k - 2p + op``; the kept length is ``(H - 1) * s + extra_length``.
    """

    kernel: int
    stride: int
    taps: int
    pad: int
    crop_start: int
    extra_length: int

    def output_length(self, input_length: int) -> int:
        return (input_length - 1) * self.stride + self.extra_length

    @property
    def crop_end_trim(self) -> int:
        """Samples dropped at the end of the shuffled output, independent of the input length
        (the shuffled length is s * (H + 2P - J + 1)), so the crop is a constant Slice."""
        return self.stride * (2 * self.pad - self.taps + 2) - self.crop_start - self.extra_length


def plan_axis(kernel: int, stride: int, padding: int, output_padding: int) -> AxisPlan:
    """The sub-pixel plan for one axis (see the module docstring for the derivation)."""
    taps = math.ceil(kernel / stride)
    extra = max(0, math.ceil((kernel + output_padding - padding - stride * taps) / stride))
    return AxisPlan(
        kernel=kernel,
        stride=stride,
        taps=taps,
        pad=taps - 1 + extra,
        crop_start=padding + stride * extra,
        extra_length=kernel - 2 * padding + output_padding,
    )


def unsupported_reason(layer: nn.ConvTranspose2d) -> str | None:
    """Why ``layer`` cannot be rewritten, or None when it can."""
    if layer.groups != 1:
        return f"groups={layer.groups} (only groups=1 is rewritten)"
    if tuple(layer.dilation) != (1, 1):
        return f"dilation={tuple(layer.dilation)} (only dilation 1 is rewritten)"
    if layer.stride[0] != layer.stride[1]:
        return f"stride={tuple(layer.stride)} (PixelShuffle needs equal strides)"
    if layer.padding_mode != "zeros":
        return f"padding_mode={layer.padding_mode!r}"
    if isinstance(layer.padding, str):
        return f"padding={layer.padding!r}"
    return None


def phase_kernels(weight: Tensor, plans: tuple[AxisPlan, AxisPlan]) -> Tensor:
    """Rearrange a transposed-conv weight [Cin, Cout, kh, kw] into the sub-pixel conv weight
    [Cout * s * s, Cin, Jh, Jw]; output channel ``o * s*s + ry * s + rx`` is phase (ry, rx)
    of channel o, the order PixelShuffle reads."""
    plan_h, plan_w = plans
    s = plan_h.stride
    c_in, c_out, k_h, k_w = weight.shape
    kernel = weight.new_zeros(c_out, s, s, c_in, plan_h.taps, plan_w.taps)
    for ry in range(s):
        for ty in range(plan_h.taps):
            ky = ry + s * (plan_h.taps - 1 - ty)
            if ky >= k_h:
                continue
            for rx in range(s):
                for tx in range(plan_w.taps):
                    kx = rx + s * (plan_w.taps - 1 - tx)
                    if kx >= k_w:
                        continue
                    kernel[:, ry, rx, :, ty, tx] = weight[:, :, ky, kx].transpose(0, 1)
    return kernel.reshape(c_out * s * s, c_in, plan_h.taps, plan_w.taps)


class SubPixelConvTranspose2d(nn.Module):
    """A ConvTranspose2d computed as ``crop(pixel_shuffle(conv(x)))``; see the module docstring.

    ``conv`` is an ``nn.Conv2d`` (float) or a Brevitas ``QuantConv2d`` (quantized); its output
    quantizer runs before the shuffle and crop, which only move values, so where it runs does
    not change them, and ONNX Runtime sees DQ -> Conv -> Q, the pattern it fuses.
    """

    def __init__(self, conv: nn.Module, plans: tuple[AxisPlan, AxisPlan], out_channels: int) -> None:
        super().__init__()
        self.conv = conv
        self.plans = plans
        self.upscale = plans[0].stride
        self.out_channels = out_channels

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv(x)
        if self.upscale > 1:
            y = nn.functional.pixel_shuffle(y, self.upscale)
        # Constant bounds (no arithmetic on x.shape), so the exported Slice is static.
        plan_h, plan_w = self.plans
        end_h = -plan_h.crop_end_trim if plan_h.crop_end_trim else None
        end_w = -plan_w.crop_end_trim if plan_w.crop_end_trim else None
        return y[..., plan_h.crop_start : end_h, plan_w.crop_start : end_w]

    def extra_repr(self) -> str:
        return f"upscale={self.upscale}, plans={self.plans}"


def _plans(layer: nn.ConvTranspose2d) -> tuple[AxisPlan, AxisPlan]:
    return tuple(  # type: ignore[return-value]
        plan_axis(layer.kernel_size[a], layer.stride[a], layer.padding[a], layer.output_padding[a])
        for a in range(2)
    )


def _float_rewrite(layer: nn.ConvTranspose2d) -> SubPixelConvTranspose2d:
    plans = _plans(layer)
    s = plans[0].stride
    conv = nn.Conv2d(
        layer.in_channels,
        layer.out_channels * s * s,
        (plans[0].taps, plans[1].taps),
        padding=(plans[0].pad, plans[1].pad),
        bias=layer.bias is not None,
        device=layer.weight.device,
        dtype=layer.weight.dtype,
    )
    with torch.no_grad():
        conv.weight.copy_(phase_kernels(layer.weight, plans))
        if layer.bias is not None:
            conv.bias.copy_(layer.bias.repeat_interleave(s * s))
    return SubPixelConvTranspose2d(conv.train(layer.training), plans, layer.out_channels)


def _quant_rewrite(layer: QuantConvTranspose2d) -> SubPixelConvTranspose2d:
    plans = _plans(layer)
    s = plans[0].stride
    with torch.no_grad():
        quant_weight = layer.quant_weight()
        weight = quant_weight.value.detach()
        scale = quant_weight.scale.detach()
    # A ConvTranspose's per-channel scales are per OUTPUT channel (axis 1 of its weight); each
    # becomes s*s output channels (axis 0) of the convolution.
    conv_scale = scale.flatten().repeat_interleave(s * s) if scale.numel() > 1 else scale
    bias = layer.bias.detach().repeat_interleave(s * s) if layer.bias is not None else None
    conv = frozen_quant_conv(
        layer, phase_kernels(weight, plans), conv_scale, bias, padding=(plans[0].pad, plans[1].pad)
    )
    return SubPixelConvTranspose2d(conv, plans, layer.out_channels)


def rewrite_conv_transpose(model: nn.Module, names: list[str] | None = None) -> list[str]:
    """Swap ConvTranspose2d / QuantConvTranspose2d modules of ``model`` IN PLACE for exact
    `SubPixelConvTranspose2d` equivalents; returns the names rewritten.

    Args:
        model: a float or Brevitas-quantized model (copy it first to keep the original).
        names: rewrite only these modules (all transposed convs when None).

    Raises ExportError for a layer the rewrite does not support (grouped, dilated, unequal
    strides), naming it.
    """
    targets = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, nn.ConvTranspose2d) and (names is None or name in names)
    ]
    done = []
    for name, layer in targets:
        reason = unsupported_reason(layer)
        if reason is not None:
            raise ExportError(
                f"ConvTranspose2d {name!r} cannot be rewritten into Conv + PixelShuffle: {reason}; "
                "export with conv_transpose='keep' to leave it as a (float-kernel) ConvTranspose."
            )
        new = _quant_rewrite(layer) if isinstance(layer, QuantConvTranspose2d) else _float_rewrite(layer)
        replace_module(model, name, new)
        done.append(name)
    if done:
        log.info("rewrote %d ConvTranspose2d layer(s) as Conv2d + PixelShuffle: %s", len(done), ", ".join(done))
    return done
