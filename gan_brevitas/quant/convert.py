"""Model conversion: swap float compute layers for Brevitas layers (one table drives it).

`quantize_model(model, config)` returns a NEW model; the input is never modified. Every
Conv2d / ConvTranspose2d / Linear becomes its Brevitas counterpart with the same weights and
biases, a weight quantizer, and static activation quantizers on its input AND its output
(ONNX Runtime and TensorRT fuse integer kernels only when both are quantized). BatchNorm right
after a convolution in a Sequential is folded into it first (exact in eval mode), and a
ConvTranspose over a 1x1 latent becomes the Linear layer it is (`latent_projection`: weight
scales per output row; same module name, same output). Every
`ActPoint` that `fold_for_quantization` placed (after LeakyReLU / PReLU, around residual adds
and concatenations, see `points`) becomes a `QuantActPoint`: a Brevitas activation quantizer.
"""

from __future__ import annotations

import copy
import fnmatch
import logging
import warnings
from collections import Counter
from typing import Iterator

import torch
from brevitas.nn import QuantConv2d, QuantConvTranspose2d, QuantIdentity, QuantLinear
from brevitas.nn.quant_layer import QuantWeightBiasInputOutputLayer
from brevitas.quant import Int32Bias
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from gan_brevitas.errors import ConversionError
from gan_brevitas.quant.config import QuantConfig
from gan_brevitas.quant.latent_projection import LatentProjection, latent_projections_as_linear
from gan_brevitas.quant.points import FLOAT_NOTE, ActPoint, insert_act_points
from gan_brevitas.quant.quantizers import act_quantizer, weight_quantizer
from gan_brevitas.quant.tail import TAIL_NOTE, float_tail

log = logging.getLogger(__name__)

