"""The public entry point: one verb per step of the flow, one handler per paper recipe.

    from gan_brevitas import recipes, QuantConfig
    gen = recipes.load_generator("cyclegan", "latest_net_G.pth")
    qgen = recipes.quantize(gen, "vanilla-ptq", config=QuantConfig(weight_bits=4), inputs=sampler)
    qgen = recipes.quantize(gen, LSQQAT(epochs=4), config=QuantConfig(), inputs=sampler)  # typed
    print(recipes.describe(qgen))
    recipes.save(qgen, "q.safetensors")

`quantize` never modifies the float generator: it folds a copy (equal-LR, spectral norm,
BatchNorm into plain weights), converts that copy, and runs the method on it.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Optional

import torch
from torch import Tensor, nn

from gan_brevitas.backends import backend_for, backend_for_file
from gan_brevitas.errors import CheckpointError, ConfigError
from gan_brevitas.inputs import InputSource, input_shape_of, shape_checked
from gan_brevitas.metrics.evaluate import Evaluation
from gan_brevitas.metrics.evaluate import evaluate as evaluate_images
from gan_brevitas.metrics.extractors import choose_extractor
from gan_brevitas.methods import (
    LSQQAT,
    MAQAT,
    ArBRECQ,
    DEFAULT_METHOD,
    PAPER_METHOD,
    BoundDistill,
    MixedPrecision,
    ModelOptPTQ,
    SteBRECQ,
    VanillaPTQ,
    method_names,
    resolve_method,
)
from gan_brevitas.models import build_generator, load_generator
from gan_brevitas.ptq.bias_correction import correct_biases
from gan_brevitas.ptq.sensitivity import SensitivityTable, layer_sensitivity, plot_sensitivity
from gan_brevitas.quant.config import FIXED_GRID_METHODS, LEARNED_WEIGHT_STEP_METHODS, QuantConfig
from gan_brevitas.quant.convert import fold_for_quantization
from gan_brevitas.quant.describe import format_table
from gan_brevitas.quant.serialize import QuantInfo

QUANT_CONFIG_FIELDS = frozenset(f.name for f in dataclasses.fields(QuantConfig))

__all__ = [
    "LSQQAT",
    "MAQAT",
    "ArBRECQ",
    "BoundDistill",
    "MixedPrecision",
    "ModelOptPTQ",
    "QuantConfig",
    "SteBRECQ",
    "VanillaPTQ",
    "build_generator",
    "describe",
    "evaluate",
    "load",
    "load_generator",
    "method_names",
    "quantize",
    "save",
    "plot_sensitivity",
    "sensitivity",
]


def _refuse_non_finite_weights(model: nn.Module) -> None:
    """A NaN or Inf weight makes every range estimate meaningless: say which tensor holds it."""
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise CheckpointError(
                f"the generator's {name} holds {bad} NaN/Inf value(s): the checkpoint is damaged or its "
                "training diverged; quantize a checkpoint with finite weights."
            )


def quantize(
    model: nn.Module,
    method: Any = None,
    *,
    config: Optional[QuantConfig] = None,
    inputs: Optional[InputSource] = None,
    **options: Any,
) -> nn.Module:
    """Quantize a generator with one of the paper's recipes and return the NEW quantized model.

    Args:
        model: a float generator (ours or any nn.Module); it is left untouched.
        method: a method config (``VanillaPTQ(num_samples=64)``, ``LSQQAT(epochs=4)``, ...) or
            its name (one of `method_names()`: "vanilla-ptq", "lsq-qat", ...). None runs
            `DEFAULT_METHOD` ("gptq", the best W8A8 recipe we measured on real generators: PTQ,
            then GPTQ rounding of the weights), or with ``config="paper"`` the paper's own
            method, vanilla PTQ.
        config: the quantization scheme (`QuantConfig()` when omitted; "paper" or
            `QuantConfig.paper()` for the paper's exact scheme).
        inputs: calibration inputs: a sampler ``f(batch_size) -> batch``, a tensor of inputs,
            or an iterable of batches (latents, or images for CycleGAN).
        options: method options (fields of the method's config, e.g. ``num_samples=500``,
            ``progress=False``; with a config object they replace its fields); `QuantConfig`
            field names (``weight_bits=4``, ``per_channel=True``, ...) override ``config``.
    """
    quant_overrides = {key: options.pop(key) for key in list(options) if key in QUANT_CONFIG_FIELDS}
    if method is None:
        method = PAPER_METHOD if isinstance(config, str) and config == "paper" else DEFAULT_METHOD
    spec, method_options, extras = resolve_method(method, options)
    if config is None:
        config = QuantConfig()
    elif config == "paper":
        config = QuantConfig.paper()
    if not isinstance(config, QuantConfig):
        raise ConfigError(f"config must be a QuantConfig, got {type(config).__name__}.")
    if quant_overrides:
        config = config.replace(**quant_overrides)
    if inputs is None:
        raise ConfigError(
            "quantize needs calibration inputs: pass inputs=sampler (callable batch_size -> batch), "
            "a tensor of latents/images, or an iterable of batches."
        )
    name = spec.name_of(method_options)
    config = _method_config(name, config, quant_overrides)
    _refuse_non_finite_weights(model)
    float_model = fold_for_quantization(model)
    checked = shape_checked(inputs, model)  # a mis-shaped batch fails here, naming the expected shape
    qmodel = spec.handler(float_model, config, checked, method_options, **extras)
    # methods that choose per-layer settings (mixed precision, weight_range="auto") say so here
    config = qmodel.__dict__.pop("resolved_quant_config", config)
    # bound distillation corrects the biases before it trains the quantizers, not after
    biases_corrected = qmodel.__dict__.pop("biases_corrected", False)
    if config.bias_correction and not biases_corrected and backend_for(qmodel).name == "brevitas":
        correct_biases(qmodel, float_model, checked)
    qmodel.gan_brevitas = QuantInfo(
        method=name, config=config, generator=getattr(model, "generator_spec", None),
        input_shape=input_shape_of(inputs),
    )
    return qmodel


def sensitivity(
    model: nn.Module,
    *,
    inputs: InputSource,
    bits: tuple[int, ...] = (4, 8),
    config: Optional[QuantConfig] = None,
    num_samples: int = 8,
    data_range: float = 2.0,
) -> SensitivityTable:
    """Per layer and bit width, the output MSE / PSNR vs float when that layer's weights alone
    are quantized (the config's weight quantizer, default `QuantConfig()`). ``data_range`` is
    the output's pixel range for PSNR (2.0 for [-1, 1]). `plot_sensitivity(table, path)` draws
    it; ``table.to_markdown()`` prints it."""
    config = QuantConfig() if config is None else config
    return layer_sensitivity(fold_for_quantization(model), inputs, config, bits, num_samples, data_range)


#: Settings a method needs (or is defined by), applied unless the caller chose otherwise
#: (see `quant.config.LEARNED_WEIGHT_STEP_METHODS`).
METHOD_SETTINGS: dict[str, dict[str, Any]] = {
    method: {"weight_scaling": "learned"} for method in sorted(LEARNED_WEIGHT_STEP_METHODS)
}


def _method_config(method: str, config: QuantConfig, overrides: dict[str, Any]) -> QuantConfig:
    """``config`` with the settings ``method`` needs; a setting passed as an option wins
    (``weight_scaling="stats"`` for LSQ-QAT), where the method can run with it."""
    needed = {k: v for k, v in METHOD_SETTINGS.get(method, {}).items() if k not in overrides}
    if method in FIXED_GRID_METHODS and overrides.get("weight_scaling", "learned") != "learned":
        raise ConfigError(
            f"{method} rounds every weight onto a fixed grid, so it needs weight_scaling='learned' "
            "(it sets it itself); leave the weight_scaling option out."
        )
    changed = {k: v for k, v in needed.items() if getattr(config, k) != v}
    return config.replace(**changed) if changed else config


def describe(qmodel: nn.Module) -> str:
    """What is quantized and how (one row per layer), and the settings the method chose itself."""
    table = format_table(backend_for(qmodel).describe_rows(qmodel))
    info = getattr(qmodel, "gan_brevitas", None)
    if not isinstance(info, QuantInfo):
        return table
    lines = [f"method {info.method}"]
    for key, value in METHOD_SETTINGS.get(info.method, {}).items():
        if getattr(info.config, key) == value:
            lines.append(f"  {key}={value!r}: set by {info.method}, which needs it (learned weight step sizes)")
    if info.input_shape is not None:
        lines.append(f"  calibrated on inputs of shape [B, {', '.join(map(str, info.input_shape))}]")
    return table + "\n\n" + "\n".join(lines)


def evaluate(
    qmodel: nn.Module | str | os.PathLike,
    model: nn.Module,
    inputs: InputSource,
    n: int = 1000,
    real: Optional[Tensor] = None,
    inception_weights: Optional[str] = None,
    progress: bool = True,
    engine: str = "onnxruntime",
    extractor: Optional[str] = None,
) -> Evaluation:
    """FID (vs ``real``), qFID and PSNR of ``qmodel`` against the float ``model``, same inputs.

    ``qmodel`` may be the path of an exported file (.onnx, or .xml OpenVINO IR): the deployed
    model is then run on ``engine`` ("onnxruntime" or "openvino"), so the numbers are those of
    what the engine computes, not of the fake-quant model.

    The extractor is Inception-v3, whose weights must be found (``inception_weights``, the
    GAN_BREVITAS_INCEPTION_WEIGHTS variable, torch-fidelity's cache); without them the call is
    refused unless ``extractor="demo-cnn"`` asks for the offline demo CNN by name. The result
    names the extractor. The float reference is the folded copy of ``model`` (the one
    the quantized model was made from; SAGAN's spectral norm would drift otherwise).
    """
    spec = choose_extractor(extractor, inception_weights)
    if isinstance(qmodel, (str, os.PathLike)):
        from gan_brevitas.deploy import EngineModule, open_runner

        qmodel = EngineModule(open_runner(qmodel, engine))
    return evaluate_images(qmodel, fold_for_quantization(model), shape_checked(inputs, model), n, real, spec,
                           progress=progress)


def save(qmodel: nn.Module, path: str | os.PathLike) -> None:
    """Save a quantized generator (weights, quantizer state, config) to one safetensors file
    (Brevitas and ModelOpt models alike)."""
    backend_for(qmodel).save(qmodel, path)


def load(path: str | os.PathLike, model: Optional[nn.Module] = None) -> nn.Module:
    """Load a quantized generator saved by `save` (pass ``model`` for user architectures)."""
    return backend_for_file(path).load(path, model)


def export(
    qmodel: nn.Module,
    path: str | os.PathLike,
    target: str = "onnxruntime",
    *,
    inputs: Optional[InputSource] = None,
    example_input: Optional[Any] = None,
    opset: Optional[int] = None,
    conv_transpose: str = "auto",
    fp16: bool = False,
    int4: bool = False,
    num_samples: int = 128,
    pad_narrow_convs: bool = True,
    profile: bool = False,
) -> Any:
    """Export a quantized generator to a QCDQ ONNX file for ``target`` and return an ExportReport.

    Targets: "onnxruntime" (int8 on the CPU; the paper's asymmetric activations are fine),
    "tensorrt" (symmetric int8 only: an asymmetric model is re-calibrated on ``inputs``; the
    graph is checked against TensorRT's rules before it is written), "openvino" (symmetric
    activations, uint8 where never negative, re-calibrated on ``inputs``; a ``.xml`` path
    writes OpenVINO IR; the compiled model is checked for convs that do not run in int8) and
    "float" (a float generator, the fp32 baseline). ConvTranspose layers are rewritten exactly as Conv +
    PixelShuffle where the target needs it (``conv_transpose="auto"``). ``fp16`` casts the
    float parts to fp16 (tensorrt); ``int4`` packs <= 4-bit weights as ONNX INT4 (onnxruntime,
    opset 21). ``pad_narrow_convs`` (onnxruntime) gives convs with < 16 outputs zero filters,
    exactly, because ONNX Runtime's int8 conv is slow for narrow outputs. ``profile``
    (onnxruntime, openvino) runs the file in its engine's profiler and reports the share of
    time outside int8 kernels and the largest float ops. Nothing is written
    when the export fails (ExportError says why and what to do).
    """
    from gan_brevitas.export.qcdq import ExportOptions

    options = ExportOptions(
        target=target, opset=opset, conv_transpose=conv_transpose, fp16=fp16, int4=int4,
        num_samples=num_samples, pad_narrow_convs=pad_narrow_convs, profile=profile,
    )
    return backend_for(qmodel).export(qmodel, path, options, example_input=example_input, inputs=inputs)
