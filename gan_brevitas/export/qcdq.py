"""QCDQ ONNX export of quantized generators, per deployment target.

Targets:

* ``onnxruntime``: the model as quantized (the paper's asymmetric uint8 activations are fine);
  every ConvTranspose is rewritten exactly as Conv + PixelShuffle + crop (`subpixel`), because
  ONNX Runtime runs ConvTranspose in float only; convs with fewer than 16 outputs get zero
  filters (`narrow`); data-movement ops run on the 8-bit tensors (`passes`); optional INT4
  packing of <= 4-bit weights.
* ``tensorrt``: TensorRT's rules (`rules`): symmetric int8 activations (an asymmetric model is
  re-calibrated from the given inputs, see `symmetric`), per-channel scales on weights only,
  ConvTranspose weights per tensor (kept) or per-channel rewritten as Conv (axis 0), 4-bit
  weights as int8 + Clip, optional fp16 float parts. The exported graph is checked against the
  rules and an error-level violation stops the export before anything is written.
* ``openvino``: the graph OpenVINO's low-precision transformations turn into int8 kernels
  (what NNCF's output looks like): symmetric activations, unsigned uint8 with zero point 0 for
  tensors that are never negative (after ReLU) and int8 elsewhere (an asymmetric model is
  re-calibrated from the given inputs), Q/DQ moved across Pad / DepthToSpace / nearest Resize
  so they fuse with the op before them, repeated Q/DQ of aligned quantizers removed, all-zero
  weight zero points dropped (with them OpenVINO ran the layer in f32), ConvTranspose kept
  (OpenVINO runs it in int8; the Conv + PixelShuffle rewrite costs up to 16/9 of its
  multiply-adds plus a DepthToSpace) except where its output is not exactly stride x input
  (OpenVINO's int8 kernel gave wrong, run-to-run different outputs for one such layer). ``.xml`` paths are written as OpenVINO IR
  (.xml + .bin), others as ONNX; when openvino is installed the file is compiled for the CPU
  and every quantized conv that did not run in int8 is named in the report's warnings.
* ``float``: the folded float generator (or a quantized model's float twin: the same weights
  without quantizers), the fp32 baseline that `bench` compares against.

Brevitas exports with the TorchScript exporter (``dynamo=False``: the dynamo path rejects
quantized biases); the file is then cleaned (initializers out of graph.input), stamped with
metadata, checked with ``onnx.checker`` (full check) and written to a temporary file that is
renamed into place, so a failed export leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import onnx
import torch
from torch import Tensor, nn

from gan_brevitas.atomic_files import atomic_write, check_output_path, write_error
from gan_brevitas.cpu_features import SATURATION_FREE_WEIGHT_BITS, int8_features, int8_pairs_saturate
from gan_brevitas.errors import ExportError, MissingDependencyError
from gan_brevitas.export import passes
from gan_brevitas.export.conv_integer import float_tail_as_conv_integer
from gan_brevitas.export.prelu_int8 import prelu_on_int8
from gan_brevitas.export.narrow import MIN_INT8_OUT_CHANNELS, pad_narrow_convs
from gan_brevitas.export.space_to_depth import BLOCK, narrow_convs_as_space_to_depth
from gan_brevitas.export.rules import check_tensorrt, format_violations
from gan_brevitas.export.subpixel import rewrite_conv_transpose
from gan_brevitas.export.symmetric import float_twin, has_asymmetric_activations, to_symmetric
from gan_brevitas.export.tanh_tail import TANH_RANGES, tanh_tails_on_ranges
from gan_brevitas.inputs import InputSource, iter_batches
from gan_brevitas.quant.config import QuantConfig
from gan_brevitas.quant.convert import quant_layers, replace_module

log = logging.getLogger(__name__)

TARGETS = ("onnxruntime", "tensorrt", "openvino", "float")
CONV_TRANSPOSE_MODES = ("auto", "subpixel", "keep")
#: What the openvino target moves Q/DQ across: only Pad (so it runs on 8 bits and the Q fuses
#: into the op before). Moved across DepthToSpace / Slice, OpenVINO ran them in float: on the
#: suite's sketch translator (b1, 2 threads, n=5, load ~20 on 2 cores) 26% of the profiled time
#: was outside int8 kernels (DepthToSpace 18%) vs 8% with Pad only, same PSNR; wall time
#: 208 vs 231 ms, within that run's noise.
OPENVINO_MOVERS = ("Pad",)
DEFAULT_OPSET = 17
MIN_OPSET = 13
FORMAT = "gan-brevitas/onnx/1"


@dataclass(frozen=True)
class ExportOptions:
    """How to export; validated on construction.

    Attributes:
        target: "onnxruntime", "tensorrt", "openvino" or "float".
        opset: ONNX opset; None picks 17 (21 with int4).
        conv_transpose: "auto" (onnxruntime: rewrite every ConvTranspose as Conv + PixelShuffle;
            tensorrt: rewrite those with per-channel weights, which TensorRT cannot run;
            openvino: rewrite those whose output is not exactly stride x input, keep the rest;
            float: keep), "subpixel" (rewrite all) or "keep" (rewrite none).
        fp16: run the float parts in fp16 between explicit Casts (tensorrt only).
        int4: pack weights of <= 4 bits as ONNX INT4 (onnxruntime only; opset 21).
        dynamic_batch: make the batch dimension of inputs and outputs symbolic.
        num_samples: calibration samples when re-calibrating symmetric activations (tensorrt,
            openvino).
        pad_narrow_convs: give quantized convs with fewer than 16 output channels zero filters
            up to 16 and slice them off (exact; onnxruntime only: its int8 conv is several
            times slower for narrow outputs, see `narrow`).
        profile: run the written file a few times on the example input in its engine's
            profiler (onnxruntime, openvino) and report the share of time outside int8
            kernels and the largest float ops.
    """

    target: str = "onnxruntime"
    opset: Optional[int] = None
    conv_transpose: str = "auto"
    fp16: bool = False
    int4: bool = False
    dynamic_batch: bool = True
    num_samples: int = 128
    pad_narrow_convs: bool = True
    profile: bool = False

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise ExportError(f"unknown export target {self.target!r}; choose one of {', '.join(TARGETS)}.")
        if self.conv_transpose not in CONV_TRANSPOSE_MODES:
            raise ExportError(
                f"conv_transpose={self.conv_transpose!r} is not one of {', '.join(CONV_TRANSPOSE_MODES)}."
            )
        if self.fp16 and self.target != "tensorrt":
            raise ExportError(
                "fp16=True is for target='tensorrt' (strongly typed networks); ONNX Runtime's CPU "
                "provider has few fp16 kernels."
            )
        if self.int4 and self.target != "onnxruntime":
            raise ExportError(
                "int4=True is for target='onnxruntime': TensorRT has no 4-bit convolution (4-bit "
                "weights go to it as int8 + Clip, the default)."
            )
        if self.opset is not None and self.opset < MIN_OPSET:
            raise ExportError(f"opset {self.opset} is too old: per-channel Q/DQ needs opset >= {MIN_OPSET}.")
        if self.int4 and self.opset is not None and self.opset < passes.INT4_MIN_OPSET:
            raise ExportError(f"int4=True needs opset >= {passes.INT4_MIN_OPSET}, got opset={self.opset}.")
        if isinstance(self.num_samples, bool) or not isinstance(self.num_samples, int) or self.num_samples < 1:
            raise ExportError(f"num_samples must be a positive integer, got {self.num_samples!r}.")

    @property
    def resolved_opset(self) -> int:
        if self.opset is not None:
            return self.opset
        return passes.INT4_MIN_OPSET if self.int4 else DEFAULT_OPSET


@dataclass(frozen=True)
class ExportReport:
    """What an export wrote and what it changed on the way."""

    path: Path
    target: str
    opset: int
    input_name: str
    input_shape: tuple[int, ...]
    output_names: tuple[str, ...]
    file_bytes: int
    conversions: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    metadata: dict[str, str] = field(default_factory=dict)
    time_share: Optional[str] = None

    def format(self) -> str:
        lines = [
            f"wrote {self.path} ({self.file_bytes / 1e6:.2f} MB, target {self.target}, opset {self.opset})",
            f"  input {self.input_name} {list(self.input_shape)} (batch dynamic), outputs {', '.join(self.output_names)}",
        ]
        lines += [f"  converted: {c}" for c in self.conversions]
        lines += [f"  {w}" for w in self.warnings]
        if self.time_share:
            lines.append(f"  profile: {self.time_share}")
        return "\n".join(lines)


# ------------------------------------------------------------------------------------------
# Inputs, names, checks
# ------------------------------------------------------------------------------------------


def example_input_for(model: nn.Module, example_input: Optional[Tensor], inputs: Optional[InputSource]) -> Tensor:
    """One input of batch 1 for tracing: ``example_input``, else the first of ``inputs``, else
    the calibration input shape recorded on a quantized model, else built from the generator's
    ``input_kind`` / ``latent_dim`` / ``image_size`` attributes."""
    if example_input is not None:
        if not isinstance(example_input, Tensor) or example_input.dim() < 2:
            raise ExportError("example_input must be a batch tensor [B, ...] of generator inputs.")
        return example_input[:1].detach().float().cpu()
    if inputs is not None:
        return next(iter_batches(inputs, 1, 1)).float().cpu()
    recorded = getattr(getattr(model, "gan_brevitas", None), "input_shape", None)
    if recorded:  # the shape it was calibrated on (recipes.quantize records it)
        return torch.zeros(1, *recorded)
    kind = getattr(model, "input_kind", None)
    if kind == "latent" and getattr(model, "latent_dim", None):
        return torch.zeros(1, int(model.latent_dim))
    if kind == "image" and getattr(model, "in_channels", None) and getattr(model, "image_size", None):
        side = int(model.image_size)
        return torch.zeros(1, int(model.in_channels), side, side)
    raise ExportError(
        "cannot tell this generator's input shape: pass example_input=torch.randn(1, ...) "
        "(a batch of one input) or inputs=..."
    )


def _input_name(model: nn.Module) -> str:
    return {"latent": "latent", "image": "input_image"}.get(getattr(model, "input_kind", ""), "input")


def _output_names(model: nn.Module, x: Tensor) -> tuple[str, ...]:
    with torch.no_grad():
        output = model(x)
    if isinstance(output, (tuple, list)):
        return ("image",) + tuple(f"output_{i}" for i in range(1, len(output)))
    return ("output",) if getattr(model, "input_kind", None) is None else ("image",)


def _is_placeholder(proxy: nn.Module) -> bool:
    """An activation quantizer still at its construction values (never calibrated)."""
    tensor_quant = proxy.fused_activation_quant_proxy.tensor_quant
    scale_untouched = bool(torch.all(tensor_quant.scaling_impl.value.detach() == 1.0))
    zero_point = getattr(tensor_quant.zero_point_impl, "value", None)
    zero_untouched = zero_point is None or bool(torch.all(zero_point.detach() == 0.0))
    return scale_untouched and zero_untouched


@contextlib.contextmanager
def _record_calls(model: nn.Module, names: list[str]) -> Iterator[list[str]]:
    called: list[str] = []
    handles = [
        model.get_submodule(name).register_forward_pre_hook(lambda m, a, name=name: called.append(name))
        for name in names
    ]
    try:
        yield called
    finally:
        for handle in handles:
            handle.remove()


def layers_called(qmodel: nn.Module, x: Tensor) -> list[str]:
    """Names of the quantized layers that run on ``x``, in call order (each once)."""
    names = [name for name, _ in quant_layers(qmodel)]
    with _record_calls(qmodel, names) as called, torch.no_grad():
        qmodel(x)
    return list(dict.fromkeys(called))


def drop_unused_layers(qmodel: nn.Module, called: list[str]) -> list[str]:
    """Replace (in place) the quantized layers not in ``called`` (`layers_called` on the example
    input) by Identity.

    Why: StyleGAN holds blocks for every resolution but runs those up to its output size;
    Brevitas's export needs each quantized layer's input scale from a forward pass, which
    unused layers never see. They are not part of the traced graph either way.
    """
    known = set(called)
    unused = [name for name, _ in quant_layers(qmodel) if name not in known]
    for name in unused:
        replace_module(qmodel, name, nn.Identity())
    if unused:
        log.info("%d quantized layer(s) do not run on this input and are left out: %s",
                 len(unused), ", ".join(unused[:4]) + (", ..." if len(unused) > 4 else ""))
    return unused


def check_calibrated(qmodel: nn.Module, called: list[str]) -> None:
    """ExportError naming the quantized layers in ``called`` (`layers_called` on the example
    input) that were never calibrated."""
    stale = []
    for name in called:
        layer = qmodel.get_submodule(name)
        for side in ("input_quant", "output_quant"):
            proxy = getattr(layer, side)
            if proxy.is_quant_enabled and _is_placeholder(proxy):
                stale.append(f"{name}.{side}")
    if stale:
        shown = ", ".join(stale[:4]) + (", ..." if len(stale) > 4 else "")
        raise ExportError(
            f"the model was never calibrated: {len(stale)} activation quantizer(s) still hold their "
            f"initial ranges ({shown}); quantize it with recipes.quantize(model, 'vanilla-ptq', "
            "inputs=...) before exporting."
        )


def _check_noise_mode(model: nn.Module) -> None:
    if getattr(model, "noise_mode", None) == "random":
        raise ExportError(
            "this generator draws random noise on every call, which has no fixed ONNX graph; set "
            "model.noise_mode = 'const' (fixed noise maps, the mode qFID uses) before exporting."
        )


def _is_quantized(model: nn.Module) -> bool:
    return any(True for _ in quant_layers(model))


# ------------------------------------------------------------------------------------------
# Target preparation (PyTorch side)
# ------------------------------------------------------------------------------------------


def _per_channel_conv_transposes(model: nn.Module) -> list[str]:
    from brevitas.nn import QuantConvTranspose2d

    found = []
    for name, layer in quant_layers(model):
        if isinstance(layer, QuantConvTranspose2d):
            with torch.no_grad():
                if layer.quant_weight().scale.numel() > 1:
                    found.append(name)
    return found


def _conv_transposes(model: nn.Module) -> list[str]:
    return [name for name, m in model.named_modules() if isinstance(m, nn.ConvTranspose2d)]


def _ragged_conv_transposes(model: nn.Module) -> list[str]:
    """ConvTransposes whose output is not exactly stride x input (k - 2p + op not a multiple of
    the stride). OpenVINO's int8 Deconvolution gave run-to-run different, wrong outputs for
    one (the suite DCGAN's k3 s2 p1: 16.7 vs 31.2 dB on identical runs); the others matched
    ONNX Runtime on every run."""
    ragged = []
    for name, m in model.named_modules():
        if isinstance(m, nn.ConvTranspose2d):
            extra = [k - 2 * p + op for k, p, op in zip(m.kernel_size, m.padding, m.output_padding)]
            if any(e % s for e, s in zip(extra, m.stride)):
                ragged.append(name)
    return ragged


def _subpixel_targets(model: nn.Module, options: ExportOptions) -> list[str]:
    mode = options.conv_transpose
    if mode == "auto" and options.target == "openvino":
        return _ragged_conv_transposes(model)
    if mode == "keep" or (mode == "auto" and options.target == "float"):
        return []
    if mode == "auto" and options.target == "tensorrt":
        return _per_channel_conv_transposes(model)
    return _conv_transposes(model)


def _weight_bits(layer: nn.Module) -> int:
    with torch.no_grad():
        return int(layer.quant_weight().bit_width)


def _config_of(model: nn.Module) -> Optional[QuantConfig]:
    info = getattr(model, "gan_brevitas", None)
    return getattr(info, "config", None)


def prepare_for_target(
    model: nn.Module, options: ExportOptions, inputs: Optional[InputSource], x: Tensor
) -> tuple[nn.Module, list[str], Optional[QuantConfig]]:
    """A copy of ``model`` ready to trace for ``options.target`` plus the conversions made.

    Never modifies ``model``. Returns (copy, conversion notes, config of the copy).
    """
    conversions: list[str] = []
    config = _config_of(model)
    if options.target == "float":
        if _is_quantized(model):
            # The same weights without quantizers: the fp32 baseline of exactly this network.
            work = float_twin(model)
            conversions.append("quantized model exported as its float twin (same weights, no quantizers)")
        else:
            from gan_brevitas.quant.convert import fold_for_quantization

            work = fold_for_quantization(model)
    else:
        if not _is_quantized(model):
            raise ExportError(
                "this model is not quantized (no Brevitas layers): run recipes.quantize(model, "
                "'vanilla-ptq', inputs=...) first, or export the float model with target='float'."
            )
        work = copy.deepcopy(model).eval()
        called = layers_called(work, x)  # one forward pass for both checks
        check_calibrated(work, called)
        drop_unused_layers(work, called)
        if options.target == "tensorrt" and has_asymmetric_activations(work):
            base = config if config is not None else QuantConfig()
            work = to_symmetric(work, inputs, base, num_samples=options.num_samples)
            config = base.replace(act_scheme="symmetric")
            conversions.append(
                f"activations: asymmetric uint8 -> symmetric int8, re-calibrated on {_samples_used(inputs, options)}"
            )
        if options.target == "openvino" and has_asymmetric_activations(work):
            base = config if config is not None else QuantConfig()
            work = to_symmetric(work, inputs, base, num_samples=options.num_samples, unsigned_nonnegative=True,
                                engine="OpenVINO")
            config = base.replace(act_scheme="symmetric")
            conversions.append(
                "activations: asymmetric uint8 -> symmetric (uint8 zero point 0 where never negative, "
                f"int8 elsewhere), re-calibrated on {_samples_used(inputs, options)}"
            )
    if options.int4 and not any(_weight_bits(layer) <= 4 for _, layer in quant_layers(work)):
        raise ExportError(
            "int4=True but no weight has <= 4 bits: quantize with QuantConfig(weight_bits=4) "
            "or export without int4."
        )
    targets = _subpixel_targets(work, options)
    if targets:
        rewrite_conv_transpose(work, targets)
        conversions.append(f"ConvTranspose -> Conv + PixelShuffle (exact): {', '.join(targets)}")
    if options.target == "onnxruntime" and options.pad_narrow_convs:
        padded = pad_narrow_convs(work)
        if padded:
            conversions.append(
                f"narrow convs padded to {MIN_INT8_OUT_CHANNELS} output channels, sliced back (exact): {', '.join(padded)}"
            )
    return work.eval(), conversions, config


# ------------------------------------------------------------------------------------------
# Export
# ------------------------------------------------------------------------------------------


def _trace_to_onnx(model: nn.Module, x: Tensor, path: Path, options: ExportOptions, input_name: str,
                   output_names: tuple[str, ...]) -> None:
    dynamic_axes = None
    if options.dynamic_batch:
        dynamic_axes = {name: {0: "batch"} for name in (input_name, *output_names)}
    kwargs: dict[str, Any] = dict(
        dynamo=False,
        # No folding at export: it would store products such as StyleGAN's noise weight x
        # constant noise map as full [1, C, H, W] tensors (tens of MB at 128 px); ONNX Runtime
        # folds constants when it loads the model anyway.
        do_constant_folding=False,
        opset_version=options.resolved_opset,
        input_names=[input_name],
        output_names=list(output_names),
        dynamic_axes=dynamic_axes,
    )
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        try:
            if options.target == "float":
                torch.onnx.export(model, (x,), str(path), **kwargs)
            else:
                from brevitas.export import export_onnx_qcdq

                export_onnx_qcdq(model, (x,), export_path=str(path), **kwargs)
        except ExportError:
            raise
        except Exception as err:
            disk = write_error(err, path)
            if disk is not None:
                raise disk from err
            raise ExportError(
                f"tracing the model to ONNX failed ({type(err).__name__}: {err}); generators must "
                "run with a fixed graph (no data-dependent Python control flow, const noise)."
            ) from err


def _metadata(model: nn.Module, config: Optional[QuantConfig], options: ExportOptions,
              conversions: list[str], input_name: str) -> dict[str, str]:
    from gan_brevitas import __version__

    info = getattr(model, "gan_brevitas", None)
    values = {
        "format": FORMAT,
        "version": __version__,
        "target": options.target,
        "input_name": input_name,
        "input_kind": str(getattr(model, "input_kind", "unknown")),
        "generator": json.dumps(getattr(info, "generator", None) or getattr(model, "generator_spec", None)),
        "conversions": json.dumps(conversions),
        "fp16": json.dumps(options.fp16),
        "int4": json.dumps(options.int4),
    }
    if options.target != "float":
        values["method"] = getattr(info, "method", "unknown")
        if config is not None:
            values.update(
                config=config.to_json(),
                weight_bits=str(config.weight_bits),
                act_bits=str(config.act_bits),
                act_scheme=config.act_scheme,
                per_channel=json.dumps(config.per_channel),
            )
    return values


def _samples_used(inputs: InputSource, options: ExportOptions) -> str:
    """How many calibration samples a re-calibration used: a tensor may hold fewer than asked for,
    a sampler never does, an iterable of batches may end early."""
    if torch.is_tensor(inputs):
        return f"{min(options.num_samples, int(inputs.shape[0]))} samples"
    return f"{options.num_samples} samples" if callable(inputs) else f"up to {options.num_samples} samples"


#: Graph passes run in order, each with the note it leaves when it changed something ({n}: how
#: many, or the names it returns).
GraphPasses = tuple[tuple[Callable[[onnx.ModelProto], Any], str], ...]
CPU_CLEANUPS: GraphPasses = (
    (passes.fold_weight_clips, "{n} sub-8-bit weight(s) stored as plain int8 (their Clip folded, exact: int8 kernels)"),
    (passes.merge_slices, "{n} pair(s) of Slices on different axes merged into one Slice each (exact)"),
)
CPU_INT8_TENSORS: GraphPasses = (
    (passes.remove_requantize, "{n} repeated Q/DQ pair(s) on the same grid removed (exact)"),
    (passes.concat_int8, "{n} Concat(s) on the 8-bit tensors (exact)"),
)
OPENVINO_REWRITES: GraphPasses = (
    (passes.drop_zero_weight_zero_points,
     "{n} all-zero weight zero point(s) dropped (exact; OpenVINO ran those layers in f32)"),
    (passes.signed_conv_inputs_as_uint8,
     "{n} signed int8 conv input(s) held as uint8 with zero point 128 (exact; OpenVINO's uint8 conv kernel)"),
)
ONNXRUNTIME_REWRITES: GraphPasses = (
    (passes.prelu_as_leaky_relu, "{n} single-slope PRelu -> LeakyRelu (exact; int8 QLinearLeakyRelu in ONNX Runtime)"),
    (prelu_on_int8, "{n} per-channel PRelu computed on 8 bits: Max / Min of requantized x and slope * x "
                    "(exact up to ties; ONNX Runtime has no int8 PRelu)"),
    (passes.prelu_as_min_mul_add, "{n} per-channel PRelu -> x + (slope - 1) * Min(x, 0) (ONNX Runtime's PRelu is slow)"),
    (passes.silu_as_quick_gelu, "{n} x * Sigmoid(x) -> QuickGelu(alpha=1) (one op; ONNX Runtime dequantized x twice)"),
    (tanh_tails_on_ranges, f"float-output conv(s) before a Tanh as one int8 conv on the nested pre-Tanh ranges "
                           f"{TANH_RANGES} (at most 0.0066 from the float result after the Tanh): {{n}}"),
    (float_tail_as_conv_integer, "float-output conv(s) as int8 ConvInteger + dequantizing Mul (exact): {n}"),
)


def _apply(model_proto: onnx.ModelProto, notes: list[str], steps: GraphPasses) -> None:
    """Run ``steps`` in order; each that changed something adds its note."""
    for run, note in steps:
        done = run(model_proto)
        if done:
            notes.append(note.format(n=done if isinstance(done, int) else ", ".join(done)))


def finish_graph(model_proto: onnx.ModelProto, options: ExportOptions) -> list[str]:
    """The graph passes ``options`` ask for (shared by both backends); notes of what changed."""
    notes = []
    removed = passes.remove_initializer_inputs(model_proto)
    if removed:
        log.info("removed %d initializers from graph.input", removed)
    if options.int4:
        packed = passes.pack_int4(model_proto)
        if packed == 0:
            raise ExportError(
                "int4=True but no weight has <= 4 bits: quantize with QuantConfig(weight_bits=4) "
                "or export without int4."
            )
        notes.append(f"{packed} weight tensor(s) packed as INT4")
    if options.target in ("onnxruntime", "openvino"):
        _apply(model_proto, notes, CPU_CLEANUPS)
        movers = OPENVINO_MOVERS if options.target == "openvino" else passes.DATA_MOVEMENT
        moves = passes.move_qdq_across_data_movement(model_proto, movers)
        if options.target == "onnxruntime":
            moves += _narrow_convs_on_blocks(model_proto, movers, notes)
        if moves:
            notes.append(f"{moves} Q/DQ moved across Pad / DepthToSpace / Slice / Reshape / Resize (exact: 8-bit data movement)")
        _apply(model_proto, notes, CPU_INT8_TENSORS)
    if options.target == "openvino":
        _apply(model_proto, notes, OPENVINO_REWRITES)
        _narrow_convs_on_blocks(model_proto, OPENVINO_MOVERS, notes)  # after: it reads the uint8 inputs
    if options.target == "onnxruntime":
        _apply(model_proto, notes, ONNXRUNTIME_REWRITES)
    if options.fp16:
        moved = passes.cast_float_parts_fp16(model_proto)
        notes.append(f"{moved} float op(s) run in fp16 between explicit Casts")
    return notes


def _narrow_convs_on_blocks(model_proto: onnx.ModelProto, movers: Any, notes: list[str]) -> int:
    """`narrow_convs_as_space_to_depth`, then the Q/DQ moves again (a quantized output's
    QuantizeLinear moves above the DepthToSpace); returns the number of moves."""
    blocked = narrow_convs_as_space_to_depth(model_proto)
    if not blocked:
        return 0
    notes.append(f"narrow large-kernel conv(s) computed on {BLOCK}x{BLOCK} pixel blocks "
                 f"(SpaceToDepth -> Conv -> DepthToSpace, exact): {', '.join(blocked)}")
    return passes.move_qdq_across_data_movement(model_proto, movers)


def _openvino_int8_warnings(path: Path) -> tuple[str, ...]:
    """Compile ``path`` with OpenVINO (when installed) and name the quantized convs that did not
    run in int8."""
    try:
        from gan_brevitas.export.openvino import precision_report
    except ImportError:
        return ()
    try:
        report = precision_report(path)
    except MissingDependencyError as err:
        return (f"int8 check skipped: {err}",)
    log.info("%s", report.format())
    return tuple(f"OpenVINO runs {name} in {precision}, not int8" for name, precision in report.not_int8)


def _onnxruntime_int8_warnings(path: Path) -> tuple[str, ...]:
    """Name the quantized convs ONNX Runtime still computes in float (a float-output conv that
    `conv_integer` could not rewrite, e.g. a ConvTranspose of the default float tail)."""
    from gan_brevitas.export.ort import int8_kernel_report

    return tuple(
        f"ONNX Runtime runs {name} in float, not int8: its output is not quantized (the default float tail "
        "keeps the last layers' output float for quality) and it has no ConvInteger form; quantize with "
        "QuantConfig(quantize_tail=True) for an all-int8 graph"
        for name in int8_kernel_report(path).float_fallback
    )


def export_model(
    model: nn.Module,
    path: str | os.PathLike,
    options: ExportOptions,
    *,
    example_input: Optional[Tensor] = None,
    inputs: Optional[InputSource] = None,
) -> ExportReport:
    """Export ``model`` to ``path`` for ``options.target``; see the module docstring.

    Raises ExportError (and writes nothing) for a model that is not quantized (or, for the
    float target, that is), was never calibrated, draws random noise, cannot be converted for
    the target, or whose graph breaks the target's rules.
    """
    path = check_output_path(path, what="export output")
    if not isinstance(model, nn.Module):
        raise ExportError(f"expected a torch.nn.Module, got {type(model).__name__}.")
    _check_noise_mode(model)
    was_training = model.training
    try:
        model.eval()
        x = example_input_for(model, example_input, inputs)
        work, conversions, config = prepare_for_target(model, options, inputs, x)
    finally:
        model.train(was_training)
    input_name = _input_name(model)
    output_names = _output_names(work, x)

    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.name}.") as tmp:
        raw = Path(tmp) / "raw.onnx"
        _trace_to_onnx(work, x, raw, options, input_name, output_names)
        model_proto = onnx.load(str(raw))
    conversions += finish_graph(model_proto, options)
    metadata = _metadata(model, config, options, conversions, input_name)
    return write_graph(model_proto, path, options, metadata, input_name=input_name, example=x,
                       output_names=output_names, conversions=conversions,
                       warnings_before=_saturation_warnings(model, options))


def _saturation_warnings(model: nn.Module, options: ExportOptions) -> tuple[str, ...]:
    """What saturates where this CPU's int8 kernels add products in 16-bit pairs
    (`gan_brevitas.cpu_features`): a warning when the first layer, which reads the full-range
    input, has 8-bit weights (the suite's translator: 35.9 dB as a PyTorch model, 21.1 dB as the
    file; the first layer at 7 bits: 35.6 / 35.7); a note when only later layers do (their
    codes rarely reach the ends together: SRGAN x4 then lost 1.5 dB of 47)."""
    if options.target not in ("onnxruntime", "openvino") or not int8_pairs_saturate():
        return ()
    layers = [(name, _weight_bits(layer)) for name, layer in quant_layers(model)]
    wide = [name for name, bits in layers if bits > SATURATION_FREE_WEIGHT_BITS]
    if not wide:
        return ()
    seven = SATURATION_FREE_WEIGHT_BITS
    fixes = (f"QuantConfig(weight_bits={seven}) makes the file exact on this CPU (method 'gptq' wins the bit "
             f"back); deploying on a CPU with VNNI or AMX does too")
    where = f"this processor ({int8_features()}, no VNNI) adds int8 products in 16-bit pairs, which saturate"
    if wide[0] == layers[0][0]:
        message = (f"{where} with 8-bit weights on the first layer ({wide[0]!r}, reading the full-range input): "
                   f"the file on {options.target} here will not compute what the model does (the suite's "
                   f"photo -> sketch translator: 35.9 dB as a PyTorch model, 21.1 dB deployed). Quantize with "
                   f"that layer at {seven} bits, QuantConfig(layers=(({wide[0]!r}, {{'weight_bits': {seven}}}),)) "
                   f"(35.6 / 35.7 dB), or: {fixes}.")
        log.warning("%s", message)
    else:
        message = (f"{where} rarely on later layers: {len(wide)} layer(s) with 8-bit weights may differ slightly "
                   f"from the model on {options.target} here; {fixes}.")
        log.info("%s", message)
    return (message,)


def write_graph(
    model_proto: onnx.ModelProto,
    path: Path,
    options: ExportOptions,
    metadata: dict[str, str],
    *,
    input_name: str,
    example: Tensor,
    output_names: tuple[str, ...],
    conversions: list[str],
    warnings_before: tuple[str, ...] = (),
) -> ExportReport:
    """The end every export shares (both backends): metadata, onnx.checker, TensorRT's rules
    (an error-level violation stops a "tensorrt" export; nothing is written), the atomic write
    and the report. ``example`` is the input the graph was traced with (one batch);
    ``warnings_before`` lead the report's warnings."""
    passes.set_metadata(model_proto, metadata)
    try:
        onnx.checker.check_model(model_proto, full_check=True)
    except Exception as err:
        raise ExportError(f"the exported graph fails onnx.checker: {err}") from err
    rule_warnings: tuple[str, ...] = ()
    if options.target == "tensorrt":
        report = check_tensorrt(model_proto)
        if report.errors:
            listed = "\n".join(format_violations(report.errors))
            raise ExportError(f"the graph breaks TensorRT's rules, nothing was written:\n{listed}")
        rule_warnings = tuple(str(v) for v in report.warnings)
        for warning in rule_warnings:
            log.info("%s", warning)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.name}.") as tmp:
        if path.suffix == ".xml":
            from gan_brevitas.export.openvino import save_ir

            staged = Path(tmp) / "final.onnx"
            onnx.save(model_proto, str(staged))
            save_ir(staged, path, passes.read_metadata(model_proto))
        else:
            atomic_write(path, lambda temporary: onnx.save(model_proto, temporary), what="export output")
        if options.target == "openvino":
            rule_warnings = _openvino_int8_warnings(path)
        elif options.target == "onnxruntime":
            rule_warnings = _onnxruntime_int8_warnings(path)
    return ExportReport(
        path=path,
        target=options.target,
        opset=options.resolved_opset,
        input_name=input_name,
        input_shape=tuple(example.shape),
        output_names=output_names,
        file_bytes=path.stat().st_size + (path.with_suffix(".bin").stat().st_size if path.suffix == ".xml" else 0),
        conversions=tuple(conversions),
        warnings=warnings_before + rule_warnings,
        metadata=passes.read_metadata(model_proto),
        time_share=_time_share(path, options, example) if options.profile else None,
    )


def _time_share(path: Path, options: ExportOptions, x: Tensor) -> Optional[str]:
    """The engine profiler's share of time outside int8 kernels on ``x`` (one batch)."""
    if options.target == "openvino":
        from gan_brevitas.export.openvino import profile_time_share

        return f"OpenVINO: {profile_time_share(path, x.numpy()).format()}"
    if options.target == "onnxruntime":
        from gan_brevitas.export.ort import profile_time_share as ort_time_share

        return f"ONNX Runtime: {ort_time_share(path, x.numpy()).format()}"
    return None