class QuantLatentProjection(QuantLinear):
    """The Brevitas `LatentProjection`: a QuantLinear (weight scales per output row) whose
    output is unflattened to ``out_shape``."""

    def __init__(self, in_features: int, out_features: int, out_shape: tuple[int, int, int], **kwargs) -> None:
        super().__init__(in_features, out_features, **kwargs)
        self.out_shape = tuple(out_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # reshape to a constant shape: exported as one Reshape (unflatten exports Shape / Slice / Concat)
        return super().forward(x).reshape(-1, *self.out_shape)


#: float layer class -> (Brevitas class, constructor attributes copied from the float layer)
QUANT_LAYER_TABLE: dict[type[nn.Module], tuple[type[nn.Module], tuple[str, ...]]] = {
    nn.Conv2d: (
        QuantConv2d,
        ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups", "padding_mode"),
    ),
    nn.ConvTranspose2d: (
        QuantConvTranspose2d,
        (
            "in_channels", "out_channels", "kernel_size", "stride", "padding", "output_padding",
            "dilation", "groups", "padding_mode",
        ),
    ),
    nn.Linear: (QuantLinear, ("in_features", "out_features")),
    LatentProjection: (QuantLatentProjection, ("in_features", "out_features", "out_shape")),
}

# Brevitas warns on every forward of a layer with an asymmetric input quantizer and an int32
# bias (it cannot propagate the zero point into its QuantTensor metadata). The dequantized
# values we use are exact; the warning is noise.
warnings.filterwarnings("ignore", message="Computing zero point of output accumulator", module="brevitas")

_BATCH_NORMS = (nn.BatchNorm2d,)
_FOLDABLE_INTO = (nn.Conv2d, nn.ConvTranspose2d)


def fold_batch_norms(model: nn.Module) -> nn.Module:
    """Fold every BatchNorm2d that directly follows a conv (in place, eval math). Found by tracing
    the forward with torch.fx: a BatchNorm whose only input is a conv output that nothing else
    reads, neither module called twice nor its parameters read directly (a Sequential's conv ->
    BN, a residual block's ``bn1(conv1(x))``). A model fx cannot trace: conv -> BN pairs in a
    Sequential.

    The BatchNorm is replaced by Identity so module names stay stable.
    """
    pairs = _traced_conv_bn_pairs(model)
    if pairs is None:
        pairs = _sequential_conv_bn_pairs(model)
    modules = dict(model.named_modules())
    for conv_name, bn_name in pairs:
        conv, bn = modules[conv_name], modules[bn_name]
        replace_module(model, conv_name, fuse_conv_bn_eval(conv.eval(), bn.eval(),
                                                           transpose=isinstance(conv, nn.ConvTranspose2d)))
        replace_module(model, bn_name, nn.Identity())
    return model


def _foldable(conv: nn.Module, bn: nn.Module) -> bool:
    grouped_transpose = isinstance(conv, nn.ConvTranspose2d) and conv.groups != 1  # fuse_conv_bn_eval's axis is wrong
    return (type(conv) in _FOLDABLE_INTO and not grouped_transpose and isinstance(bn, _BATCH_NORMS)
            and bn.track_running_stats)


def _sequential_conv_bn_pairs(model: nn.Module) -> list[tuple[str, str]]:
    pairs = []
    for prefix, module in model.named_modules():
        if isinstance(module, nn.Sequential):
            names = list(module._modules)
            pairs += [(f"{prefix}.{a}".lstrip("."), f"{prefix}.{b}".lstrip(".")) for a, b in zip(names, names[1:])
                      if _foldable(module._modules[a], module._modules[b])]
    return pairs


def _traced_conv_bn_pairs(model: nn.Module) -> "list[tuple[str, str]] | None":
    """(conv, BatchNorm) module names where the traced graph feeds the conv's output, read by
    nothing else, to the BatchNorm, each module called once and no parameter or buffer of either
    read by the forward itself; None when fx cannot trace ``model``."""
    import torch.fx

    try:
        graph = torch.fx.symbolic_trace(model).graph
    except Exception as err:  # data-dependent control flow, unsupported ops: keep the Sequential rule
        log.debug("BatchNorm folding: %s is not fx-traceable (%s)", type(model).__name__, err)
        return None
    modules = dict(model.named_modules())
    calls = Counter(node.target for node in graph.nodes if node.op == "call_module")
    read_directly = {node.target.rpartition(".")[0] for node in graph.nodes if node.op == "get_attr"}
    pairs = []
    for node in graph.nodes:
        source = node.args[0] if node.op == "call_module" and node.args else None
        if (isinstance(source, torch.fx.Node) and source.op == "call_module" and len(source.users) == 1
                and calls[node.target] == 1 and calls[source.target] == 1
                and not {node.target, source.target} & read_directly
                and _foldable(modules[source.target], modules[node.target])):
            pairs.append((source.target, node.target))
    return pairs


def fold_for_quantization(model: nn.Module) -> nn.Module:
    """A folded float copy: custom weight parametrisations (equal-LR, spectral norm, fused
    upsampling; see `fold_generator`) and BatchNorms become plain layers, in eval mode, and
    identity `ActPoint`s mark the activations to quantize besides conv inputs and outputs
    (`points`; the float parts of `float_parts` are left alone).

    This copy is both what gets converted and the full-precision reference that calibration
    observes, so both see the same layers with the same outputs.
    """
    from gan_brevitas.models import fold_generator
    from gan_brevitas.models.float_parts import FLOAT_REASONS

    folded = fold_batch_norms(fold_generator(model))
    return insert_act_points(folded, opaque=tuple(FLOAT_REASONS)).eval()


class QuantActPoint(QuantIdentity):
    """The quantizer of an `ActPoint` (same ``role``); its proxy is ``act_quant``."""

    def __init__(self, role: str, config: QuantConfig, unsigned: bool = False) -> None:
        super().__init__(act_quant=act_quantizer(config, unsigned), return_quant_tensor=False)
        self.role = role


def _is_skipped(name: str, module: nn.Module, skip: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) or type(module).__name__ == pattern for pattern in skip)


def _quant_layer(module: nn.Module, config: QuantConfig, unsigned_input: bool, unsigned_output: bool,
                 quantize_output: bool = True) -> nn.Module:
    quant_cls, attributes = QUANT_LAYER_TABLE[type(module)]
    kwargs = {attr: getattr(module, attr) for attr in attributes}
    has_bias = module.bias is not None
    quant = quant_cls(
        **kwargs,
        bias=has_bias,
        weight_quant=weight_quantizer(config),
        bias_quant=Int32Bias if (has_bias and config.quantize_bias) else None,
        input_quant=act_quantizer(config, unsigned_input),
        output_quant=act_quantizer(config, unsigned_output) if quantize_output else None,
        return_quant_tensor=False,
        device=module.weight.device,
        dtype=module.weight.dtype,
    )
    with torch.no_grad():
        quant.weight.copy_(module.weight)
        if has_bias:
            quant.bias.copy_(module.bias)
    quant.train(module.training)
    return quant


