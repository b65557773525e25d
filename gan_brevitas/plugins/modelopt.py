"""Quantize generators with NVIDIA ModelOpt, side by side with the Brevitas recipes.

    from gan_brevitas import recipes
    qgen = recipes.quantize(gen, "modelopt-int8", inputs=sampler, num_samples=500)
    print(recipes.describe(qgen))                     # what ModelOpt quantized, what stayed float
    modelopt.export_onnx(qgen, "g_mo.onnx", target="tensorrt", inputs=sampler)

ModelOpt quantizes the layer types it knows (Conv, ConvTranspose, Linear, InstanceNorm inputs,
...). After our exact folding (`fold_for_quantization`) every trained layer of the three
reference generators is one of those, except two custom modules that this plugin registers
with ModelOpt's `QuantModuleRegistry`:

* SAGAN's `SelfAttention`: its two bmm products get ModelOpt quantizers on their operands
  (``q_bmm_quantizer``, ``k_bmm_quantizer``, ``v_bmm_quantizer``, ``softmax_quantizer``, the
  names ModelOpt's own attention plugins use); softmax and the gamma residual stay float.
* StyleGAN's `Blur` (a fixed depthwise binomial filter): registered with input and weight
  quantizers, kept float by default (like the paper; its 1/16 taps are not on an int8 grid),
  ``quantize_blur=True`` turns it on.

Noise injection, AdaIN's modulation (gamma * x + beta), PixelNorm and the constant input are
element-wise or weightless: they stay float and the report says why. A layer with a trained
weight that neither ModelOpt nor this plugin can quantize is an error that names it (or list
it in ``QuantConfig(skip=...)``). Presets, the mapping to the paper's scheme and the limits:
docs/modelopt.md.
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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gan_brevitas.atomic_files import atomic_write, check_output_path, write_error
from gan_brevitas.errors import ConfigError, ConversionError, ExportError, MissingDependencyError
from gan_brevitas.inputs import InputSource, iter_batches
from gan_brevitas.models.float_parts import FLOAT_REASONS, float_parts
from gan_brevitas.models.sagan import SelfAttention
from gan_brevitas.models.stylegan import Blur
from gan_brevitas.backends.modelopt_presets import (
    ATTENTION_KEY,
    BLUR_KEY,
    BMM_QUANTIZERS,
    PRESETS,
    ModelOptPreset,
    resolve_preset,
    skipped_modules,
)
from gan_brevitas.plugins import MODELOPT_INSTALL
from gan_brevitas.quant.config import QuantConfig
from gan_brevitas.quant.describe import LayerRow, format_table

try:
    import modelopt.torch.quantization as mtq
    from modelopt.torch.quantization.nn import QuantModule, QuantModuleRegistry, TensorQuantizer
    from modelopt.torch.quantization.tensor_quant import QUANT_DESC_8BIT_PER_TENSOR
except ImportError as _err:  # ModelOpt, or one of the packages it imports without declaring
    raise MissingDependencyError(
        f"the ModelOpt plugin needs nvidia-modelopt (import failed: {_err}); install it with "
        f"{MODELOPT_INSTALL} (it also brings requests and huggingface_hub, which ModelOpt "
        "imports but does not declare)."
    ) from _err

log = logging.getLogger(__name__)

#: Where `modelopt_ptq` records its decisions on the quantized model (read by `describe_rows`).
RECORD_ATTR = "gan_brevitas_modelopt"
EXPORT_OPSET = 17
EXPORT_TARGETS = ("tensorrt", "onnxruntime")
ONNX_FORMAT = "gan-brevitas/modelopt-onnx/1"


# ------------------------------------------------------------------------------------------
# Generator modules taught to ModelOpt
# ------------------------------------------------------------------------------------------


class QuantSelfAttention(QuantModule):
    """SAGAN self-attention with ModelOpt quantizers on the operands of both bmm products.

    bmm1 = query^T key (q_bmm, k_bmm), bmm2 = value x attention^T (v_bmm, softmax: the
    softmax output). Softmax itself and ``gamma * out + x`` stay float, as TensorRT runs them.
    """

    def _setup(self) -> None:
        for name in BMM_QUANTIZERS:
            self._register_temp_attribute(name, TensorQuantizer(QUANT_DESC_8BIT_PER_TENSOR))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        batch, channels, height, width = x.shape
        positions = height * width
        query = self.query_conv(x).view(batch, -1, positions).permute(0, 2, 1)  # B, N, C/8
        key = self.key_conv(x).view(batch, -1, positions)  # B, C/8, N
        attention = self.softmax(torch.bmm(self.q_bmm_quantizer(query), self.k_bmm_quantizer(key)))
        value = self.value_conv(x).view(batch, -1, positions)  # B, C, N
        # Quantized after the permute (per-tensor, so the same values) so that the Q/DQ sits
        # right in front of the MatMul, where TensorRT's int8 MatMul rule looks for it.
        weights = self.softmax_quantizer(attention.permute(0, 2, 1))
        out = torch.bmm(self.v_bmm_quantizer(value), weights).view(batch, channels, height, width)
        return self.gamma * out + x, attention


class QuantBlur(QuantModule):
    """StyleGAN's fixed depthwise 3x3 blur with ModelOpt input and weight quantizers."""

    def _setup(self) -> None:
        self._register_temp_attribute("input_quantizer", TensorQuantizer(QUANT_DESC_8BIT_PER_TENSOR))
        self._register_temp_attribute("weight_quantizer", TensorQuantizer(QUANT_DESC_8BIT_PER_TENSOR))

    def forward(self, x: Tensor) -> Tensor:
        weight = self.weight_quantizer(self.weight)
        return F.conv2d(self.input_quantizer(x), weight, padding=1, groups=x.shape[1])


