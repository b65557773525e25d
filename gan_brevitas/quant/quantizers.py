"""The paper's quantization scheme as Brevitas quantizers (§3.1-3.4).

Three injector classes, one per kind of tensor; a `QuantConfig` picks one and sets its
attributes with ``.let(...)`` (`weight_quantizer`, `act_quantizer`), so no class exists per
combination of bits / granularity / scaling.

* `SymmetricWeightQuant`: signed symmetric weights, t in [-2^(n-1), 2^(n-1)-1] (not Brevitas's
  narrow default), scale = max(|q_low|, |q_high|) / (2^(n-1)-1) from the weight quantiles, per
  tensor or per output channel (or the MSE-optimal clipping of the min-max step,
  weight_range="mse"); recomputed from the weights ("stats") or an LSQ parameter
  initialised from them ("learned").
* `AsymmetricActQuant`: unsigned n-bit activations with a learnable scale and a learnable
  integer zero point (the paper's scheme); the values are set by calibration.
* `SymmetricActQuant`: signed n-bit activations with zero point 0 and a learnable scale: the
  form TensorRT runs.
* `UnsignedActQuant`: unsigned n-bit activations with zero point 0, for tensors that are never
  negative (after ReLU): the form OpenVINO's int8 kernels take best (export target "openvino").
"""

from __future__ import annotations

import math

import torch
from torch.nn import Module

from brevitas.core.zero_point import ParameterZeroPoint, ZeroZeroPoint
from brevitas.inject import ExtendedInjector
from brevitas.inject.enum import (
    BitWidthImplType,
    FloatToIntImplType,
    QuantType,
    RestrictValueType,
    ScalingImplType,
    ScalingPerOutputType,
    StatsOp,
)
from brevitas.quant.solver import ActQuantSolver, WeightQuantSolver

from gan_brevitas.errors import CalibrationError
from gan_brevitas.quant.config import QuantConfig
from gan_brevitas.quant.stats import MSEClipAbsMax, QuantilePairAbsMax

#: Smallest scale threshold: a constant or all-zero tensor never yields a zero or NaN scale.
MIN_RANGE = 1e-8


class _IntGrid(ExtendedInjector):
    """Round-to-nearest integer grid with a constant bit width and a float scale."""

    quant_type = QuantType.INT
    bit_width_impl_type = BitWidthImplType.CONST
    float_to_int_impl_type = FloatToIntImplType.ROUND
    restrict_scaling_type = RestrictValueType.FP
    narrow_range = False
    scaling_min_val = MIN_RANGE
    bit_width = 8


class SymmetricWeightQuant(_IntGrid, WeightQuantSolver):
    """Signed symmetric weights, zero point 0, range from a pair of weight quantiles."""

    signed = True
    zero_point_impl = ZeroZeroPoint
    scaling_impl_type = ScalingImplType.STATS
    # MAX tells Brevitas's solvers the statistic reduces |x| over a view; QuantilePairAbsMax
    # replaces AbsMax as the op itself.
    scaling_stats_op = StatsOp.MAX
    scaling_stats_impl = QuantilePairAbsMax
    scaling_per_output_type = ScalingPerOutputType.TENSOR
    weight_low_quantile = 0.0001
    weight_high_quantile = 0.9999


class _StaticActQuant(_IntGrid, ActQuantSolver):
    """Static per-tensor activation range held in a learnable parameter (set by calibration)."""

    scaling_impl_type = ScalingImplType.PARAMETER
    scaling_per_output_type = ScalingPerOutputType.TENSOR
    scaling_init = 1.0


class AsymmetricActQuant(_StaticActQuant):
    """Unsigned activations with a learnable integer zero point (the paper, eq. 2)."""

    signed = False
    zero_point_impl = ParameterZeroPoint
    zero_point_init = 0.0
    quantize_zero_point = True


class SymmetricActQuant(_StaticActQuant):
    """Signed activations, zero point 0 (TensorRT's only activation form)."""

    signed = True
    zero_point_impl = ZeroZeroPoint


class UnsignedActQuant(_StaticActQuant):
    """Unsigned activations, zero point 0 (non-negative tensors, symmetric schemes)."""

    signed = False
    zero_point_impl = ZeroZeroPoint


