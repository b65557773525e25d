"""GPTQ and Qronos: weights rounded one input column at a time, each rounding error pushed
onto the columns not yet rounded (Brevitas's ``gptq_mode`` and ``gpfq_mode``).

Starts from vanilla PTQ (the config's ranges; the activation grids are calibrated first, so
each layer sees quantized inputs), with the weight step sizes stored as parameters
(``weight_scaling="learned"``): the grid must stay fixed while the weights move, and with
step sizes recomputed from the weights Brevitas would quantize each column on a grid of its
own (an exact copy: nothing would change). Layer by layer, in network order, the calibration
inputs are run to collect the layer's input second moments (its Hessian) and the layer's
weights are rounded against them. ``algorithm="qronos"`` also runs the float model and
corrects each layer towards the float model's output given the quantized layers before it.
Bias correction follows (`recipes.quantize`, as after vanilla PTQ).

Brevitas turns ConvTranspose layers away (its views of their ``[in, out, k, k]`` weights as
``[out, in*k*k]`` rows are copies, so the rounding it computed never reached the layer); here they
are rounded, their weights stored output-major for the duration so that those views write through
(`_output_major_weights`). A grouped ConvTranspose keeps nearest rounding, and so does
a layer whose calibration inputs give it fewer than `MIN_ROWS_PER_COLUMN` input rows per weight
column (a DCGAN's latent projection, 100 latent values per row): the Hessian estimate is too
noisy and the rounding fits those inputs only (5-bit weights, held-out latents vs nearest: 64
latents -1.1 dB, 128 -0.5 dB, 500 -0.1 dB; white latents leave nothing to gain there anyway). ``qmodel.gptq_report``
names both kinds, with the reason. Nothing is trained: on the suite's Real-ESRGAN compact
generator at 5-bit weights, 29.3 dB vs 27.5 nearest rounding, in 7 s on 2 cores.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
from brevitas.graph.gpfq import gpfq_mode
from brevitas.graph.gptq import gptq_mode
from brevitas.graph.qronos import Qronos
from torch import nn
from tqdm.auto import tqdm

from gan_brevitas.errors import ConfigError
from gan_brevitas.option_checks import check_positive_ints, check_flags
from gan_brevitas.inputs import InputSource, iter_batches
from gan_brevitas.limits import check_memory
from gan_brevitas.ptq.vanilla import vanilla_ptq
from gan_brevitas.quant.config import QuantConfig
from gan_brevitas.quant.convert import quant_layers

log = logging.getLogger(__name__)

Algorithm = Literal["gptq", "qronos"]
ALGORITHMS: tuple[str, ...] = ("gptq", "qronos")


@dataclass(frozen=True)
class GptqOptions:
    """Options of ``recipes.quantize(gen, "gptq", ...)`` (``"qronos"``: ``algorithm="qronos"``).

    Attributes:
        algorithm: "gptq" (Frantar et al. 2022) or "qronos" (Zhang et al. 2025: also corrects
            the error the quantized layers before it left in each layer's input).
        act_order: round the columns of the largest input energy first.
        num_samples: calibration inputs (activation ranges and the layers' Hessians). Every
            layer runs the model over all of them, so time grows with layers x inputs; on the
            suite's Real-ESRGAN compact at 5-bit weights + Qronos: 8 photos 33.64 dB, 64 crops of
            them 34.40 dB, 256 crops 34.53 dB (4x the time of 64).
        batch_size: calibration inputs per forward pass.
        progress: tqdm progress bars.
    """

    algorithm: Algorithm = "gptq"
    act_order: bool = True
    num_samples: int = 64
    batch_size: int = 8
    progress: bool = True

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise ConfigError(f"algorithm must be one of {ALGORITHMS}, got {self.algorithm!r}.")
        check_positive_ints(self, "num_samples", "batch_size")
        check_flags(self, "act_order", "progress")


@dataclass
class GptqReport:
    """What was rounded: the layers, those left at nearest rounding (name -> why), the time."""

    algorithm: str
    rounded: list[str]
    nearest: dict[str, str]
    samples: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _is_transposed(layer: nn.Module) -> bool:
    return isinstance(layer, nn.modules.conv._ConvTransposeNd)


@contextmanager
def _output_major_weights(layers: Iterable[nn.Module]) -> Iterator[None]:
    """Store each ConvTranspose weight ``[in, out, k...]`` output-major while it is rounded.

    Brevitas rounds the view ``weight.transpose(0, 1).flatten(1)`` in place; on the usual
    input-major storage that view is a copy and the rounding is lost. Same values, same shape:
    only the memory order changes, and is restored afterwards.
    """
    transposed = [layer for layer in layers if _is_transposed(layer)]
    for layer in transposed:
        layer.weight.data = layer.weight.data.transpose(0, 1).contiguous().transpose(0, 1)
    try:
        yield
    finally:
        for layer in transposed:
            layer.weight.data = layer.weight.data.contiguous()


def _mode(qmodel: nn.Module, options: GptqOptions, skipped: set[nn.Module]):
    """Brevitas's context manager for ``options.algorithm``, leaving out the ``skipped`` layers
    and taking in the ungrouped ConvTranspose layers Brevitas turns away."""
    base = gpfq_mode if options.algorithm == "qronos" else gptq_mode

    class Mode(base):
        def _is_module_supported(self, module: nn.Module) -> bool:
            if module in skipped:
                return False
            if _is_transposed(module):
                return module.groups == 1 and module.weight_quant.is_quant_enabled
            return super()._is_module_supported(module)

    if options.algorithm == "qronos":
        return Mode(qmodel, algorithm_impl=Qronos, act_order=options.act_order)
    return Mode(qmodel, act_order=options.act_order, create_weight_orig=False)


def _input_rows(qmodel: nn.Module, batches: list[torch.Tensor]) -> dict[str, int]:
    """Per quantized linear / conv layer, the input rows its Hessian would see: one per input
    vector of a linear layer, one per output position of a convolution."""
    rows: dict[str, int] = {}

    def count(name: str, layer: nn.Module, args: tuple, output: Any) -> None:
        if isinstance(layer, nn.Linear):  # the latent projection reshapes its output: count inputs
            found = getattr(args[0], "value", args[0]).numel() // layer.in_features
        else:
            value = getattr(output, "value", output)
            found = value.shape[0] * value[0, 0].numel()
        rows[name] = rows.get(name, 0) + found

    handles = [layer.register_forward_hook(lambda layer, args, out, name=name: count(name, layer, args, out))
               for name, layer in quant_layers(qmodel)]
    try:
        with torch.no_grad():
            for batch in batches:
                qmodel(batch)
    finally:
        for handle in handles:
            handle.remove()
    return rows


#: A layer is rounded only when its calibration inputs give it this many input rows per weight
#: column (a convolution gets one row per output position: thousands per image).
MIN_ROWS_PER_COLUMN = 4


def _columns(layer: nn.Module) -> int:
    """Weight columns GPTQ rounds one at a time: inputs x kernel taps of one output channel."""
    return layer.weight.numel() // (layer.weight.shape[1] if _is_transposed(layer) else layer.weight.shape[0])


def _check_hessian_memory(layers: dict[str, nn.Module], nearest: dict[str, str], algorithm: str) -> None:
    """Brevitas allocates every layer's Hessian (columns x columns, float32; Qronos a second
    matrix) before the first layer is rounded: refuse up front what would not fit."""
    sizes = [_columns(layer) for name, layer in layers.items() if name not in nearest]
    matrices = 2 if algorithm == "qronos" else 1
    check_memory(sum(c * c * 4 * matrices for c in sizes),
                 f"{algorithm}'s layer Hessians ({len(sizes)} layers, all allocated together; the largest "
                 f"{max(sizes, default=0)} x {max(sizes, default=0)}; method 'vanilla-ptq' needs none)")


#: Why a layer the calibration inputs never reach keeps nearest rounding.
NEVER_RAN = "never ran on the calibration inputs (e.g. a block above the output size): nothing to fit"


def _underdetermined(qmodel: nn.Module, batches: list[torch.Tensor]) -> dict[str, str]:
    """Layers with too few input rows for their weight columns, each with the reason."""
    rows = _input_rows(qmodel, batches)
    found = {}
    for name, layer in quant_layers(qmodel):
        columns = _columns(layer)
        if name not in rows:
            found[name] = NEVER_RAN
        elif rows[name] < MIN_ROWS_PER_COLUMN * columns:
            found[name] = (f"{rows[name]} calibration input rows for {columns} weight columns (fewer than "
                           f"{MIN_ROWS_PER_COLUMN} per column): too noisy to fit its rounding; give more "
                           "calibration inputs (num_samples)")
    return found


def _check_fixed_grid(qmodel: nn.Module) -> None:
    for name, layer in quant_layers(qmodel):
        if not any(True for _ in layer.weight_quant.parameters()):
            raise ConfigError(
                f"GPTQ needs the weight step sizes stored as parameters, but layer {name!r} "
                "recomputes them from its weights; leave the weight_scaling option out (the "
                "method sets weight_scaling='learned' itself)."
            )


def _log_nearest(algorithm: str, nearest: dict[str, str]) -> None:
    """One warning for the layers with too few input rows (naming the fix), one info line for
    those that never ran; ``gptq_report`` has each layer's reason."""
    never = [name for name, why in nearest.items() if why == NEVER_RAN]
    few = {name: why.split(" (")[0] for name, why in nearest.items() if why != NEVER_RAN}
    if few:
        listed = ", ".join(f"{name} ({why})" for name, why in few.items())
        log.warning("%s keeps nearest rounding on %d layer(s) with fewer than %d calibration input rows per weight "
                    "column: %s; give more calibration inputs (num_samples) to round them too.",
                    algorithm, len(few), MIN_ROWS_PER_COLUMN, listed)
    if never:
        log.info("%s keeps nearest rounding on %d layer(s) that never ran: %s.", algorithm, len(never), ", ".join(never))


def round_weights(qmodel: nn.Module, batches: list[torch.Tensor], options: GptqOptions) -> GptqReport:
    """Round ``qmodel``'s weights in place with ``options.algorithm`` on ``batches``."""
    _check_fixed_grid(qmodel)
    start = time.perf_counter()
    layers = dict(quant_layers(qmodel))
    nearest = _underdetermined(qmodel, batches)
    _log_nearest(options.algorithm, nearest)
    _check_hessian_memory(layers, nearest, options.algorithm)
    with torch.no_grad(), _output_major_weights(layers.values()):
        with _mode(qmodel, options, {layers[name] for name in nearest}) as mode:
            rounded = list(mode.gpxq_layers)
            for _ in tqdm(range(mode.num_layers), desc=options.algorithm, disable=not options.progress):
                for batch in batches:
                    mode.model(batch)
                mode.update()
    for name in rounded:  # Qronos keeps the float weights in a buffer: not part of the model
        layer = layers.get(name)
        if layer is not None and "weight_orig" in layer._buffers:
            del layer._buffers["weight_orig"]
    for name in layers:
        if name not in rounded and name not in nearest:
            grouped = " with groups > 1" if _is_transposed(layers[name]) else ""
            nearest[name] = f"{type(layers[name]).__name__}{grouped}: not rounded this way by Brevitas or here"
    return GptqReport(options.algorithm, rounded, nearest, sum(b.shape[0] for b in batches),
                      round(time.perf_counter() - start, 1))


def gptq(float_model: nn.Module, config: QuantConfig, inputs: InputSource, options: GptqOptions) -> nn.Module:
    """Vanilla PTQ with stored weight step sizes, then the weights rounded by ``options.algorithm``.

    ``qmodel.gptq_report`` says which layers were rounded and which kept nearest rounding.
    """
    if config.weight_scaling != "learned":
        raise ConfigError(
            "GPTQ rounds weights onto a fixed grid, so it needs weight_scaling='learned' (it sets "
            "it itself); leave the weight_scaling option out."
        )
    qmodel = vanilla_ptq(float_model, config, inputs, num_samples=options.num_samples, progress=options.progress)
    batches = list(iter_batches(inputs, options.num_samples, options.batch_size))
    qmodel.gptq_report = round_weights(qmodel, batches, options)
    return qmodel.eval()
