"""Vanilla PTQ calibration (§4.1): activation ranges from the FULL-PRECISION model.

Samples go through the float model one at a time (the paper: 500); forward hooks on the
float counterparts of the quantized layers (and of the activation points, see
`gan_brevitas.quant.points`) observe each layer's input and output, a
`QuantileEMA` per tensor averages the per-sample quantiles (momentum 0.99 on the old value),
and the final ranges are written into the quantized model's activation quantizers.
With ``act_range="mse"`` the same hooks fill an `ActHistogram` per tensor instead (two passes
over the same samples, in batches of `MSE_BATCH`) and `mse_range` picks each range.
Last, quantizers whose input already lies on another quantizer's grid take that grid
(`align_grids`: exact, and the export then drops the repeated Q/DQ).
"""

from __future__ import annotations

import functools

import contextlib
import logging
from typing import Iterator

import torch
from torch import nn
from tqdm.auto import tqdm

from gan_brevitas.errors import CalibrationError
from gan_brevitas.inputs import InputSource, iter_batches
from gan_brevitas.quant.config import QuantConfig
from gan_brevitas.quant.align import align_grids
from gan_brevitas.quant.convert import act_proxies
from gan_brevitas.quant.quantizers import set_act_range
from gan_brevitas.quant.histogram import ActHistogram, mse_range
from gan_brevitas.quant.stats import QuantileEMA

log = logging.getLogger(__name__)

#: Batch size of the histogram passes of act_range="mse" (global statistics: order-free).
MSE_BATCH = 8


@contextlib.contextmanager
def _hooks(float_model: nn.Module, points: list[tuple[str, str]], record) -> Iterator[None]:
    """Call ``record(name, input, output)`` after every forward of the float modules named in
    ``points`` ((module name, side) pairs)."""

    def hook(name: str):
        def call(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            record(name, args[0], output)

        return call

    names = list(dict.fromkeys(name for name, _ in points))
    handles = [float_model.get_submodule(name).register_forward_hook(hook(name)) for name in names]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _ema_ranges(float_model: nn.Module, points: list[tuple[str, str]], inputs: InputSource, config: QuantConfig,
                num_samples: int, progress: bool, device: torch.device) -> dict:
    low_q, high_q = config.effective_act_quantiles
    stats = {point: QuantileEMA(low_q, high_q, config.quantile_momentum) for point in points}

    def record(name: str, x: torch.Tensor, y: torch.Tensor) -> None:
        if (name, "input") in stats:
            stats[(name, "input")].update(x)
        if (name, "output") in stats:  # absent on the float tail
            stats[(name, "output")].update(y)

    with _hooks(float_model, points, record), torch.no_grad():
        for sample in tqdm(iter_batches(inputs, num_samples, batch_size=1), total=num_samples,
                           desc="calibrating activation ranges", disable=not progress):
            float_model(sample.to(device))
    return {key: (ema.range if ema.count else None) for key, ema in stats.items()}


def _mse_ranges(float_model: nn.Module, points: list[tuple[str, str]], inputs: InputSource, config: QuantConfig,
                num_samples: int, progress: bool, device: torch.device, unsigned_nonnegative: bool = False) -> dict:
    batches = list(iter_batches(inputs, num_samples, batch_size=MSE_BATCH))
    hists = {point: ActHistogram() for point in points}
    for observe in (ActHistogram.observe_range, ActHistogram.observe_values):
        def record(name: str, x: torch.Tensor, y: torch.Tensor) -> None:
            if (name, "input") in hists:
                observe(hists[(name, "input")], x)
            if (name, "output") in hists:  # absent on the float tail
                observe(hists[(name, "output")], y)

        with _hooks(float_model, points, record), torch.no_grad():
            for batch in tqdm(batches, desc=f"activation histograms ({observe.__name__})",
                              disable=not progress):
                float_model(batch.to(device))
    symmetric = config.act_scheme == "symmetric"
    return {
        key: (mse_range(hist, config.act_bits, symmetric, unsigned_nonnegative) if hist.seen else None)
        for key, hist in hists.items()
    }


def calibrate_activations(
    qmodel: nn.Module,
    float_model: nn.Module,
    inputs: InputSource,
    config: QuantConfig,
    num_samples: int = 500,
    progress: bool = True,
    align: bool = True,
    unsigned_nonnegative: bool = False,
) -> dict[tuple[str, str], tuple[float, float]]:
    """Set every activation quantizer of ``qmodel`` from the float model's statistics.

    ``float_model`` must have the same module names as ``qmodel`` (it is the model
    `quantize_model` converted). Returns the (low, high) range per (layer, "input"/"output").
    ``align``: then give repeated quantizers one grid (`align_grids`; one more forward pass);
    a caller that re-sets the ranges afterwards aligns itself. ``unsigned_nonnegative``: with
    symmetric MSE ranges, a tensor never negative gets the range of an unsigned grid, (0, high)
    (the caller gives it an unsigned quantizer; quantile ranges are (0, high) there anyway).
    """
    proxies = {(name, side): proxy for name, side, proxy in act_proxies(qmodel)}
    device = next(float_model.parameters()).device
    was_training = float_model.training
    float_model.eval()
    collect = (functools.partial(_mse_ranges, unsigned_nonnegative=unsigned_nonnegative)
               if config.act_range == "mse" else _ema_ranges)
    first: list[torch.Tensor] = []  # one model input, for align_grids
    keep_first = float_model.register_forward_pre_hook(lambda m, args: None if first else first.append(args[0]))
    try:
        found = collect(float_model, list(proxies), inputs, config, num_samples, progress, device)
    finally:
        keep_first.remove()
        float_model.train(was_training)
    unused = sorted({name for (name, _), value in found.items() if value is None})
    if len(unused) == len({name for name, _ in proxies}):
        raise CalibrationError("no quantized layer ran during calibration: check the inputs.")
    if unused:
        # e.g. StyleGAN's progression blocks above the output resolution.
        shown = ", ".join(unused[:4]) + (", ..." if len(unused) > 4 else "")
        log.warning("%d layer(s) never ran during calibration and keep placeholder ranges: %s (expected for "
                    "layers unused at this output size, such as a progressive generator's higher-resolution "
                    "blocks; check the calibration inputs otherwise)", len(unused), shown)
    ranges: dict[tuple[str, str], tuple[float, float]] = {}
    for (name, side), value in found.items():
        if value is None:
            continue
        ranges[(name, side)] = value
        set_act_range(proxies[(name, side)], *value)
    if align:
        align_grids(qmodel, first[0][:1] if first else None)
    return ranges
