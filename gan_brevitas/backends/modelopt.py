"""The ModelOpt backend: generators quantized by NVIDIA ModelOpt, side by side with Brevitas.

    from gan_brevitas import recipes
    qgen = recipes.quantize(gen, "modelopt-int8", inputs=sampler, num_samples=500)
    print(recipes.describe(qgen))                     # what ModelOpt quantized, what stayed float
    recipes.save(qgen, "g_mo.safetensors"); recipes.load("g_mo.safetensors")
    recipes.export(qgen, "g_mo.onnx", target="tensorrt", inputs=sampler)

ModelOpt quantizes the layer types it knows (Conv, ConvTranspose, Linear, InstanceNorm inputs,
...); `modelopt_modules` teaches it SAGAN's attention and StyleGAN's Blur and calibrates.
Noise injection, AdaIN's modulation, PixelNorm and the constant input stay float and the
report says why; a layer with a trained weight nobody can quantize is an error that names it
(or list it in ``QuantConfig(skip=...)``). Presets (`modelopt_presets`), the mapping to the
paper's scheme and the limits: docs/modelopt.md.

A saved file holds the state_dict (weights and every quantizer's amax) and, in its metadata,
the QuantConfig, method, generator and the preset record; `load` converts the float
architecture with the same preset (no calibration), sets the saved ranges and loads the state.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import math
import os
import tempfile
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from gan_brevitas.backends.base import MODELOPT_FILE_FORMAT, is_modelopt_model, read_file_metadata
from gan_brevitas.backends.modelopt_modules import (
    CalibrationLoop,
    TensorQuantizer,
    amax_of,
    disable_unused,
    max_calibrate,
    mtq,
    percentile_calibrate,
    quantizers_of,
    unquantizable_layers,
)
from gan_brevitas.backends.modelopt_presets import (
    RECORD_ATTR,
    ModelOptPreset,
    ModelOptRecord,
    resolve_preset,
    skip_patterns,
    skipped_modules,
)
from gan_brevitas.backends.modelopt_report import describe_rows
from gan_brevitas.atomic_files import atomic_write, check_output_path
from gan_brevitas.errors import CheckpointError, ConfigError, ConversionError, ExportError
from gan_brevitas.export.qcdq import ExportOptions, ExportReport, example_input_for, write_graph
from gan_brevitas.inputs import InputSource
from gan_brevitas.models import build_generator
from gan_brevitas.quant.config import QuantConfig
from gan_brevitas.quant.convert import fold_for_quantization
from gan_brevitas.quant.describe import LayerRow
from gan_brevitas.quant.file_schema import FORMAT as BREVITAS_FILE_FORMAT
from gan_brevitas.quant.file_schema import HASH_KEY, check_hash, content_sha256
from gan_brevitas.quant.serialize import QuantInfo

log = logging.getLogger(__name__)


EXPORT_TARGETS = ("tensorrt", "onnxruntime")
ONNX_FORMAT = "gan-brevitas/modelopt-onnx/1"


# ------------------------------------------------------------------------------------------
# Quantization
# ------------------------------------------------------------------------------------------


def _scheme(preset: str | ModelOptPreset, **overrides: Optional[bool]) -> ModelOptPreset:
    """The preset with the ``quantize_*`` flags that are not None replaced."""
    chosen = {key: value for key, value in overrides.items() if value is not None}
    return replace(resolve_preset(preset), **chosen)


def _convert(float_model: nn.Module, scheme: ModelOptPreset, skip: tuple[str, ...]) -> nn.Module:
    """ModelOpt's conversion of ``float_model`` (in place, no calibration) for ``scheme``."""
    if not isinstance(float_model, nn.Module):
        raise ConversionError(f"expected a torch.nn.Module, got {type(float_model).__name__}.")
    if any(isinstance(m, TensorQuantizer) for m in float_model.modules()):
        raise ConversionError("the model is already quantized by ModelOpt: quantize the float generator instead.")
    bad = unquantizable_layers(float_model, skip)
    if bad:
        listed = ", ".join(f"{name} ({cls})" for name, cls in bad)
        raise ConversionError(
            f"neither ModelOpt nor the gan_brevitas backend can quantize: {listed}. These layers own "
            "trained weights used in a custom forward: fold them into nn.Conv2d / nn.Linear, "
            "register a quantized class with modelopt.torch.quantization.register(cls, quant_cls), "
            "or keep them float with QuantConfig(skip=[...])."
        )
    modelopt_config = scheme.modelopt_config(float_model, skip)
    printed = io.StringIO()
    try:
        # ModelOpt prints its progress ("Inserted N quantizers"); it goes to our log instead.
        with contextlib.redirect_stdout(printed):
            return mtq.quantize(float_model.eval(), {**modelopt_config, "algorithm": None}, None)
    except RuntimeError as err:
        raise ConversionError(f"ModelOpt found nothing to quantize: {err}") from err
    finally:
        for line in printed.getvalue().splitlines():
            log.info("ModelOpt: %s", line)


