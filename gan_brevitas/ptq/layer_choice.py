"""``weight_range="auto"``: per layer, the weight range estimator of least layer-output error.

For every layer `quantize_model` converts, the layer's weights are quantized with each of
min-max, MSE and quantile ranges (the config's Brevitas weight quantizer, at the layer's bits
and granularity); forward hooks on the folded float model run each quantized weight on the
layer's float input and add up ``||layer(x; Q(W)) - layer(x; W)||^2`` over the calibration
inputs. The estimator with the least error goes into ``QuantConfig.layers`` for that layer.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import Tensor, nn
from torch.func import functional_call

from gan_brevitas.inputs import InputSource, iter_batches
from gan_brevitas.quant.config import QuantConfig
from gan_brevitas.quant.convert import quant_layers, quantize_model

#: The estimators compared, in order of preference on ties.
AUTO_CANDIDATES: tuple[str, ...] = ("minmax", "mse", "quantile")
#: Calibration inputs the layer-output errors are measured on, and the batch they go in.
AUTO_SAMPLES = 16
AUTO_BATCH = 4


@contextlib.contextmanager
def _error_hooks(float_model: nn.Module, weights: dict[str, dict[str, Tensor]],
                 errors: dict[str, dict[str, float]]) -> Iterator[None]:
    busy = False  # the functional calls below run the same module: do not record them

    def hook(name: str):
        def record(module: nn.Module, args: tuple, output: Tensor) -> None:
            nonlocal busy
            if busy:
                return
            busy = True
            try:
                for kind, weight in weights[name].items():
                    out = functional_call(module, {"weight": weight}, args)
                    errors[name][kind] += float((out - output).double().square().sum())
            finally:
                busy = False

        return record

    handles = [float_model.get_submodule(name).register_forward_hook(hook(name)) for name in weights]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def choose_weight_ranges(float_model: nn.Module, config: QuantConfig, inputs: InputSource,
                         num_samples: int = AUTO_SAMPLES) -> QuantConfig:
    """``config`` with a ``layers`` entry per layer naming its best weight range estimator."""
    weights: dict[str, dict[str, Tensor]] = {}
    for kind in AUTO_CANDIDATES:
        layers = quant_layers(quantize_model(float_model, config.replace(weight_range=kind)))
        for name, layer in layers:
            kind_for_layer = config.for_layer(name).weight_range
            if kind_for_layer == "auto":
                with torch.no_grad():
                    weights.setdefault(name, {})[kind] = layer.quant_weight().value.detach()
    errors = {name: dict.fromkeys(AUTO_CANDIDATES, 0.0) for name in weights}
    device = next(float_model.parameters()).device
    float_model.eval()
    with _error_hooks(float_model, weights, errors), torch.no_grad():
        for batch in iter_batches(inputs, num_samples, AUTO_BATCH):
            float_model(batch.to(device))
    choice = tuple((name, {"weight_range": min(AUTO_CANDIDATES, key=lambda k: errors[name][k])})
                   for name in weights)
    return config.replace(layers=config.layers + choice)
