"""Mixed precision: weight bits per layer under a budget, then vanilla PTQ (or a refinement).

The budget is ``effective_bits`` (the average weight bit width weighted by each layer's
parameter count) or ``max_bytes`` (weight storage, bits x parameters / 8). Every layer starts
at the highest of ``bits``; the greedy search then lowers, one step at a time, the layer whose
next step down costs the least output error (from `layer_sensitivity`) per byte it saves,
until the budget holds (the anchors: ModelOpt's auto_quantize, HAWQ's sensitivity per size),
and spends what the last step left over raising layers back up. The greedy search adds up
one-layer errors, so the uniform assignment at the budget (every layer at the same bits) is
quantized beside it and the one closer to the float output wins, compared on
``selection_samples`` inputs (more than the sensitivity's: on 8 the choice followed noise).
The choice goes into ``QuantConfig.layers``, so the result is an ordinary quantized model that
saves, loads, describes and exports with its per-layer bits. ``refine`` then runs bound
distillation (`gan_brevitas.ptq.bound_distill`), STE-/AR-BRECQ (`gan_brevitas.ptq.brecq`) or
GPTQ / Qronos rounding (`gan_brevitas.ptq.gptq`) with those bits instead of plain vanilla PTQ.
"""

from __future__ import annotations

import dataclasses
import heapq
from dataclasses import dataclass, field
from typing import Optional, Sequence

from torch import nn

from gan_brevitas.errors import ConfigError
from gan_brevitas.option_checks import check_positive_ints, check_flags
from gan_brevitas.inputs import InputSource
from gan_brevitas.ptq.bound_distill import BoundDistillOptions, bound_distill
from gan_brevitas.ptq.bias_correction import correct_biases
from gan_brevitas.ptq.brecq import ArBrecqOptions, SteBrecqOptions, block_reconstruction
from gan_brevitas.ptq.gptq import GptqOptions, gptq
from gan_brevitas.ptq.sensitivity import (SENSITIVITY_SAMPLES, SensitivityTable, _check_bits, layer_sensitivity,
                                          output_mse, reference_outputs)
from gan_brevitas.ptq.vanilla import vanilla_ptq
from gan_brevitas.quant.config import LEARNED_WEIGHT_STEP_METHODS, QuantConfig


#: What ``refine`` may run after the bit allocation.
REFINEMENTS = (None, "bound-distill", "ste-brecq", "ar-brecq", "gptq", "qronos")
#: Refinements that only round, no training steps: each candidate assignment is made with the
#: refinement (twice its time: SRGAN x4 with Qronos on 64 inputs took 59 min on 2 cores) and the
#: model closer to float kept.
ROUNDING_REFINEMENTS = (None, "gptq", "qronos")


@dataclass(frozen=True)
class MixedPrecisionOptions:
    """Options of ``recipes.quantize(gen, "mixed-precision", effective_bits=5.0, ...)``.

    Attributes:
        effective_bits: average weight bits (weighted by parameter count) to stay at or under.
        max_bytes: weight bytes (bits x parameters / 8) to stay at or under; give exactly one
            of the two.
        bits: the weight bit widths a layer may get.
        protect_ends: keep the first and the last layer (network order) at the highest of
            ``bits`` when each holds at most `PROTECT_SHARE` of the weights: they see the raw
            input and write the image.
        num_samples: calibration inputs of the vanilla PTQ that follows.
        sensitivity_samples: inputs the per-layer sensitivity is measured on.
        selection_samples: inputs the greedy and the uniform assignment are compared on, once
            each is quantized (fewer if ``inputs`` ends sooner). A DCGAN at 5.0 bits with Qronos:
            on 8 latents the greedy one looked closer (output MSE 0.0060 vs 0.0085), on 64 the
            uniform one (0.0084 vs 0.0065), as on 1024 held-out latents (27.27 vs 27.88 dB).
        refine: None (vanilla PTQ with the chosen bits), "bound-distill" (then learn the
            quantizers against the float model; weight step sizes become learned),
            "ste-brecq" (block reconstruction of weights and quantizers) or "ar-brecq" (block
            reconstruction with AdaRound; weight step sizes become learned), "gptq" or
            "qronos" (weights rounded column by column against each layer's inputs; no steps).
        refine_steps: steps of the refinement (BRECQ: per block).
        progress: tqdm progress bars.
    """

    effective_bits: Optional[float] = None
    max_bytes: Optional[int] = None
    bits: tuple[int, ...] = field(default=(4, 5, 6, 8))
    protect_ends: bool = True
    num_samples: int = 500
    sensitivity_samples: int = SENSITIVITY_SAMPLES
    selection_samples: int = 64
    refine: Optional[str] = None
    refine_steps: int = 200
    progress: bool = True

    def __post_init__(self) -> None:
        if (self.effective_bits is None) == (self.max_bytes is None):
            raise ConfigError("mixed-precision needs exactly one budget: effective_bits=5.0 or max_bytes=N.")
        if self.effective_bits is not None and (
            isinstance(self.effective_bits, bool) or not isinstance(self.effective_bits, (int, float))
            or self.effective_bits <= 0
        ):
            raise ConfigError(f"effective_bits must be a positive number such as 5.0, got {self.effective_bits!r}.")
        if self.max_bytes is not None:
            check_positive_ints(self, "max_bytes")
        object.__setattr__(self, "bits", _check_bits(self.bits))
        if self.refine not in REFINEMENTS:
            raise ConfigError(f"refine must be one of {REFINEMENTS}, got {self.refine!r}.")
        check_positive_ints(self, "num_samples", "sensitivity_samples", "selection_samples", "refine_steps")
        check_flags(self, "progress", "protect_ends")