def modelopt_ptq(
    float_model: nn.Module,
    config: Optional[QuantConfig],
    inputs: InputSource,
    *,
    preset: str | ModelOptPreset = "int8",
    num_samples: int = 500,
    batch_size: int = 32,
    progress: bool = True,
    quantize_attention: Optional[bool] = None,
    quantize_blur: Optional[bool] = None,
    quantize_outputs: Optional[bool] = None,
) -> nn.Module:
    """Quantize ``float_model`` (already folded, see `recipes.quantize`) with ModelOpt, in place,
    calibrated on ``num_samples`` inputs; returns it.

    Args:
        config: only ``config.skip`` is used (layers kept float); None means no skip.
        preset: a `PRESETS` name ("int8", "int8-percentile", "w4a8") or a ModelOptPreset.
        quantize_attention / quantize_blur / quantize_outputs: override the preset's choice.

    Raises ConfigError for an unknown preset or QuantConfig fields that do not apply,
    ConversionError for a layer nobody can quantize (named), CalibrationError for bad inputs.
    """
    scheme = _scheme(preset, quantize_attention=quantize_attention, quantize_blur=quantize_blur,
                     quantize_outputs=quantize_outputs)
    skip = skip_patterns(config, scheme)
    loop = CalibrationLoop(inputs, num_samples, batch_size, progress)
    loop.batches()  # bad inputs fail here, before ModelOpt touches the model
    skipped = tuple(skipped_modules(float_model, skip)) if isinstance(float_model, nn.Module) else ()
    model = _convert(float_model, scheme, skip)  # (skipped is read before ModelOpt renames classes)
    if scheme.calibration == "max":
        called = max_calibrate(model, loop)
    else:
        called = percentile_calibrate(model, loop, float(scheme.act_percentile))
    unused = disable_unused(model, called)
    setattr(model, RECORD_ATTR, ModelOptRecord(scheme, skipped, tuple(unused), num_samples))
    return model.eval()


# ------------------------------------------------------------------------------------------
# Files
# ------------------------------------------------------------------------------------------


def save(qmodel: nn.Module, path: str | os.PathLike) -> Path:
    """Write a ModelOpt-quantized generator (from `recipes.quantize`) to one safetensors file."""
    info = getattr(qmodel, "gan_brevitas", None)
    record = getattr(qmodel, RECORD_ATTR, None)
    if not isinstance(info, QuantInfo) or record is None:
        raise CheckpointError("this model carries no quantization record: save models returned by recipes.quantize.")
    path = check_output_path(path, what="quantized generator")
    state = {k: v.detach().contiguous().clone() for k, v in qmodel.state_dict().items()}
    # The Brevitas file's metadata (one schema), under the ModelOpt format, plus the preset record.
    fields = {k: v for k, v in info.to_metadata(state).items() if k != HASH_KEY}
    fields.update(format=MODELOPT_FILE_FORMAT, modelopt=record.to_json())
    metadata = {**fields, HASH_KEY: content_sha256(fields, state)}
    return atomic_write(path, lambda temporary: save_file(state, temporary, metadata=metadata),
                        what="quantized generator")


