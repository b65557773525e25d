"""AdaRound (Nagel et al., 2020) on our Brevitas weight quantizers, for AR-BRECQ (§3.5).

While a block is reconstructed, each of its weight quantizers becomes a learned-round variant
of itself: the same injector with ``float_to_int_impl_type = LEARNED_ROUND`` and
``learned_round_impl_type = HARD_SIGMOID``, so Brevitas builds ``LearnedRoundSte`` around a
``LearnedRoundHardSigmoid`` (the rectified sigmoid h(V) = clamp(sigmoid(V) (ζ - γ) + γ, 0, 1)
with ζ = 1.1, γ = -0.1). The integer weight is ``floor(W / s) + h(V)``: soft while training,
``h(V) > 0.5`` once the rounding module is in eval mode. The float weights W and the scale s
stay fixed; only V is learned. V starts where h(V) equals the fractional part of W / s, so the
soft weight starts equal to the float weight.

At the end `AdaRoundWeight.harden` writes the hard-rounded weight s * int back into the layer
and puts the layer's original quantizer (round to nearest, same scale parameter) back: the
weight is then EXACTLY on its grid, round-to-nearest reproduces the learned choice, and the
model saves, loads and exports like any other quantized model.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from brevitas.core.function_wrapper.learned_round import LearnedRoundHardSigmoid, LearnedRoundSte
from brevitas.inject.enum import FloatToIntImplType, LearnedRoundImplType
from brevitas.nn.quant_layer import QuantWeightBiasInputOutputLayer
from torch import Tensor, nn

#: Stretch of the rectified sigmoid (AdaRound: ζ = 1.1, γ = -0.1).
ZETA = 1.1
GAMMA = -0.1


def _logit_for(rest: Tensor) -> Tensor:
    """V with h(V) = rest (the inverse of the rectified sigmoid inside (0, 1))."""
    p = ((rest - GAMMA) / (ZETA - GAMMA)).clamp(1e-6, 1 - 1e-6)
    return torch.log(p / (1 - p))


class AdaRoundWeight:
    """The learned rounding of one layer's weights (see the module docstring)."""

    def __init__(self, layer: QuantWeightBiasInputOutputLayer) -> None:
        self.layer = layer
        proxy = layer.weight_quant
        self._injector = proxy.quant_injector
        self._tensor_quant = proxy.tensor_quant
        self._active = True
        with torch.no_grad():
            reference = layer.quant_weight()  # round to nearest; initialises a learned scale
            scale = reference.scale
            self._nearest = reference.int(float_datatype=True)
        proxy.quant_injector = self._injector.let(
            float_to_int_impl_type=FloatToIntImplType.LEARNED_ROUND,
            learned_round_impl_type=LearnedRoundImplType.HARD_SIGMOID,
            learned_round_zeta=ZETA,
            learned_round_gamma=GAMMA,
        )
        # Keeps the (already initialised) scale parameter's value in the new quantizer.
        proxy.init_tensor_quant(preserve_state_dict=True)
        rounding = proxy.tensor_quant.int_quant.float_to_int_impl
        if not isinstance(rounding, LearnedRoundSte) or not isinstance(
            rounding.learned_round_impl, LearnedRoundHardSigmoid
        ):
            raise TypeError(f"expected a learned-round weight quantizer, got {type(rounding).__name__}")
        self.rounding = rounding
        with torch.no_grad():
            scaled = layer.weight / scale
            rounding.value.copy_(_logit_for(scaled - torch.floor(scaled)))
        rounding.learned_round_impl.train()

    @property
    def value(self) -> nn.Parameter:
        """V, the learned parameter (one per weight)."""
        return self.rounding.value

    def soft_rounding(self) -> Tensor:
        """h(V) in [0, 1] (differentiable)."""
        impl = self.rounding.learned_round_impl
        was_training = impl.training
        impl.train()
        try:
            return impl(self.rounding.value)
        finally:
            impl.train(was_training)

    def regularizer(self, beta: float) -> Tensor:
        """AdaRound's rounding regulariser sum(1 - |2 h(V) - 1|^β): 0 once every h is 0 or 1."""
        h = self.soft_rounding()
        return (1 - (2 * h - 1).abs().pow(beta)).sum()

    def harden(self) -> float:
        """Fix the rounding: write s * int into the weight and restore the original
        quantizer. Returns the share of weights rounded away from the nearest grid point."""
        self.rounding.learned_round_impl.eval()
        with torch.no_grad():
            hard = self.layer.quant_weight()
            ints = hard.int(float_datatype=True)
            self.layer.weight.copy_(hard.value)
        self.restore()
        with torch.no_grad():
            again = self.layer.quant_weight()
        if not torch.equal(again.value, self.layer.weight) or not torch.equal(
            again.int(float_datatype=True), ints
        ):
            raise RuntimeError("hardened AdaRound weights did not land exactly on their grid")
        return float((ints != self._nearest).float().mean())

    def restore(self) -> None:
        """Put the original round-to-nearest quantizer back (idempotent)."""
        if self._active:
            proxy = self.layer.weight_quant
            proxy.quant_injector = self._injector
            proxy.tensor_quant = self._tensor_quant
            self._active = False


@contextlib.contextmanager
def learned_rounding(layers: Sequence[QuantWeightBiasInputOutputLayer]) -> Iterator[list[AdaRoundWeight]]:
    """AdaRound on ``layers`` for the duration of the block; the original quantizers come back
    on exit, hardened or not (call `AdaRoundWeight.harden` to keep the learned rounding)."""
    weights: list[AdaRoundWeight] = []
    try:
        for layer in layers:
            weights.append(AdaRoundWeight(layer))
        yield weights
    finally:
        for weight in weights:
            weight.restore()


def beta_schedule(step: int, steps: int, warmup_steps: int, start: float, end: float) -> float:
    """β for the regulariser: ``start`` until warm-up ends, then linear down to ``end``."""
    if step < warmup_steps:
        return start
    progress = (step - warmup_steps) / max(1, steps - warmup_steps)
    return end + (start - end) * max(0.0, 1.0 - progress)