def weight_bytes(bits: dict[str, int], params: dict[str, int]) -> float:
    """Weight storage in bytes of a per-layer assignment."""
    return sum(params[name] * b for name, b in bits.items()) / 8


def effective_bits(bits: dict[str, int], params: dict[str, int]) -> float:
    """Average weight bits weighted by parameter count."""
    return sum(params[name] * b for name, b in bits.items()) / sum(params[name] for name in bits)


def budget_bytes(params: dict[str, int], effective: Optional[float], max_bytes: Optional[int]) -> float:
    """The budget in weight bytes: ``max_bytes``, or ``effective`` bits per parameter."""
    return max_bytes if max_bytes is not None else effective * sum(params.values()) / 8


def uniform_bits(params: dict[str, int], bits: tuple[int, ...], limit: float) -> Optional[dict[str, int]]:
    """Every layer at the highest of ``bits`` that fits the budget (None: none fits)."""
    fitting = [b for b in bits if weight_bytes(dict.fromkeys(params, b), params) <= limit + 1e-9]
    return dict.fromkeys(params, fitting[-1]) if fitting else None


def assign_bits(table: SensitivityTable, bits: tuple[int, ...], *, effective: Optional[float] = None,
                max_bytes: Optional[int] = None, protected: Sequence[str] = ()) -> dict[str, int]:
    """Per-layer weight bits: greedy by output error per byte saved until the budget holds;
    ``protected`` layers stay at the highest bits."""
    params = table.params()
    limit = budget_bytes(params, effective, max_bytes)
    lowest = {name: bits[-1] if name in protected else bits[0] for name in params}
    if weight_bytes(lowest, params) > limit + 1e-9:
        raise ConfigError(
            f"the budget cannot be met: even {bits[0]}-bit weights everywhere"
            f"{' but the protected first / last layers' if protected else ''} need "
            f"{weight_bytes(lowest, params):.0f} bytes ({effective_bits(lowest, params):.2f} effective bits); "
            "raise the budget, allow fewer bits (bits=(2, 4, 8)) or protect_ends=False."
        )
    chosen = {name: bits[-1] for name in params}
    heap: list[tuple[float, str]] = []

    def push(name: str) -> None:
        level = bits.index(chosen[name])
        if level == 0 or name in protected:
            return
        lower = bits[level - 1]
        cost = table.mse(name, lower) - table.mse(name, chosen[name])
        saved = params[name] * (chosen[name] - lower) / 8
        heapq.heappush(heap, (cost / saved, name))

    for name in params:
        push(name)
    while weight_bytes(chosen, params) > limit + 1e-9:
        _, name = heapq.heappop(heap)
        chosen[name] = bits[bits.index(chosen[name]) - 1]
        push(name)
    return _spend_leftover(chosen, table, bits, limit)


def _spend_leftover(chosen: dict[str, int], table: SensitivityTable, bits: tuple[int, ...],
                    limit: float) -> dict[str, int]:
    """Raise layers back up while the budget allows, most error removed per byte first: the
    last step down of a large layer can undershoot the budget by far (a DCGAN's first layer
    holds most weights), and that room is better spent on smaller layers."""
    params = table.params()
    while True:
        spare = limit + 1e-9 - weight_bytes(chosen, params)
        best: Optional[tuple[float, str]] = None
        for name, current in chosen.items():
            level = bits.index(current)
            if level == len(bits) - 1:
                continue
            cost = params[name] * (bits[level + 1] - current) / 8
            gain = table.mse(name, current) - table.mse(name, bits[level + 1])
            if cost <= spare and gain > 0 and (best is None or gain / cost > best[0]):
                best = (gain / cost, name)
        if best is None:
            return chosen
        chosen[best[1]] = bits[bits.index(chosen[best[1]]) + 1]


#: Batch size of the candidates' comparison (`MixedPrecisionOptions.selection_samples`).
SELECTION_BATCH = 8

#: The first / last layer is protected only while it holds at most this share of the weights.
PROTECT_SHARE = 0.1