def load(path: str | os.PathLike, model: Optional[nn.Module] = None) -> nn.Module:
    """Rebuild a generator saved by `save`: the float architecture (``model`` for user
    generators) converted with the saved preset, the saved ranges set, the state loaded."""
    path = Path(path)
    metadata = read_file_metadata(path)
    if metadata.get("format") != MODELOPT_FILE_FORMAT:
        raise CheckpointError(f"{path} is not a ModelOpt generator file (format {metadata.get('format')!r}).")
    try:
        info = QuantInfo.from_metadata({**metadata, "format": BREVITAS_FILE_FORMAT}, path)
        record = ModelOptRecord.from_json(metadata["modelopt"])
    except (KeyError, TypeError, ValueError, ConfigError) as err:
        raise CheckpointError(f"{path}: its ModelOpt metadata is invalid ({err}); save the model again.") from None
    if model is None:
        if info.generator is None:
            raise CheckpointError(f"{path} holds a user generator: pass its float architecture, load(path, model=...).")
        model = build_generator(info.generator["name"], **info.generator["kwargs"])
    qmodel = _convert(fold_for_quantization(model), record.preset, info.config.skip)
    state = load_file(str(path))
    check_hash(metadata, metadata.get(HASH_KEY), state, path)
    for name, value in state.items():
        owner, _, attr = name.rpartition(".")
        if attr == "_amax":
            qmodel.get_submodule(owner).amax = value  # creates the buffer calibration would have
    for name in record.unused:
        for quantizer in quantizers_of(qmodel.get_submodule(name)).values():
            quantizer.disable()
    try:
        qmodel.load_state_dict(state, strict=True)
    except (RuntimeError, AttributeError) as err:
        raise CheckpointError(f"{path} does not match the architecture: {err}. Pass the float architecture "
                              "that was quantized.") from None
    setattr(qmodel, RECORD_ATTR, record)
    qmodel.gan_brevitas = info
    return qmodel.eval()


# ------------------------------------------------------------------------------------------
# ONNX export (ModelOpt's Q/DQ symbolics, then the shared finishing) and ONNX Runtime parity
# ------------------------------------------------------------------------------------------




def _check_exportable(qmodel: nn.Module) -> None:
    if not isinstance(qmodel, nn.Module) or not is_modelopt_model(qmodel):
        raise ExportError(
            "export_onnx exports models quantized through ModelOpt (recipes.quantize(model, "
            "'modelopt-int8', ...)); use recipes.export for Brevitas models."
        )
    if getattr(qmodel, "noise_mode", None) == "random":
        raise ExportError(
            "this generator draws random noise on every call, which has no fixed ONNX graph; set "
            "qmodel.noise_mode = 'const' before exporting."
        )
    for name, module in qmodel.named_modules():
        if isinstance(module, TensorQuantizer) and module.is_enabled:
            amax = amax_of(module)
            if amax is None or not bool(torch.isfinite(amax).all()):
                raise ExportError(
                    f"quantizer {name} has no calibrated range: quantize with recipes.quantize(model, "
                    "'modelopt-int8', inputs=...) before exporting."
                )
            if module.num_bits not in (4, 8) or (module.num_bits == 4 and not name.endswith("weight_quantizer")):
                raise ExportError(
                    f"quantizer {name} has {module.num_bits} bits: ONNX Q/DQ carries int8 activations "
                    "and 4- or 8-bit weights only."
                )



@torch.no_grad()
def weights_on_int8_grid(qmodel: nn.Module) -> list[str]:
    """Re-express 4-bit weight quantizers as int8 ones, exactly (in place); their names.

    ModelOpt exports integer Q/DQ for 8 bits only (4 bits go to a TensorRT-only block
    format). The 4-bit fake-quantized weight is k * s with k in [-8, 7] and s = amax / 7, so
    folding it into the weight and quantizing that to int8 with the same step s (amax' =
    127 s) reproduces it exactly: the graph runs the 4-bit model on int8 kernels.
    """
    converted = []
    for name, module in qmodel.named_modules():
        quantizer = getattr(module, "weight_quantizer", None)
        if not isinstance(quantizer, TensorQuantizer) or not quantizer.is_enabled or quantizer.num_bits == 8:
            continue
        step = quantizer.amax.detach() / quantizer.maxbound
        module.weight.data.copy_(quantizer(module.weight.detach()))
        quantizer.num_bits = 8
        quantizer.amax = step * quantizer.maxbound
        converted.append(name)
    return converted