#: Our module class -> (registry key, ModelOpt quantized class).
GENERATOR_MODULES: dict[type[nn.Module], tuple[str, type[QuantModule]]] = {
    SelfAttention: (ATTENTION_KEY, QuantSelfAttention),
    Blur: (BLUR_KEY, QuantBlur),
}


def register_generator_modules() -> None:
    """Register `GENERATOR_MODULES` with ModelOpt's QuantModuleRegistry (once; idempotent)."""
    for original, (key, quantized) in GENERATOR_MODULES.items():
        if QuantModuleRegistry.get(original) is None:
            QuantModuleRegistry.register({original: key})(quantized)


register_generator_modules()


def unquantizable_layers(model: nn.Module, skip: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """(name, class) of layers that own a trained weight of >= 2 dims which neither ModelOpt
    nor this plugin can quantize, that are not a known float part and not in ``skip``."""
    found = []
    covered = skipped_modules(model, skip)
    for name, module in model.named_modules():
        if any(name == c or name.startswith(c + ".") for c in covered):
            continue
        owns_weight = any(p.dim() >= 2 for p in module.parameters(recurse=False))
        if owns_weight and module not in QuantModuleRegistry and type(module) not in FLOAT_REASONS:
            found.append((name or "<model>", type(module).__name__))
    return found


# ------------------------------------------------------------------------------------------
# Calibration
# ------------------------------------------------------------------------------------------


@dataclass
class CalibrationLoop:
    """ModelOpt's ``forward_loop(model)`` built from gan_brevitas inputs.

    The batches are read once (through `iter_batches`, like every Brevitas recipe) and kept,
    so every call of the loop (ModelOpt may call it more than once) sees the same data.
    """

    inputs: InputSource
    num_samples: int = 500
    batch_size: int = 32
    progress: bool = False
    _batches: Optional[list[Tensor]] = field(default=None, init=False, repr=False)

    def batches(self) -> list[Tensor]:
        if self._batches is None:
            self._batches = [batch.detach() for batch in iter_batches(self.inputs, self.num_samples, self.batch_size)]
        return self._batches

    def __call__(self, model: nn.Module) -> None:
        device = next(model.parameters()).device
        batches = self.batches()
        if self.progress:
            from tqdm.auto import tqdm

            batches = tqdm(batches, desc="ModelOpt calibration", leave=False)
        with torch.no_grad():
            for batch in batches:
                model(batch.to(device))


@contextlib.contextmanager
def _recording_calls(model: nn.Module) -> Iterator[set[str]]:
    """Names of the ModelOpt-quantized modules that run inside the block."""
    called: set[str] = set()
    handles = [
        module.register_forward_pre_hook(lambda m, a, name=name: called.add(name))
        for name, module in model.named_modules()
        if isinstance(module, QuantModule)
    ]
    try:
        yield called
    finally:
        for handle in handles:
            handle.remove()


def _quantizers(module: nn.Module) -> dict[str, TensorQuantizer]:
    """The module's own quantizers (not those of its children), by attribute name."""
    return {name: child for name, child in module.named_children() if isinstance(child, TensorQuantizer)}


@contextlib.contextmanager
def _collecting_statistics(quantizers: list[TensorQuantizer]) -> Iterator[None]:
    """Quantizers observe (calibrate) instead of quantizing inside the block; restored after."""
    for quantizer in quantizers:
        quantizer.disable_quant()
        quantizer.enable_calib()
    try:
        yield
    finally:
        for quantizer in quantizers:
            quantizer.disable_calib()
            quantizer.enable_quant()


def max_calibrate(model: nn.Module, loop: Callable[[nn.Module], None]) -> set[str]:
    """ModelOpt's own "max" algorithm; returns the names of the quantized modules that ran."""
    with _recording_calls(model) as called:
        mtq.calibrate(model, "max", loop)
    return called


def percentile_calibrate(model: nn.Module, loop: Callable[[nn.Module], None], percentile: float) -> set[str]:
    """Histogram calibration: activation amax = ``percentile`` of |x| over all calibration
    data (ModelOpt's HistogramCalibrator), weight amax = max (its MaxCalibrator).

    ModelOpt's "max" algorithm reads calibrators without a method, which a histogram needs,
    so this runs the documented TensorQuantizer calls (enable_calib, then load_calib_amax with
    the method) itself. Returns the names of the quantized modules that ran.
    """
    quantizers = [m for m in model.modules() if isinstance(m, TensorQuantizer) and m.is_enabled]
    with _recording_calls(model) as called, _collecting_statistics(quantizers):
        loop(model)
    for name in called:
        for attr, quantizer in _quantizers(model.get_submodule(name)).items():
            if not quantizer.is_enabled:
                continue
            if attr.endswith("weight_quantizer"):
                quantizer.load_calib_amax()
            else:
                quantizer.load_calib_amax("percentile", percentile=percentile)
    return called


def _disable_unused(model: nn.Module, called: set[str]) -> list[str]:
    """Disable the quantizers of modules that never ran during calibration; their names.

    Why: they have no range (StyleGAN holds blocks for every resolution and runs those up to
    its output size). Left enabled, ModelOpt would quantize them with a per-batch dynamic
    range if they ever ran; disabled, they run float and the report says so.
    """
    unused = []
    for name, module in model.named_modules():
        if not isinstance(module, QuantModule) or name in called:
            continue
        enabled = [q for q in _quantizers(module).values() if q.is_enabled]
        for quantizer in enabled:
            quantizer.disable()
        if enabled:
            unused.append(name)
    if unused:
        log.warning(
            "%d quantized layer(s) never ran during calibration and stay float: %s",
            len(unused), ", ".join(unused[:4]) + (", ..." if len(unused) > 4 else ""),
        )
    return unused


# ------------------------------------------------------------------------------------------
# Quantization (the recipes handler)
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelOptRecord:
    """What `modelopt_ptq` did, kept on the quantized model for reports and export."""

    preset: ModelOptPreset
    skipped: tuple[str, ...]
    unused: tuple[str, ...]
    num_samples: int

    def to_json(self) -> str:
        return json.dumps(
            {"preset": self.preset.to_dict(), "skipped": list(self.skipped), "unused": list(self.unused),
             "num_samples": self.num_samples},
            sort_keys=True,
        )


def _skip_patterns(config: Optional[QuantConfig], preset: ModelOptPreset) -> tuple[str, ...]:
    """QuantConfig.skip; any other non-default QuantConfig field is a ConfigError (ModelOpt
    presets fix the scheme, a silently ignored field would be a lie in the report)."""
    if config is None:
        return ()
    if not isinstance(config, QuantConfig):
        raise ConfigError(f"config must be a QuantConfig, got {type(config).__name__}.")
    default = QuantConfig()
    changed = [
        f"{name}={getattr(config, name)!r}"
        for name in config.to_dict()
        if name != "skip" and getattr(config, name) != getattr(default, name)
    ]
    if changed:
        raise ConfigError(
            f"method 'modelopt-{preset.name}' uses ModelOpt's fixed scheme ({preset.summary}); "
            f"QuantConfig field(s) {', '.join(changed)} do not apply to it (only skip does). Pick "
            f"another preset ({', '.join('modelopt-' + p for p in sorted(PRESETS))}) or a Brevitas "
            "method such as 'vanilla-ptq'."
        )
    return config.skip


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
    scheme = resolve_preset(preset)
    if quantize_attention is not None:
        scheme = replace(scheme, quantize_attention=quantize_attention)
    if quantize_blur is not None:
        scheme = replace(scheme, quantize_blur=quantize_blur)
    if quantize_outputs is not None:
        scheme = replace(scheme, quantize_outputs=quantize_outputs)
    skip = _skip_patterns(config, scheme)
    if not isinstance(float_model, nn.Module):
        raise ConversionError(f"expected a torch.nn.Module, got {type(float_model).__name__}.")
    if any(isinstance(m, TensorQuantizer) for m in float_model.modules()):
        raise ConversionError("the model is already quantized by ModelOpt: quantize the float generator instead.")
    bad = unquantizable_layers(float_model, skip)
    if bad:
        listed = ", ".join(f"{name} ({cls})" for name, cls in bad)
        raise ConversionError(
            f"neither ModelOpt nor the gan_brevitas plugin can quantize: {listed}. These layers own "
            "trained weights used in a custom forward: fold them into nn.Conv2d / nn.Linear, "
            "register a quantized class with modelopt.torch.quantization.register(cls, quant_cls), "
            "or keep them float with QuantConfig(skip=[...])."
        )
    loop = CalibrationLoop(inputs, num_samples, batch_size, progress)
    loop.batches()  # bad inputs fail here, before ModelOpt touches the model
    modelopt_config = scheme.modelopt_config(float_model, skip)
    skipped = tuple(skipped_modules(float_model, skip))  # by class name: before ModelOpt renames classes
    model = float_model.eval()
    printed = io.StringIO()
    try:
        # Conversion only (algorithm None): calibration follows, with the loop, below. ModelOpt
        # prints its progress ("Inserted N quantizers"); it goes to our log instead.
        with contextlib.redirect_stdout(printed):
            model = mtq.quantize(model, {**modelopt_config, "algorithm": None}, None)
    except RuntimeError as err:
        raise ConversionError(f"ModelOpt found nothing to quantize: {err}") from err
    finally:
        for line in printed.getvalue().splitlines():
            log.info("ModelOpt: %s", line)
    if scheme.calibration == "max":
        called = max_calibrate(model, loop)
    else:
        called = percentile_calibrate(model, loop, float(scheme.act_percentile))
    unused = _disable_unused(model, called)
    record = ModelOptRecord(scheme, skipped, tuple(unused), num_samples)
    setattr(model, RECORD_ATTR, record)
    return model.eval()


# ------------------------------------------------------------------------------------------
# Report (the `describe` table)
# ------------------------------------------------------------------------------------------


def _original_class(module: nn.Module) -> type[nn.Module]:
    """The float class a ModelOpt module was converted from (QuantConv2d -> nn.Conv2d)."""
    return module.original_cls if isinstance(module, QuantModule) else type(module)


def _amax(quantizer: TensorQuantizer) -> Optional[Tensor]:
    amax = quantizer.amax
    return None if amax is None else amax.detach().float()


def _act_text(quantizer: TensorQuantizer) -> str:
    """``s8 sym s=0.0123`` (the Brevitas report's notation); "float" when disabled."""
    if not quantizer.is_enabled:
        return "float"
    amax = _amax(quantizer)
    sign = "u" if quantizer.unsigned else "s"
    if amax is None:
        return f"{sign}{quantizer.num_bits} sym dynamic"
    scale = float(amax.max()) / quantizer.maxbound
    per = "" if amax.numel() == 1 else f" ({amax.numel()} scales)"
    return f"{sign}{quantizer.num_bits} sym s={scale:.3g}{per}"


def _float_row(name: str, note: str) -> LayerRow:
    return LayerRow(name=name or "<model>", kind="float", weight_bits="-", per_channel="-", activations="-",
                    note=note)


def _module_row(name: str, module: QuantModule, record: Optional[ModelOptRecord]) -> Optional[LayerRow]:
    """The report line of one ModelOpt module, or None for one with nothing to say (e.g. a
    LeakyReLU whose quantizers the preset disables)."""
    quantizers = _quantizers(module)
    kind = _original_class(module).__name__
    weight_q = quantizers.get("weight_quantizer")
    input_q = quantizers.get("input_quantizer")
    unused = record is not None and name in record.unused
    skipped = record is not None and any(name == s or name.startswith(s + ".") for s in record.skipped)
    if skipped:
        return _float_row(name, f"{kind}: kept float (skip)") if weight_q is not None else None
    if unused:
        return _float_row(name, f"{kind}: never ran during calibration (unused at this output size): kept float")
    if isinstance(module, QuantSelfAttention):
        if not any(quantizers[q].is_enabled for q in BMM_QUANTIZERS):
            return _float_row(name, FLOAT_REASONS[SelfAttention])
        operands = " ".join(f"{q.split('_')[0]} {_act_text(quantizers[q])}" for q in BMM_QUANTIZERS)
        return LayerRow(name, kind, "-", "-", f"bmm in: {operands}",
                        "softmax and the gamma residual stay float; query/key/value convs listed apart")
    if weight_q is not None:
        if not weight_q.is_enabled:
            why = FLOAT_REASONS[Blur] + " (quantize_blur=True quantizes it)" if isinstance(module, QuantBlur) else \
                f"{kind}: weight quantizer disabled: kept float"
            return _float_row(name, why)
        per_channel = "no" if weight_q.axis is None else f"yes (axis {weight_q.axis})"
        activations = f"in {_act_text(input_q)}" if input_q is not None else "-"
        output_q = quantizers.get("output_quantizer")
        if output_q is not None and output_q.is_enabled:
            activations += f" | out {_act_text(output_q)}"
        note = "fixed binomial filter, quantized (quantize_blur=True)" if isinstance(module, QuantBlur) else ""
        return LayerRow(name, kind, str(weight_q.num_bits), per_channel, activations, note)
    if input_q is not None and input_q.is_enabled:
        note = "ModelOpt's Q/DQ on its input; the statistics and the op stay float"
        return LayerRow(name, kind, "-", "-", f"in {_act_text(input_q)}", note)
    return None


def describe_rows(qmodel: nn.Module) -> list[LayerRow]:
    """One row per layer ModelOpt quantized and per part that stayed float (with the reason).

    Every layer with a trained weight appears: quantized, or as a float row that says why
    (skip, never ran during calibration, a known float part).
    """
    record: Optional[ModelOptRecord] = getattr(qmodel, RECORD_ATTR, None)
    rows: list[LayerRow] = []
    listed: set[str] = set()
    for name, module in qmodel.named_modules():
        if isinstance(module, QuantModule):
            row = _module_row(name, module, record)
            if row is not None:
                rows.append(row)
                listed.add(name)
    for name, why in float_parts(qmodel):
        if name not in listed:
            rows.append(_float_row(name, why))
            listed.add(name)
    for name, module in qmodel.named_modules():
        owns_weight = any(p.dim() >= 2 for p in module.parameters(recurse=False))
        if owns_weight and name not in listed and not isinstance(module, QuantModule) \
                and not any(name.startswith(n + ".") for n in listed if n):
            rows.append(_float_row(name, f"{type(module).__name__}: no ModelOpt or plugin quantized class: kept "
                                         "float (skip)"))
    return rows


def describe(qmodel: nn.Module) -> str:
    """The `describe` table of a ModelOpt-quantized model (same format as the Brevitas one)."""
    return format_table(describe_rows(qmodel))


# ------------------------------------------------------------------------------------------
# ONNX export (ModelOpt's Q/DQ symbolics through torch.onnx) and ONNX Runtime parity
# ------------------------------------------------------------------------------------------


def _check_exportable(qmodel: nn.Module) -> None:
    from gan_brevitas.plugins import is_modelopt_model

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
            amax = _amax(module)
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


def _constant_array(graph: Any, name: str) -> Optional[Any]:
    from onnx import numpy_helper

    for init in graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    for node in graph.node:
        if node.op_type == "Constant" and name in node.output:
            return numpy_helper.to_array(node.attribute[0].t)
    return None


def fold_weight_quantize(model_proto: Any) -> int:
    """Replace QuantizeLinear nodes of constant (weight) tensors by their int8 result (in place).

    ModelOpt exports weights as float -> QuantizeLinear -> DequantizeLinear; TensorRT, the
    rules checker and a 4x smaller file want the int8 initializer -> DequantizeLinear form.
    Values are what QuantizeLinear computes: round-half-even(w / scale) + zero point,
    saturated (scale broadcast along ``axis``). Returns the number of folded nodes.
    """
    import numpy as np
    from onnx import numpy_helper

    graph = model_proto.graph
    folded = 0
    for node in list(graph.node):
        if node.op_type != "QuantizeLinear":
            continue
        weight, scale = _constant_array(graph, node.input[0]), _constant_array(graph, node.input[1])
        zero_point = _constant_array(graph, node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if weight is None or scale is None or zero_point is None:
            continue
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        shape = [1] * weight.ndim
        if scale.size > 1:
            shape[axis % weight.ndim] = scale.size
        info = np.iinfo(zero_point.dtype)
        scaled = weight.astype(np.float32) / scale.astype(np.float32).reshape(shape)
        values = np.clip(np.rint(scaled) + zero_point.astype(np.float32).reshape(shape), info.min, info.max)
        graph.initializer.append(numpy_helper.from_array(values.astype(zero_point.dtype), node.output[0]))
        graph.node.remove(node)
        folded += 1
    used = {name for node in graph.node for name in node.input}
    for init in list(graph.initializer):
        if init.name not in used and init.name not in {o.name for o in graph.output}:
            graph.initializer.remove(init)
    for node in list(graph.node):
        if node.op_type == "Constant" and not any(out in used for out in node.output):
            graph.node.remove(node)
    return folded


def export_onnx(
    qmodel: nn.Module,
    path: str | os.PathLike,
    target: str = "tensorrt",
    *,
    inputs: Optional[InputSource] = None,
    example_input: Optional[Tensor] = None,
    opset: int = EXPORT_OPSET,
) -> Any:
    """Export a ModelOpt-quantized generator to a Q/DQ ONNX file; returns an ExportReport.

    The graph comes from ModelOpt's own ONNX symbolics (TorchScript exporter, opset 17, batch
    dimension dynamic); weight QuantizeLinear nodes are then folded into int8 initializers
    and initializers leave graph.input. ModelOpt's scheme is symmetric int8 with axis-0 weight
    scales, so one graph serves both targets: for "tensorrt" an error-level violation of
    TensorRT's rules stops the export (nothing written); for "onnxruntime" violations are
    logged. 4-bit weights are exported exactly on the int8 grid (`weights_on_int8_grid`).
    """
    import onnx

    from gan_brevitas.export import passes
    from gan_brevitas.export.qcdq import ExportReport, example_input_for
    from gan_brevitas.export.rules import check_tensorrt, format_violations

    if target not in EXPORT_TARGETS:
        raise ExportError(
            f"target {target!r} is not one of {EXPORT_TARGETS} for a ModelOpt model (its float "
            "baseline is the float generator: recipes.export(model, path, target='float'))."
        )
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
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            try:
                torch.onnx.export(
                    work, (x,), str(raw), dynamo=False, opset_version=opset, do_constant_folding=True,
                    input_names=[input_name], output_names=list(output_names),
                    dynamic_axes={name: {0: "batch"} for name in (input_name, *output_names)},
                )
            except Exception as err:
                disk = write_error(err, raw)
                if disk is not None:
                    raise disk from err
                raise ExportError(
                    f"tracing the ModelOpt model to ONNX failed ({type(err).__name__}: {err})."
                ) from err
        model_proto = onnx.load(str(raw))
        folded = fold_weight_quantize(model_proto)
        conversions.append(f"{folded} weight QuantizeLinear node(s) folded into int8 initializers")
        passes.remove_initializer_inputs(model_proto)
        info = getattr(qmodel, "gan_brevitas", None)
        record: Optional[ModelOptRecord] = getattr(qmodel, RECORD_ATTR, None)
        passes.set_metadata(model_proto, {
            "format": ONNX_FORMAT,
            "target": target,
            "backend": "nvidia-modelopt",
            "method": getattr(info, "method", "unknown"),
            "modelopt": record.to_json() if record is not None else "{}",
            "input_name": input_name,
            "input_kind": str(getattr(qmodel, "input_kind", "unknown")),
        })
        try:
            onnx.checker.check_model(model_proto, full_check=True)
        except Exception as err:
            raise ExportError(f"the exported graph fails onnx.checker: {err}") from err
        rules = check_tensorrt(model_proto)
        if target == "tensorrt" and rules.errors:
            listed = "\n".join(format_violations(rules.errors))
            raise ExportError(f"the graph breaks TensorRT's rules, nothing was written:\n{listed}")
        rule_notes = tuple(str(v) for v in (rules.warnings if target == "tensorrt" else rules.violations))
        for note in rule_notes:
            log.warning("%s", note)
    atomic_write(path, lambda temporary: onnx.save(model_proto, temporary), what="export output")
    return ExportReport(
        path=path, target=target, opset=opset, input_name=input_name, input_shape=tuple(x.shape),
        output_names=output_names, file_bytes=path.stat().st_size, conversions=tuple(conversions),
        warnings=rule_notes, metadata=passes.read_metadata(model_proto),
    )


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
    import numpy as np

    from gan_brevitas.export.ort import OrtGenerator

    runner = OrtGenerator(path, threads)
    was_training = qmodel.training
    qmodel.eval()
    errors, quant_errors = [], []
    try:
        with torch.no_grad():
            for batch in iter_batches(inputs, n, batch_size):
                batch = batch.float().cpu()
                expected = _first(qmodel(batch)).numpy()
                with quantizers_disabled(qmodel):
                    reference = _first(qmodel(batch)).numpy()
                got = runner(batch)
                if got.shape != expected.shape:
                    raise ExportError(f"ONNX output shape {got.shape} differs from the model's {expected.shape}.")
                errors.append(np.abs(got - expected).ravel())
                quant_errors.append(np.abs(expected - reference).ravel())
    finally:
        qmodel.train(was_training)
    diffs = np.concatenate(errors)
    return ModelOptParity(
        mae=float(diffs.mean()), max_abs=float(diffs.max()), quant_mae=float(np.concatenate(quant_errors).mean()),
        exact_fraction=float((diffs < EXACT_ATOL).mean()), n=n,
    )


def _first(output: Any) -> Tensor:
    return output[0] if isinstance(output, (tuple, list)) else output
