"""Vanilla PTQ calibration (§4.1): activation ranges from the FULL-PRECISION model.

Samples go through the float model one at a time (the paper: 500); forward hooks on the
float counterparts of the quantized layers observe each layer's input and output, a
`QuantileEMA` per tensor averages the per-sample quantiles (momentum 0.99 on the old value),
and the final ranges are written into the quantized model's activation quantizers.
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
from gan_brevitas.quant.stats import QuantileEMA

log = logging.getLogger(__name__)


@contextlib.contextmanager
def _observe(
    float_model: nn.Module, layer_names: list[str], config: QuantConfig
) -> Iterator[dict[tuple[str, str], QuantileEMA]]:
    low_q, high_q = config.effective_act_quantiles
    stats = {
        (name, side): QuantileEMA(low_q, high_q, config.quantile_momentum)
        for name in layer_names
        for side in ("input", "output")
    }

    def hook(name: str):
        def record(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            stats[(name, "input")].update(args[0])
            stats[(name, "output")].update(output)

        return record

    handles = [float_model.get_submodule(name).register_forward_hook(hook(name)) for name in layer_names]
    try:
        yield stats
    finally:
        for handle in handles:
            handle.remove()


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
    try:
        with _observe(float_model, names, config) as stats, torch.no_grad():
            for sample in tqdm(
                iter_batches(inputs, num_samples, batch_size=1),
                total=num_samples,
                desc="calibrating activation ranges",
                disable=not progress,
            ):
                float_model(sample.to(device))
    finally:
        float_model.train(was_training)
    ranges: dict[tuple[str, str], tuple[float, float]] = {}
    unused = sorted({name for (name, _), ema in stats.items() if ema.count == 0})
    if len(unused) == len(names):
        raise CalibrationError("no quantized layer ran during calibration: check the inputs.")
    if unused:
        # e.g. StyleGAN's progression blocks above the output resolution.
        shown = ", ".join(unused[:4]) + (", ..." if len(unused) > 4 else "")
        log.warning("%d layer(s) never ran during calibration and keep placeholder ranges: %s",
                    len(unused), shown)
    for (name, side), ema in stats.items():
        if ema.count == 0:
            continue
        ranges[(name, side)] = ema.range
        layer = qmodel.get_submodule(name)
        set_act_range(layer.input_quant if side == "input" else layer.output_quant, *ema.range)
    return ranges
