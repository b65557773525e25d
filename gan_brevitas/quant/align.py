"""Give an activation quantizer the grid of an earlier one when its input already lies on it.

Why: the same tensor is often quantized twice: a residual add's output again as the next
conv's input (through a reflection Pad), a LeakyReLU point's output again as the next conv's
input. Calibrated separately, the two grids differ slightly and the engine re-quantizes
between them (a DequantizeLinear -> QuantizeLinear pair, a float island). When every value
reaching quantizer P is a value of quantizer Q's grid (data movement, padding, ReLU and
nearest upsampling keep values on the grid), P takes Q's grid: P then changes nothing
(quantizing a grid value on its own grid returns it), so the model's output is unchanged,
and the export drops the repeated Q/DQ pair (`export.passes.remove_requantize`).
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, Iterator, Optional

import torch
from torch import Tensor, nn

from gan_brevitas.quant.convert import act_points, act_proxies
from gan_brevitas.quant.quantizers import act_grid

log = logging.getLogger(__name__)

#: How many of the most recently called quantizers a tensor is checked against.
WINDOW = 16
#: Largest distance from an integer (in steps) that still counts as a grid value.
ON_GRID_TOL = 1e-3


def _tensor_quant(proxy: nn.Module) -> nn.Module:
    return proxy.fused_activation_quant_proxy.tensor_quant


def _int_range(proxy: nn.Module, bits: int) -> tuple[int, int]:
    return (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if proxy.is_signed else (0, 2**bits - 1)


#: Values checked first: a tensor off the grid almost always shows it in its first values, and
#: the whole tensor (millions of values at SR resolutions) is then never scanned.
PROBE = 4096


def _off_grid(levels: Tensor) -> bool:
    return bool((levels - torch.round(levels)).abs().max() > ON_GRID_TOL)


def on_grid(x: Tensor, proxy: nn.Module) -> bool:
    """True when every value of ``x`` is a value of ``proxy``'s grid (and ``x`` is not constant)."""
    scale, zero_point, bits = act_grid(proxy)
    low, high = _int_range(proxy, bits)
    flat = x.detach().reshape(-1)
    if flat.numel() > PROBE and _off_grid(flat[:PROBE].float() / scale + zero_point):
        return False
    levels = x.detach().float() / scale + zero_point
    rounded = torch.round(levels)
    if (levels - rounded).abs().max() > ON_GRID_TOL:
        return False
    smallest, largest = rounded.min(), rounded.max()
    # a constant tensor sits on every grid: it says nothing
    return bool(smallest < largest and smallest >= low and largest <= high)


def _same_kind(a: nn.Module, b: nn.Module) -> bool:
    ta, tb = _tensor_quant(a), _tensor_quant(b)
    return (
        a.is_signed == b.is_signed
        and type(ta.zero_point_impl) is type(tb.zero_point_impl)
        and int(ta.msb_clamp_bit_width_impl()) == int(tb.msb_clamp_bit_width_impl())
    )


def copy_grid(source: nn.Module, target: nn.Module) -> None:
    """Make ``target``'s scale and zero point bit-identical to ``source``'s (same kind)."""
    src, dst = _tensor_quant(source), _tensor_quant(target)
    with torch.no_grad():
        dst.scaling_impl.value.copy_(src.scaling_impl.value)
        zero_point = getattr(dst.zero_point_impl, "value", None)
        if zero_point is not None:
            zero_point.copy_(src.zero_point_impl.value)


def _value(x: Any) -> Optional[Tensor]:
    x = getattr(x, "value", x)  # a Brevitas QuantTensor carries its float value
    return x if isinstance(x, Tensor) else None


@contextlib.contextmanager
def _aligning(model: nn.Module, aligned: list[tuple[str, str]]) -> Iterator[None]:
    names = {id(proxy): f"{name}.{side}" for name, side, proxy in act_proxies(model)}
    fixed = {id(point.act_quant) for _, point in act_points(model) if point.role.startswith("cat input")}
    recent: list[nn.Module] = []

    def before(proxy: nn.Module, args: tuple) -> None:
        x = _value(args[0]) if args else None
        if x is not None and proxy.is_quant_enabled and proxy not in recent and id(proxy) not in fixed:
            for earlier in reversed(recent[-WINDOW:]):
                if earlier.is_quant_enabled and _same_kind(earlier, proxy) and on_grid(x, earlier):
                    copy_grid(earlier, proxy)
                    aligned.append((names[id(proxy)], names[id(earlier)]))
                    break
        if proxy not in recent:
            recent.append(proxy)

    handles = [proxy.register_forward_pre_hook(before) for _, _, proxy in act_proxies(model)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def align_grids(model: nn.Module, x: Optional[Tensor]) -> list[tuple[str, str]]:
    """Unify each concatenation's grids (`unify_concat_grids`), then run ``x`` (one input
    batch) through the quantized ``model``: every activation quantizer whose input lies on the
    grid of a quantizer called before it takes that grid (in place). Returns (quantizer,
    source quantizer) pairs; only the concatenations when ``x`` is None."""
    aligned: list[tuple[str, str]] = []
    unify_concat_grids(model)
    if x is None:
        return aligned
    was_training = model.training
    model.eval()
    try:
        with _aligning(model, aligned), torch.no_grad():
            model(x)
    finally:
        model.train(was_training)
    if aligned:
        log.info("%d activation quantizer(s) share the grid of the quantizer before them", len(aligned))
    return aligned


def unify_concat_grids(model: nn.Module) -> list[str]:
    """Give the inputs of every quantized concatenation the grid of its output (in place).

    Why: a concatenation whose inputs and output share one grid is pure 8-bit data movement
    (no re-quantization at all), and OpenVINO's int8 concat is only right for inputs on one
    grid (NNCF unifies them too). The output's range covers its inputs, so this clips nothing
    that the output quantizer would keep. Returns the names of the concatenation outputs.
    """
    points = dict(act_points(model))
    unified = []
    for name, point in points.items():
        if point.role != "cat output":
            continue
        prefix = name[: -len("out")]
        inputs = [p for n, p in points.items() if n.startswith(prefix + "in") and p.role.startswith("cat input")]
        for source in inputs:
            if _same_kind(point.act_quant, source.act_quant):
                copy_grid(point.act_quant, source.act_quant)
        unified.append(name)
    return unified
