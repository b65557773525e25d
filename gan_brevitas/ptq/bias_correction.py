"""Bias correction (``QuantConfig.bias_correction``): remove the mean shift quantization adds.

Sequential, against the float network: the folded float model and the quantized model run the
same calibration batches; for every quantized conv / linear layer with a bias, in the order
the quantized model runs them, the per-output-channel mean of (float network's output of that
layer - quantized network's output of that layer, before its output quantizer) is added to the
bias, and the corrected output goes on, so each later layer is corrected on the input it will
really see (upstream quantization and upstream corrections included; the anchors: AIMET's and
NNCF's bias correction, Brevitas's `bias_correction_mode` corrects each layer on a float input
instead). Over several batches the correction is the running mean of the per-batch residuals.
Layers without a bias are left as they are (a new bias would change the architecture that
`recipes.load` rebuilds).
"""

from __future__ import annotations

import torch
from brevitas.quant_tensor import QuantTensor
from torch import Tensor, nn

from gan_brevitas.errors import CalibrationError
from gan_brevitas.inputs import InputSource, iter_batches
from gan_brevitas.ptq.blocks import hooks_removed_on_exit
from gan_brevitas.quant.convert import QuantLatentProjection, quant_layers

#: Calibration inputs the mean shift is measured on, and how many go through at once.
BIAS_CORRECTION_SAMPLES = 32
BIAS_CORRECTION_BATCH = 8


def _channel_mean(x: Tensor | QuantTensor) -> Tensor:
    x = x.value if isinstance(x, QuantTensor) else x
    return x.detach().transpose(0, 1).reshape(x.shape[1], -1).double().mean(1)


def _float_means(float_model: nn.Module, names: list[str], batches: list[Tensor],
                 per_row: frozenset[str] = frozenset()) -> dict[str, list[Tensor]]:
    """Per-channel means of the float layers' outputs; per output row (flattened) for the
    ``per_row`` layers (latent projections: the quantized layer is a Linear, its bias per row)."""
    means: dict[str, list[Tensor]] = {name: [] for name in names}
    handles = [float_model.get_submodule(name).register_forward_hook(
        lambda module, args, out, name=name: means[name].append(
            _channel_mean(out.flatten(1) if name in per_row else out))) for name in names]
    with hooks_removed_on_exit(handles), torch.no_grad():
        for batch in batches:
            float_model(batch)
    return means


def correct_biases(
    qmodel: nn.Module,
    float_model: nn.Module,
    inputs: InputSource,
    num_samples: int = BIAS_CORRECTION_SAMPLES,
    batch_size: int = BIAS_CORRECTION_BATCH,
) -> nn.Module:
    """Correct the biases of ``qmodel`` in place against ``float_model`` (the folded float copy
    it was converted from, same module names; see the module docstring); returns ``qmodel``."""
    layers = [(name, layer) for name, layer in quant_layers(qmodel) if layer.bias is not None]
    device = next(qmodel.parameters()).device
    batches = [batch.to(device) for batch in iter_batches(inputs, num_samples, batch_size)]
    was_training = (qmodel.training, float_model.training)
    qmodel.eval()
    float_model.eval()
    try:
        per_row = frozenset(name for name, layer in layers if isinstance(layer, QuantLatentProjection))
        reference = _float_means(float_model, [name for name, _ in layers], batches, per_row)
        step = 0

        def correct(name: str, layer: nn.Module):
            def hook(module: nn.Module, args: tuple) -> tuple:
                seen = reference[name]
                if len(seen) != len(batches):
                    raise CalibrationError(
                        "bias correction needs each quantized layer to run once per forward, and "
                        f"{name} does not: quantize with bias_correction=False.")
                accumulator = args[0].value if isinstance(args[0], QuantTensor) else args[0]
                residual = (seen[step] - _channel_mean(accumulator)) / (step + 1)
                layer.bias.data += residual.to(layer.bias.dtype)
                return (accumulator + residual.to(accumulator.dtype).view(1, -1, *[1] * (accumulator.dim() - 2)),)

            return hook

        handles = [layer.output_quant.register_forward_pre_hook(correct(name, layer)) for name, layer in layers]
        with hooks_removed_on_exit(handles), torch.no_grad():
            for step, batch in enumerate(batches):
                qmodel(batch)
    finally:
        qmodel.train(was_training[0])
        float_model.train(was_training[1])
    return qmodel