def weight_quantizer(config: QuantConfig) -> type[ExtendedInjector]:
    """The weight quantizer for ``config``."""
    low, high = config.effective_weight_quantiles
    per_output = ScalingPerOutputType.CHANNEL if config.per_channel else ScalingPerOutputType.TENSOR
    scaling = (
        ScalingImplType.PARAMETER_FROM_STATS
        if config.weight_scaling == "learned"
        else ScalingImplType.STATS
    )
    # "auto" without a per-layer choice (a layer calibration never reached) falls back to mse.
    stats = MSEClipAbsMax if config.weight_range in ("mse", "auto") else QuantilePairAbsMax
    return SymmetricWeightQuant.let(
        bit_width=config.weight_bits,
        scaling_stats_impl=stats,
        scaling_per_output_type=per_output,
        scaling_impl_type=scaling,
        weight_low_quantile=low,
        weight_high_quantile=high,
    )


def act_quantizer(config: QuantConfig, unsigned: bool = False) -> type[ExtendedInjector]:
    """The activation quantizer for ``config`` (asymmetric or symmetric); ``unsigned`` picks
    `UnsignedActQuant` for a symmetric scheme (a tensor known to be non-negative)."""
    if config.act_scheme == "asymmetric":
        base = AsymmetricActQuant
    else:
        base = UnsignedActQuant if unsigned else SymmetricActQuant
    return base.let(bit_width=config.act_bits)


def _tensor_quant(proxy: Module) -> Module:
    return proxy.fused_activation_quant_proxy.tensor_quant


def is_asymmetric(proxy: Module) -> bool:
    """True when an activation quant proxy carries a learnable zero point."""
    return isinstance(_tensor_quant(proxy).zero_point_impl, ParameterZeroPoint)


def set_act_range(proxy: Module, low: float, high: float) -> None:
    """Set a static activation quantizer so that its grid spans [low, high].

    The range is widened to contain 0 (zero must be exact: padding and ReLU produce it) and to
    at least `MIN_RANGE`, so a constant tensor never gives a zero or NaN scale. Asymmetric:
    scale = (high - low) / (2^n - 1), zero point = round(-low / scale). Symmetric:
    scale = max(|low|, |high|) / (2^(n-1) - 1); unsigned with zero point 0 (low is 0 then):
    scale = high / (2^n - 1).
    """
    if not (math.isfinite(low) and math.isfinite(high)):
        raise CalibrationError(
            f"activation range [{low}, {high}] is not finite: the calibration data or the model "
            "produced NaN/Inf; check the inputs and the float model's outputs."
        )
    tensor_quant = _tensor_quant(proxy)
    low, high = min(low, 0.0), max(high, 0.0)
    bit_width = tensor_quant.msb_clamp_bit_width_impl()
    # Brevitas divides the stored value by this integer threshold to get the scale.
    threshold = float(tensor_quant.int_scaling_impl(bit_width))
    levels = 2 ** int(bit_width)
    with torch.no_grad():
        if is_asymmetric(proxy):
            scale = max(high - low, MIN_RANGE) / (levels - 1)
            tensor_quant.scaling_impl.value.fill_(scale * threshold)
            tensor_quant.zero_point_impl.value.fill_(-low)
        elif not proxy.is_signed:
            scale = max(high / (levels - 1), MIN_RANGE)
            tensor_quant.scaling_impl.value.fill_(scale * threshold)
        else:
            scale = max(high / (levels // 2 - 1), -low / (levels // 2), MIN_RANGE)
            tensor_quant.scaling_impl.value.fill_(scale * threshold)


def act_grid(proxy: Module) -> tuple[float, int, int]:
    """(scale, integer zero point, bit width) of a static activation quantizer."""
    tensor_quant = _tensor_quant(proxy)
    placeholder = torch.zeros(1, device=tensor_quant.scaling_impl.value.device)
    bit_width = tensor_quant.msb_clamp_bit_width_impl()
    scale = tensor_quant.scaling_impl(placeholder, tensor_quant.int_scaling_impl(bit_width))
    zero_point = tensor_quant.zero_point_impl(placeholder, scale, bit_width)
    return float(scale.detach()), int(round(float(zero_point.detach()))), int(bit_width)
