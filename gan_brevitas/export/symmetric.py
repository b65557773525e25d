"""Convert a model with the paper's asymmetric (uint8 + zero point) activations to symmetric
int8 activations, the only kind TensorRT runs (and, with unsigned uint8 for tensors that are
never negative, the kind OpenVINO's int8 kernels take without zero-point compensation).

Why re-calibration and not a formula: an asymmetric grid [(-zp) * s, (255 - zp) * s] cannot be
expressed as a symmetric one without either halving its resolution (post-ReLU tensors waste
the negative half) or shifting the tensor, and the shift folds exactly into the next layer's
bias only where that layer has no zero padding (a padded border would see the shift too).
So the symmetric ranges are measured again, the same way vanilla PTQ measures them (quantiles
of the float model's layer inputs and outputs over the given inputs), on a float twin of the
quantized model that carries its (possibly trained) weights. Weights, weight quantizer state
and biases are kept as they are.
"""

from __future__ import annotations

import logging
from typing import Optional

from brevitas.nn import QuantConv2d, QuantConvTranspose2d, QuantLinear
from torch import nn

from gan_brevitas.errors import ExportError
from gan_brevitas.inputs import InputSource, iter_batches
from gan_brevitas.ptq.calibrate import calibrate_activations
from gan_brevitas.quant.align import align_grids
from gan_brevitas.quant.config import QuantConfig
from gan_brevitas.quant.convert import (QUANT_LAYER_TABLE, QuantActPoint, QuantLatentProjection, act_proxies, quant_layers,
                                        quantize_model, replace_module)
from gan_brevitas.quant.latent_projection import LatentProjection
from gan_brevitas.quant.points import ActPoint
from gan_brevitas.quant.quantizers import is_asymmetric, set_act_range
from gan_brevitas.quant.stats import MSEClipAbsMax

log = logging.getLogger(__name__)

#: Brevitas layer class -> the torch layer it was converted from.
FLOAT_OF: dict[type[nn.Module], type[nn.Module]] = {
    QuantConv2d: nn.Conv2d,
    QuantConvTranspose2d: nn.ConvTranspose2d,
    QuantLinear: nn.Linear,
    QuantLatentProjection: LatentProjection,
}

_ACT_KEYS = (".input_quant.", ".output_quant.", ".act_quant.")


def has_asymmetric_activations(qmodel: nn.Module) -> bool:
    """True when any activation quantizer of ``qmodel`` has a zero point."""
    return any(proxy.is_quant_enabled and is_asymmetric(proxy) for _, _, proxy in act_proxies(qmodel))


def float_twin(qmodel: nn.Module) -> nn.Module:
    """A float copy of a quantized model: every Brevitas layer back to its torch class with the
    same float weights and biases (the module names are unchanged)."""
    import copy

    twin = copy.deepcopy(qmodel)
    for name, layer in list(quant_layers(twin)):
        float_cls = FLOAT_OF.get(type(layer))
        if float_cls is None:
            raise ExportError(
                f"layer {name!r} is a {type(layer).__name__}, which the symmetric conversion does "
                "not know: quantize with QuantConfig(act_scheme='symmetric') instead."
            )
        _, attributes = QUANT_LAYER_TABLE[float_cls]
        kwargs = {attr: getattr(layer, attr) for attr in attributes}
        plain = float_cls(**kwargs, bias=layer.bias is not None, device="meta")
        plain.weight = nn.Parameter(layer.weight.detach().clone())
        if layer.bias is not None:
            plain.bias = nn.Parameter(layer.bias.detach().clone())
        plain.train(layer.training)
        replace_module(twin, name, plain)
    for name, point in list(twin.named_modules()):
        if isinstance(point, QuantActPoint):
            replace_module(twin, name, ActPoint(point.role))
    return twin.eval()


def to_symmetric(
    qmodel: nn.Module,
    inputs: Optional[InputSource],
    config: QuantConfig,
    num_samples: int = 128,
    progress: bool = False,
    unsigned_nonnegative: bool = False,
    engine: str = "TensorRT",
) -> nn.Module:
    """A copy of ``qmodel`` with symmetric int8 activations re-calibrated on ``inputs``.

    ``engine`` names the target in the error message. ``unsigned_nonnegative``: tensors whose calibrated range has no negative part get unsigned
    uint8 quantizers with zero point 0 (twice the resolution of int8 for them).
    Raises ExportError without inputs (the message says how to provide them).
    """
    if inputs is None:
        raise ExportError(
            f"this model has asymmetric (uint8 + zero point) activations, which {engine} does not run "
            "as int8 at full speed; pass calibration inputs (export(..., inputs=latents_or_images); CLI: --images DIR) to "
            "re-calibrate them as symmetric int8, or quantize with QuantConfig(act_scheme='symmetric')."
        )
    symmetric_config = config.replace(act_scheme="symmetric")
    twin = float_twin(qmodel)
    converted = quantize_model(twin, symmetric_config)
    _load_weights(converted, qmodel)
    ranges = calibrate_activations(converted, twin, inputs, symmetric_config, num_samples=num_samples,
                                   progress=progress, align=not unsigned_nonnegative,
                                   unsigned_nonnegative=unsigned_nonnegative)
    if unsigned_nonnegative:
        unsigned = frozenset(key for key, (low, _) in ranges.items() if low >= 0.0)
        converted = quantize_model(twin, symmetric_config, unsigned=unsigned)
        _load_weights(converted, qmodel)
        proxies = {(name, side): proxy for name, side, proxy in act_proxies(converted)}
        for key, (low, high) in ranges.items():
            set_act_range(proxies[key], low, high)
        align_grids(converted, next(iter_batches(inputs, 1, batch_size=1)).float())
    log.info("re-calibrated symmetric int8 activations on %d samples", num_samples)
    return converted.eval()


def _load_weights(converted: nn.Module, qmodel: nn.Module) -> None:
    """Weights and weight-quantizer state of ``qmodel`` into ``converted`` (same layers)."""
    state = {k: v for k, v in qmodel.state_dict().items() if not any(key in f".{k}" for key in _ACT_KEYS)}
    result = converted.load_state_dict(state, strict=False)
    unexpected = [k for k in result.unexpected_keys]
    missing = [k for k in result.missing_keys if not any(key in f".{k}" for key in _ACT_KEYS)]
    if unexpected or missing:
        raise ExportError(
            "the symmetric copy does not match the quantized model's layers "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]}): was the model converted with a "
            "different QuantConfig.skip? Quantize with act_scheme='symmetric' instead."
        )
    _share_weight_searches(converted, qmodel)


def _share_weight_searches(converted: nn.Module, qmodel: nn.Module) -> None:
    """Hand ``qmodel``'s MSE weight-clipping results to ``converted`` (same layer names): the
    search (200 candidate steps per weight tensor) is re-run only if the weights differ, which
    `MSEClipAbsMax` checks itself."""
    searched = {name: m for name, m in qmodel.named_modules() if isinstance(m, MSEClipAbsMax)}
    for name, module in converted.named_modules():
        source = searched.get(name)
        if isinstance(module, MSEClipAbsMax) and source is not None and source._cache_values is not None:
            module._cache_values, module._cache_ratio = source._cache_values, source._cache_ratio
