"""The `describe` report of a ModelOpt-quantized model: one row per layer ModelOpt quantized
and per part that stayed float, with the reason (same table as the Brevitas report)."""

from __future__ import annotations

from typing import Optional

from torch import nn

from gan_brevitas.backends.modelopt_modules import (
    QuantBlur,
    QuantModule,
    QuantSelfAttention,
    TensorQuantizer,
    amax_of,
    quantizers_of,
)
from gan_brevitas.backends.modelopt_presets import BMM_QUANTIZERS, RECORD_ATTR, ModelOptRecord
from gan_brevitas.models.float_parts import FLOAT_REASONS, float_parts
from gan_brevitas.models.sagan import SelfAttention
from gan_brevitas.models.stylegan import Blur
from gan_brevitas.quant.describe import LayerRow
from gan_brevitas.quant.points import ACTIVATIONS, ActPoint


def _original_class(module: nn.Module) -> type[nn.Module]:
    """The float class a ModelOpt module was converted from (QuantConv2d -> nn.Conv2d)."""
    return module.original_cls if isinstance(module, QuantModule) else type(module)


def _act_text(quantizer: TensorQuantizer) -> str:
    """``s8 sym s=0.0123`` (the Brevitas report's notation); "float" when disabled."""
    if not quantizer.is_enabled:
        return "float"
    amax = amax_of(quantizer)
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
    quantizers = quantizers_of(module)
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
    if issubclass(_original_class(module), ACTIVATIONS):
        return _float_row(name, f"{kind}: its ModelOpt quantizers are disabled: input and output stay float")
    return None


def _unquantized_activations(qmodel: nn.Module) -> list[LayerRow]:
    """Activations and joins ModelOpt left without quantizers: LeakyReLU / PReLU it did not
    convert, and each residual add / concatenation (found by the identity points the folded
    model carries there; ModelOpt quantizes none of them)."""
    rows, joins = [], {}
    for name, module in qmodel.named_modules():
        if type(module) in ACTIVATIONS:
            rows.append(_float_row(name, f"{type(module).__name__}: no ModelOpt quantizer: input and output stay float"))
        elif isinstance(module, ActPoint) and module.role.split()[0] in ("add", "cat"):
            joins.setdefault(name.rsplit("_", 1)[0], module.role.split()[0])
    for name, kind in joins.items():
        rows.append(_float_row(name, f"{kind}: no ModelOpt quantizer on its inputs or output: runs float"))
    return rows


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
    for row in _unquantized_activations(qmodel):
        rows.append(row)
        listed.add(row.name)
    for name, why in float_parts(qmodel):
        if name not in listed:
            rows.append(_float_row(name, why))
            listed.add(name)
    for name, module in qmodel.named_modules():
        owns_weight = any(p.dim() >= 2 for p in module.parameters(recurse=False))
        if owns_weight and name not in listed and not isinstance(module, QuantModule) \
                and not any(name.startswith(n + ".") for n in listed if n):
            rows.append(_float_row(name, f"{type(module).__name__}: no ModelOpt or backend quantized class: kept "
                                         "float (skip)"))
    return rows