def _trace(work: nn.Module, x: Tensor, raw: Path, opset: int, input_name: str, output_names: tuple[str, ...]) -> None:
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                work, (x,), str(raw), dynamo=False, opset_version=opset, do_constant_folding=True,
                input_names=[input_name], output_names=list(output_names),
                dynamic_axes={name: {0: "batch"} for name in (input_name, *output_names)},
            )
        except Exception as err:
            raise ExportError(f"tracing the ModelOpt model to ONNX failed ({type(err).__name__}: {err}).") from err


def _check_options(options: ExportOptions) -> None:
    if options.target not in EXPORT_TARGETS:
        raise ExportError(
            f"target {options.target!r} is not one of {EXPORT_TARGETS} for a ModelOpt model (its float "
            "baseline is the float generator: recipes.export(model, path, target='float'))."
        )
    if options.int4 or options.conv_transpose == "subpixel":
        raise ExportError(
            "int4 and conv_transpose='subpixel' rewrite Brevitas layers; a ModelOpt model exports its "
            "4-bit weights on the int8 grid and keeps ConvTranspose (drop these options)."
        )


def export_onnx(
    qmodel: nn.Module,
    path: str | os.PathLike,
    target: str | ExportOptions = "tensorrt",
    *,
    inputs: Optional[InputSource] = None,
    example_input: Optional[Tensor] = None,
    opset: Optional[int] = None,
) -> ExportReport:
    """Export a ModelOpt-quantized generator to a Q/DQ ONNX file; returns an ExportReport.

    The graph comes from ModelOpt's own ONNX symbolics (TorchScript exporter, batch dimension
    dynamic); weight QuantizeLinear nodes are folded into int8 initializers
    (`passes.fold_weight_quantize`), then the Brevitas export's finishing runs (graph passes
    such as ``fp16``, metadata, onnx.checker, TensorRT's rules: an error stops a "tensorrt"
    export; atomic write). ModelOpt's scheme is symmetric int8 with axis-0 weight scales, so one
    graph serves both targets. 4-bit weights are exported exactly on the int8 grid
    (`weights_on_int8_grid`). ``pad_narrow_convs`` does not apply (Brevitas layers only).
    """
    import onnx

    from gan_brevitas.export import passes
    from gan_brevitas.export.qcdq import finish_graph

    options = target if isinstance(target, ExportOptions) else ExportOptions(target=target, opset=opset)
    _check_options(options)
    path = check_output_path(path, what="export output")
    _check_exportable(qmodel)
    work = copy.deepcopy(qmodel).eval()
    conversions = [f"4-bit weights of {name} exported on the int8 grid" for name in weights_on_int8_grid(work)]
    x = example_input_for(qmodel, example_input, inputs)
    input_name = {"latent": "latent", "image": "input_image"}.get(getattr(qmodel, "input_kind", ""), "input")
    with torch.no_grad():
        output = work(x)
    n_outputs = len(output) if isinstance(output, (tuple, list)) else 1
    output_names = ("image",) + tuple(f"output_{i}" for i in range(1, n_outputs))
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.name}.") as tmp:
        raw = Path(tmp) / "raw.onnx"
        _trace(work, x, raw, options.resolved_opset, input_name, output_names)
        model_proto = onnx.load(str(raw))
    folded = passes.fold_weight_quantize(model_proto)
    conversions.append(f"{folded} weight QuantizeLinear node(s) folded into int8 initializers")
    conversions += finish_graph(model_proto, options)
    record: Optional[ModelOptRecord] = getattr(qmodel, RECORD_ATTR, None)
    metadata = {
        "format": ONNX_FORMAT, "target": options.target, "backend": "nvidia-modelopt",
        "method": getattr(getattr(qmodel, "gan_brevitas", None), "method", "unknown"),
        "modelopt": record.to_json() if record is not None else "{}", "input_name": input_name,
        "input_kind": str(getattr(qmodel, "input_kind", "unknown")), "conversions": json.dumps(conversions),
    }
    return write_graph(model_proto, path, options, metadata, input_name=input_name, example=x,
                       output_names=output_names, conversions=conversions)


@contextlib.contextmanager
def quantizers_disabled(qmodel: nn.Module) -> Iterator[nn.Module]:
    """Inside the block the model runs float (every enabled quantizer off); restored after."""
    enabled = [m for m in qmodel.modules() if isinstance(m, TensorQuantizer) and m.is_enabled]
    for quantizer in enabled:
        quantizer.disable()
    try:
        yield qmodel
    finally:
        for quantizer in enabled:
            quantizer.enable()


