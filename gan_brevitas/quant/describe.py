"""`describe`: what a quantized model quantizes, how, and what stays float."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from gan_brevitas.models.float_parts import float_parts
from gan_brevitas.quant.convert import QUANT_LAYER_TABLE, act_points, quant_layers
from gan_brevitas.quant.points import FLOAT_NOTE, ActPoint
from gan_brevitas.quant.quantizers import act_grid, is_asymmetric
from gan_brevitas.quant.tail import TAIL_NOTE


@dataclass(frozen=True)
class LayerRow:
    """One line of the report: a quantized layer, or a part kept in float."""

    name: str
    kind: str
    weight_bits: str
    per_channel: str
    activations: str
    note: str = ""


def _act_text(proxy: nn.Module) -> str:
    scale, zero_point, bits = act_grid(proxy)
    scheme = f"u{bits} zp={zero_point}" if is_asymmetric(proxy) else f"s{bits} sym"
    return f"{scheme} s={scale:.3g}"


def _out_text(layer: nn.Module) -> str:
    return _act_text(layer.output_quant) if layer.output_quant.is_quant_enabled else f"float ({TAIL_NOTE})"


def _weight_granularity(layer: nn.Module) -> str:
    return "yes" if layer.quant_weight().scale.numel() > 1 else "no"


def _conv_like_float_layers(model: nn.Module, known: list[str]) -> list[tuple[str, str]]:
    """Layers with a trained weight that were not quantized (skipped, or of an unmapped type),
    other than the ``known`` float parts."""
    covered = [name for name, _ in quant_layers(model)] + known
    rows = []
    for name, module in model.named_modules():
        if any(name == c or name.startswith(c + ".") for c in covered):
            continue
        weight = getattr(module, "weight", None)
        if isinstance(weight, nn.Parameter) and weight.dim() >= 2:
            reason = (
                "kept float (config.skip)"
                if type(module) in QUANT_LAYER_TABLE
                else "no quantized mapping for this layer type: kept float"
            )
            rows.append((name, f"{type(module).__name__}: {reason}"))
    return rows


def _unquantized_points(model: nn.Module) -> list[tuple[str, str]]:
    """Activation points left float (config.skip) and modules whose joins got no points."""
    rows = []
    for name, module in model.named_modules():
        if isinstance(module, ActPoint):
            rows.append((name, f"{module.role}: kept float ({getattr(module, FLOAT_NOTE, 'config.skip')})"))
        elif hasattr(module, FLOAT_NOTE):
            rows.append((name, f"{type(module).__name__}: {getattr(module, FLOAT_NOTE)}"))
    return rows


def describe_rows(model: nn.Module) -> list[LayerRow]:
    """The rows of a model quantized by Brevitas (`gan_brevitas.quant.convert`)."""
    rows = [
        LayerRow(
            name=name,
            kind=type(layer).__name__,
            weight_bits=str(int(layer.quant_weight().bit_width)),
            per_channel=_weight_granularity(layer),
            activations=f"in {_act_text(layer.input_quant)} | out {_out_text(layer)}",
        )
        for name, layer in quant_layers(model)
    ]
    rows += [
        LayerRow(name=name, kind="QuantActPoint", weight_bits="-", per_channel="-",
                 activations=f"{point.role}: {_act_text(point.act_quant)}")
        for name, point in act_points(model)
    ]
    parts = float_parts(model) + _unquantized_points(model)
    for name, why in parts + _conv_like_float_layers(model, [name for name, _ in parts]):
        rows.append(LayerRow(name=name or "<model>", kind="float", weight_bits="-", per_channel="-",
                             activations="-", note=why))
    return rows


def describe(model: nn.Module) -> str:
    """A plain-text table: layer, type, weight bits, per-channel, activation scheme, notes."""
    return format_table(describe_rows(model))


def format_table(rows: list[LayerRow]) -> str:
    """The `describe` table of ``rows`` (shared by the Brevitas and the ModelOpt reports)."""
    header = ("layer", "type", "w bits", "per-ch", "activations (scheme, scale)", "float-kept part")
    lines = [header] + [(r.name, r.kind, r.weight_bits, r.per_channel, r.activations, r.note) for r in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    out = []
    for index, line in enumerate(lines):
        cells = [cell.ljust(width) for cell, width in zip(line, widths)] + [line[-1]]
        out.append("  ".join(cells).rstrip())
        if index == 0:
            out.append("  ".join("-" * w for w in widths) + "  " + "-" * len(header[-1]))
    return "\n".join(out)
