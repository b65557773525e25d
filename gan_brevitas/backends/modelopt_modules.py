"""What ModelOpt is taught and how it calibrates: SAGAN's attention and StyleGAN's Blur as
ModelOpt quantized modules, the calibration loop over gan_brevitas inputs, max and percentile
calibration, and the quantizers of layers that never ran (disabled: they stay float).

Imports ModelOpt (`gan_brevitas.backends.modelopt` is the backend that uses it).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gan_brevitas.backends.base import MODELOPT_INSTALL
from gan_brevitas.backends.modelopt_presets import ATTENTION_KEY, BLUR_KEY, BMM_QUANTIZERS, skipped_modules
from gan_brevitas.errors import MissingDependencyError
from gan_brevitas.inputs import InputSource, iter_batches
from gan_brevitas.models.float_parts import FLOAT_REASONS
from gan_brevitas.models.sagan import SelfAttention
from gan_brevitas.models.stylegan import Blur

try:
    import modelopt.torch.quantization as mtq
    from modelopt.torch.quantization.nn import QuantModule, QuantModuleRegistry, TensorQuantizer
    from modelopt.torch.quantization.tensor_quant import QUANT_DESC_8BIT_PER_TENSOR
except ImportError as _err:  # ModelOpt, or one of the packages it imports without declaring
    raise MissingDependencyError(
        f"the ModelOpt backend needs nvidia-modelopt (import failed: {_err}); install it with "
        f"{MODELOPT_INSTALL} (it also brings requests and huggingface_hub, which ModelOpt "
        "imports but does not declare)."
    ) from _err

log = logging.getLogger(__name__)


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
    nor this backend can quantize, that are not a known float part and not in ``skip``."""
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


def quantizers_of(module: nn.Module) -> dict[str, TensorQuantizer]:
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
        for attr, quantizer in quantizers_of(model.get_submodule(name)).items():
            if not quantizer.is_enabled:
                continue
            if attr.endswith("weight_quantizer"):
                quantizer.load_calib_amax()
            else:
                quantizer.load_calib_amax("percentile", percentile=percentile)
    return called


def disable_unused(model: nn.Module, called: set[str]) -> list[str]:
    """Disable the quantizers of modules that never ran during calibration; their names.

    Why: they have no range (StyleGAN holds blocks for every resolution and runs those up to
    its output size). Left enabled, ModelOpt would quantize them with a per-batch dynamic
    range if they ever ran; disabled, they run float and the report says so.
    """
    unused = []
    for name, module in model.named_modules():
        if not isinstance(module, QuantModule) or name in called:
            continue
        enabled = [q for q in quantizers_of(module).values() if q.is_enabled]
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


def amax_of(quantizer: TensorQuantizer) -> Optional[Tensor]:
    """The quantizer's calibrated range as float (None before calibration)."""
    amax = quantizer.amax
    return None if amax is None else amax.detach().float()