#: Parity bound: ONNX Runtime's mean deviation from fake quant, as a fraction of the
#: quantization effect (fake quant vs float).
PARITY_RATIO = 0.1
#: Output values closer than this to the fake-quant ones count as identical.
EXACT_ATOL = 1e-4


@dataclass(frozen=True)
class ModelOptParity:
    """ONNX Runtime vs ModelOpt's fake-quant model on the same inputs (first output).

    Why not bit-exact: ONNX Runtime's float kernels differ from PyTorch's in the last bits,
    which flips a value lying on a rounding boundary of the next quantizer by one step, and a
    deep generator carries such a flip on (InstanceNorm and AdaIN rescale it). So the bound
    is relative to the quantization effect itself (``quant_mae``: fake quant vs the same model
    run float): the graph reproduces the quantized model when its mean deviation is a small
    fraction of that. ``exact_fraction`` shows how local the flips are.
    """

    mae: float
    max_abs: float
    quant_mae: float
    exact_fraction: float
    n: int

    @property
    def ratio(self) -> float:
        return self.mae / self.quant_mae if self.quant_mae > 0 else (0.0 if self.mae == 0 else math.inf)

    @property
    def agrees(self) -> bool:
        """Mean deviation at most `PARITY_RATIO` of the quantization effect."""
        return self.ratio <= PARITY_RATIO

    def format(self) -> str:
        return (
            f"ONNX Runtime vs ModelOpt fake-quant over {self.n} samples: MAE {self.mae:.3g}, max "
            f"{self.max_abs:.3g}, {100 * self.exact_fraction:.1f}% of values identical (<{EXACT_ATOL:g}); "
            f"quantization effect (fake quant vs float) MAE {self.quant_mae:.3g}; ratio {self.ratio:.2g} "
            f"(bound {PARITY_RATIO:g})"
        )




def ort_parity(
    qmodel: nn.Module,
    path: str | os.PathLike,
    inputs: InputSource,
    n: int = 8,
    batch_size: int = 4,
    threads: Optional[int] = None,
) -> ModelOptParity:
    """Run ``n`` inputs through ModelOpt's fake-quant model, the same model float, and the ONNX
    file in ONNX Runtime (CPU); compare the first outputs (the images)."""
    from gan_brevitas.deploy.parity import engine_outputs, first_output

    errors, quant_errors = [], []
    with torch.no_grad():
        for batch, expected, got in engine_outputs(qmodel, path, inputs, n, batch_size, threads):
            with quantizers_disabled(qmodel):
                reference = first_output(qmodel(batch)).numpy()
            errors.append(np.abs(got - expected).ravel())
            quant_errors.append(np.abs(expected - reference).ravel())
    diffs, quant_effect = np.concatenate(errors), np.concatenate(quant_errors)
    return ModelOptParity(
        mae=float(diffs.mean()), max_abs=float(diffs.max()), quant_mae=float(quant_effect.mean()),
        exact_fraction=float((diffs < EXACT_ATOL).mean()), n=n,
    )


class ModelOptBackend:
    """`gan_brevitas.backends.Backend` for models quantized by ModelOpt."""

    name = "modelopt"

    def quantize(self, float_model: nn.Module, config: QuantConfig, inputs: InputSource, **options: Any) -> nn.Module:
        return modelopt_ptq(float_model, config, inputs, **options)

    def describe_rows(self, model: nn.Module) -> list[LayerRow]:
        return describe_rows(model)

    def save(self, model: nn.Module, path: str | os.PathLike) -> Path:
        return save(model, path)

    def load(self, path: str | os.PathLike, model: Optional[nn.Module] = None) -> nn.Module:
        return load(path, model)

    def export(self, model: nn.Module, path: str | os.PathLike, options: ExportOptions, *,
               inputs: Optional[InputSource] = None, example_input: Optional[Tensor] = None) -> ExportReport:
        return export_onnx(model, path, options, inputs=inputs, example_input=example_input)

    def parity(self, model: nn.Module, path: str | os.PathLike, inputs: InputSource, **options: Any) -> ModelOptParity:
        return ort_parity(model, path, inputs, **options)


BACKEND = ModelOptBackend()