def _protected_ends(table: SensitivityTable) -> tuple[str, ...]:
    """The first and the last layer, each when it holds at most `PROTECT_SHARE` of the weights
    (a DCGAN's first layer holds most of them: keeping it at 8 bits would break the budget)."""
    params, layers = table.params(), table.layers
    total = sum(params.values())
    ends = dict.fromkeys((layers[0], layers[-1])) if len(layers) > 2 else {}
    return tuple(name for name in ends if params[name] <= PROTECT_SHARE * total)


def mixed_precision(float_model: nn.Module, config: QuantConfig, inputs: InputSource,
                    options: MixedPrecisionOptions, data_range: float = 2.0) -> nn.Module:
    """Measure sensitivity, assign bits under the budget, then vanilla PTQ (or ``refine``) with those bits.

    The returned model carries the config with the per-layer bits as ``resolved_quant_config``
    (recorded by `recipes.quantize`).
    """
    top = config.replace(weight_bits=options.bits[-1])
    table = layer_sensitivity(float_model, inputs, top, options.bits, options.sensitivity_samples, data_range)
    protected = _protected_ends(table) if options.protect_ends else ()
    chosen = assign_bits(table, options.bits, effective=options.effective_bits, max_bytes=options.max_bytes,
                         protected=protected)
    uniform = uniform_bits(table.params(), options.bits,
                           budget_bytes(table.params(), options.effective_bits, options.max_bytes))
    candidates = [chosen] + ([uniform] if uniform is not None and uniform != chosen else [])
    if options.refine in ROUNDING_REFINEMENTS:
        # make each candidate as it would be kept, and keep the better model
        qmodel, chosen = _best_model(float_model, top, inputs, options, candidates)
    else:
        if len(candidates) > 1:
            chosen = _best_model(float_model, top, inputs, dataclasses.replace(options, refine=None), candidates)[1]
        qmodel = _quantize_with_bits(float_model, _with_bits(top, chosen), inputs, options)
    if "resolved_quant_config" not in qmodel.__dict__:  # vanilla PTQ resolved weight_range="auto"
        qmodel.resolved_quant_config = _with_bits(top, chosen)
    return qmodel


def _with_bits(top: QuantConfig, chosen: dict[str, int]) -> QuantConfig:
    """``top`` with a per-layer entry for every layer whose bits differ from its own."""
    per_layer = tuple((name, {"weight_bits": b}) for name, b in chosen.items() if b != top.weight_bits)
    return top.replace(layers=top.layers + per_layer)


def _best_model(float_model: nn.Module, top: QuantConfig, inputs: InputSource, options: MixedPrecisionOptions,
                assignments: Sequence[dict[str, int]]) -> tuple[nn.Module, dict[str, int]]:
    """The model (vanilla PTQ or a rounding refinement, biases corrected as the config says)
    closest to the float output on ``selection_samples`` inputs, and its assignment. The greedy
    search adds up one-layer errors; where layers interact, every layer at the same bits can do
    better, so the uniform assignment at the budget is measured beside it."""
    pairs = reference_outputs(float_model, inputs, options.selection_samples, batch_size=SELECTION_BATCH)
    best: Optional[tuple[float, nn.Module, dict[str, int]]] = None
    for chosen in assignments:
        qmodel = _quantize_with_bits(float_model, _with_bits(top, chosen), inputs,
                                     dataclasses.replace(options, progress=False))
        if top.bias_correction:
            correct_biases(qmodel, float_model, inputs)
            qmodel.biases_corrected = True
        error = output_mse(qmodel, pairs)
        if best is None or error < best[0]:
            best = (error, qmodel, chosen)
    return best[1], best[2]


def _quantize_with_bits(float_model: nn.Module, resolved: QuantConfig, inputs: InputSource,
                        options: MixedPrecisionOptions) -> nn.Module:
    """Vanilla PTQ with the chosen per-layer bits, or the ``refine`` method with them."""
    n, steps, progress = options.num_samples, options.refine_steps, options.progress
    if options.refine in LEARNED_WEIGHT_STEP_METHODS:
        resolved = resolved.replace(weight_scaling="learned")
    if options.refine == "bound-distill":
        qmodel = bound_distill(float_model, resolved, inputs, BoundDistillOptions(
            steps=steps, num_samples=n, progress=progress))
    elif options.refine in ("ste-brecq", "ar-brecq"):
        kind = SteBrecqOptions if options.refine == "ste-brecq" else ArBrecqOptions
        brecq = kind(steps=steps, num_samples=n, calibration_samples=n, batch_size=min(4, n), progress=progress)
        qmodel = block_reconstruction(float_model, resolved, inputs, brecq, options.refine)
    elif options.refine in ("gptq", "qronos"):
        qmodel = gptq(float_model, resolved, inputs, GptqOptions(algorithm=options.refine, num_samples=n,
                                                                 progress=progress))
    else:
        return vanilla_ptq(float_model, resolved, inputs, num_samples=n, progress=progress)
    qmodel.resolved_quant_config = qmodel.__dict__.get("resolved_quant_config", resolved)
    return qmodel