def replace_module(model: nn.Module, name: str, new: nn.Module) -> None:
    """Put ``new`` where the submodule called ``name`` (dotted) was."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def quantize_model(
    model: nn.Module, config: QuantConfig, unsigned: frozenset[tuple[str, str]] = frozenset()
) -> nn.Module:
    """A quantized copy of ``model``: mapped layers swapped, activation quantizers placed.

    Activation ranges start as placeholders; calibrate them (`gan_brevitas.ptq.calibrate`)
    before use. ``unsigned``: (module name, "input"/"output") of the activation quantizers
    that get `UnsignedActQuant` under a symmetric scheme (tensors known to be non-negative).
    """
    if not isinstance(model, nn.Module):
        raise ConversionError(f"expected a torch.nn.Module, got {type(model).__name__}.")
    if any(isinstance(m, QuantWeightBiasInputOutputLayer) for m in model.modules()):
        raise ConversionError(
            "the model is already quantized (it contains Brevitas layers): quantize the float "
            "generator instead."
        )
    qmodel = fold_batch_norms(copy.deepcopy(model))
    latent_projections_as_linear(qmodel)
    targets = [
        (name, module)
        for name, module in qmodel.named_modules()
        if type(module) in QUANT_LAYER_TABLE and not _is_skipped(name, module, config.skip)
    ]
    if not targets:
        raise ConversionError(
            "no Conv2d, ConvTranspose2d or Linear layer to quantize was found (or all are in "
            "config.skip): fold custom layers into standard ones first (see fold_generator)."
        )
    tail_layers, tail_points = frozenset(), frozenset()
    if not config.quantize_tail:
        from gan_brevitas.models.float_parts import FLOAT_REASONS

        tail_layers, tail_points = float_tail(qmodel, tuple(QUANT_LAYER_TABLE), tuple(FLOAT_REASONS))
    for name, module in targets:
        layer = _quant_layer(module, config.for_layer(name), (name, "input") in unsigned, (name, "output") in unsigned,
                             quantize_output=name not in tail_layers)
        replace_module(qmodel, name, layer)
    for name, module in list(qmodel.named_modules()):
        if isinstance(module, ActPoint) and name in tail_points:
            setattr(module, FLOAT_NOTE, TAIL_NOTE)
        elif isinstance(module, ActPoint) and not _is_skipped(name, module, config.skip):
            point = QuantActPoint(module.role, config, (name, "output") in unsigned)
            replace_module(qmodel, name, point.train(module.training))
    return qmodel


def quant_layers(model: nn.Module) -> Iterator[tuple[str, QuantWeightBiasInputOutputLayer]]:
    """(name, layer) for every Brevitas compute layer of a converted model."""
    for name, module in model.named_modules():
        if isinstance(module, QuantWeightBiasInputOutputLayer):
            yield name, module


def initialise_weight_scales(model: nn.Module) -> None:
    """Compute every weight quantizer once, so learned weight step sizes take their stats-based
    value now. Brevitas does it on a layer's first call and leaves an uninitialised step size
    out of the state dict, so layers that never run (StyleGAN blocks above the output size)
    would make saved files, checkpoints and resumed runs disagree on their keys."""
    with torch.no_grad():
        for _, layer in quant_layers(model):
            layer.quant_weight()


def act_points(model: nn.Module) -> Iterator[tuple[str, QuantActPoint]]:
    """(name, point) for every activation quantization point of a converted model."""
    for name, module in model.named_modules():
        if isinstance(module, QuantActPoint):
            yield name, module


def act_proxies(model: nn.Module) -> Iterator[tuple[str, str, nn.Module]]:
    """(module name, side, activation quant proxy) for every static activation quantizer:
    side "input" / "output" of a compute layer, "output" of a point (its observed tensor is
    the output of the float `ActPoint` of the same name)."""
    for name, module in model.named_modules():
        if isinstance(module, QuantWeightBiasInputOutputLayer):
            yield name, "input", module.input_quant
            if module.output_quant.is_quant_enabled:  # off on the float tail (`tail`)
                yield name, "output", module.output_quant
        elif isinstance(module, QuantActPoint):
            yield name, "output", module.act_quant
