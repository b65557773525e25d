"""Vanilla PTQ calibration (§4.1): activation ranges from the FULL-PRECISION model.

Samples go through the float model one at a time (the paper: 500); forward hooks on the
float counterparts of the quantized layers observe each layer's input and output, a
`QuantileEMA` per tensor averages the per-sample quantiles (momentum 0.99 on the old value),
and the final ranges are written into the quantized model's activation quantizers.
With ``act_range="mse"`` the same hooks fill an `ActHistogram` per tensor instead (two passes
over the same samples, in batches of `MSE_BATCH`) and `mse_range` picks each range.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Iterator

import torch
from torch import nn
from tqdm.auto import tqdm

from gan_brevitas.errors import CalibrationError
from gan_brevitas.inputs import InputSource, iter_batches
from gan_brevitas.quant.config import QuantConfig
from gan_brevitas.quant.convert import quant_layers
from gan_brevitas.quant.quantizers import set_act_range
from gan_brevitas.quant.histogram import ActHistogram, mse_range
from gan_brevitas.quant.stats import QuantileEMA

log = logging.getLogger(__name__)

#: Batch size of the histogram passes of act_range="mse" (global statistics: order-free).
MSE_BATCH = 8


@contextlib.contextmanager
def _hooks(float_model: nn.Module, layer_names: list[str], record) -> Iterator[None]:
    """Call ``record(name, input, output)`` after every forward of the named float layers."""

    def hook(name: str):
        def call(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            record(name, args[0], output)

        return call

    handles = [float_model.get_submodule(name).register_forward_hook(hook(name)) for name in layer_names]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _ema_ranges(float_model: nn.Module, names: list[str], inputs: InputSource, config: QuantConfig,
                num_samples: int, progress: bool, device: torch.device) -> dict:
    low_q, high_q = config.effective_act_quantiles
    stats = {
        (name, side): QuantileEMA(low_q, high_q, config.quantile_momentum)
        for name in names
        for side in ("input", "output")
    }

    def record(name: str, x: torch.Tensor, y: torch.Tensor) -> None:
        stats[(name, "input")].update(x)
        stats[(name, "output")].update(y)

    with _hooks(float_model, names, record), torch.no_grad():
        for sample in tqdm(iter_batches(inputs, num_samples, batch_size=1), total=num_samples,
                           desc="calibrating activation ranges", disable=not progress):
            float_model(sample.to(device))
    return {key: (ema.range if ema.count else None) for key, ema in stats.items()}


def _mse_ranges(float_model: nn.Module, names: list[str], inputs: InputSource, config: QuantConfig,
                num_samples: int, progress: bool, device: torch.device) -> dict:
    batches = list(iter_batches(inputs, num_samples, batch_size=MSE_BATCH))
    hists = {(name, side): ActHistogram() for name in names for side in ("input", "output")}
    for observe in (ActHistogram.observe_range, ActHistogram.observe_values):
        def record(name: str, x: torch.Tensor, y: torch.Tensor) -> None:
            observe(hists[(name, "input")], x)
            observe(hists[(name, "output")], y)

        with _hooks(float_model, names, record), torch.no_grad():
            for batch in tqdm(batches, desc=f"activation histograms ({observe.__name__})",
                              disable=not progress):
                float_model(batch.to(device))
    symmetric = config.act_scheme == "symmetric"
    return {
        key: (mse_range(hist, config.act_bits, symmetric) if hist.seen else None)
        for key, hist in hists.items()
    }


def calibrate_activations(
    qmodel: nn.Module,
    float_model: nn.Module,
    inputs: InputSource,
    config: QuantConfig,
    num_samples: int = 500,
    progress: bool = True,
) -> dict[tuple[str, str], tuple[float, float]]:
    """Set every activation quantizer of ``qmodel`` from the float model's statistics.

    ``float_model`` must have the same module names as ``qmodel`` (it is the model
    `quantize_model` converted). Returns the (low, high) range per (layer, "input"/"output").
    """
    names = [name for name, _ in quant_layers(qmodel)]
    device = next(float_model.parameters()).device
    was_training = float_model.training
    float_model.eval()
    collect = _mse_ranges if config.act_range == "mse" else _ema_ranges
    try:
        found = collect(float_model, names, inputs, config, num_samples, progress, device)
    finally:
        float_model.train(was_training)
    unused = sorted({name for (name, _), value in found.items() if value is None})
    if len(unused) == len(names):
        raise CalibrationError("no quantized layer ran during calibration: check the inputs.")
    if unused:
        # e.g. StyleGAN's progression blocks above the output resolution.
        shown = ", ".join(unused[:4]) + (", ..." if len(unused) > 4 else "")
        log.warning("%d layer(s) never ran during calibration and keep placeholder ranges: %s",
                    len(unused), shown)
    ranges: dict[tuple[str, str], tuple[float, float]] = {}
    for (name, side), value in found.items():
        if value is None:
            continue
        ranges[(name, side)] = value
        layer = qmodel.get_submodule(name)
        set_act_range(layer.input_quant if side == "input" else layer.output_quant, *value)
    return ranges
