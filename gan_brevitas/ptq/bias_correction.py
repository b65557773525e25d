"""Bias correction (``QuantConfig.bias_correction``): remove the mean shift quantization adds.

After calibration, each quantized conv / linear layer's output is compared with the same
layer in float on the same input, over the calibration inputs; the per-output-channel mean
of (float - quantized) is added to its bias. This is Brevitas's `bias_correction_mode` (the
fast bias correction of NNCF: each layer's own error, the float output passed on so errors do
not accumulate); the output quantizers are off while the error is measured, so the correction
goes into the accumulator. Layers without a bias are left as they are (a new bias would
change the architecture that `recipes.load` rebuilds).
"""

from __future__ import annotations

import warnings

import torch
from torch import nn
from tqdm.auto import tqdm

from gan_brevitas.errors import CalibrationError
from gan_brevitas.inputs import InputSource, iter_batches

#: Calibration inputs the mean shift is measured on, and how many go through at once.
BIAS_CORRECTION_SAMPLES = 32
BIAS_CORRECTION_BATCH = 8


def correct_biases(
    qmodel: nn.Module,
    inputs: InputSource,
    num_samples: int = BIAS_CORRECTION_SAMPLES,
    batch_size: int = BIAS_CORRECTION_BATCH,
    progress: bool = False,
) -> nn.Module:
    """Correct the biases of ``qmodel`` in place (see the module docstring); returns it."""
    with warnings.catch_warnings():  # brevitas.graph warns about optional packages on import
        warnings.simplefilter("ignore")
        from brevitas.graph.calibrate import bias_correction_mode

    device = next(qmodel.parameters()).device
    was_training = qmodel.training
    qmodel.eval()
    try:
        with torch.no_grad(), bias_correction_mode(qmodel, skip_if_no_bias=True):
            for batch in tqdm(iter_batches(inputs, num_samples, batch_size), desc="bias correction",
                              disable=not progress):
                qmodel(batch.to(device))
    except RuntimeError as err:
        if "called multiple times" in str(err):
            raise CalibrationError(
                "bias correction needs each quantized layer to run once per forward, and one of "
                "this model's layers runs more often: quantize with bias_correction=False."
            ) from None
        raise
    finally:
        qmodel.train(was_training)
    return qmodel
