"""Vanilla PTQ (§3.5, §4.1): weights from their quantiles, activations from the moving
average of per-sample quantiles of the full-precision model. Nothing is trained."""

from __future__ import annotations

from torch import nn

from gan_brevitas.inputs import InputSource
from gan_brevitas.ptq.calibrate import calibrate_activations
from gan_brevitas.quant.config import QuantConfig
from gan_brevitas.quant.convert import quantize_model


def vanilla_ptq(
    float_model: nn.Module,
    config: QuantConfig,
    inputs: InputSource,
    num_samples: int = 500,
    progress: bool = True,
) -> nn.Module:
    """Convert ``float_model`` (already folded) and calibrate it; returns the quantized copy."""
    qmodel = quantize_model(float_model, config)
    calibrate_activations(qmodel, float_model, inputs, config, num_samples=num_samples, progress=progress)
    return qmodel.eval()
