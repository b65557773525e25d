"""Per-layer sensitivity: how much the generator's output degrades when ONE layer's weights
are quantized at b bits and everything else stays float.

For every layer `quantize_model` would convert and every bit width, the layer's weight is
replaced by its Brevitas-quantized value (the config's weight quantizer for that layer at b
bits) in the folded float model, the inputs run, and the output is compared with the float
output: MSE and PSNR. The table feeds `mixed_precision` and `plot_sensitivity`.
"""

from __future__ import annotations

import contextlib
import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence

import torch
from torch import Tensor, nn

from gan_brevitas.errors import ConfigError
from gan_brevitas.inputs import InputSource, iter_batches
from gan_brevitas.quant.config import QuantConfig
from gan_brevitas.quant.convert import quant_layers, quantize_model
from gan_brevitas.quant.latent_projection import latent_projections_as_linear

#: Inputs the sensitivity is measured on, by default.
SENSITIVITY_SAMPLES = 8


@dataclass(frozen=True)
class SensitivityRow:
    """One layer at one weight bit width, alone quantized."""

    layer: str
    kind: str
    params: int
    bits: int
    mse: float
    psnr_db: float


@dataclass(frozen=True)
class SensitivityTable:
    """Rows per (layer, bits), layers in network order; ``data_range`` is the PSNR's range."""

    rows: tuple[SensitivityRow, ...]
    data_range: float

    def mse(self, layer: str, bits: int) -> float:
        for row in self.rows:
            if row.layer == layer and row.bits == bits:
                return row.mse
        raise KeyError(f"no sensitivity row for layer {layer!r} at {bits} bits")

    @property
    def layers(self) -> list[str]:
        return list(dict.fromkeys(row.layer for row in self.rows))

    def params(self) -> dict[str, int]:
        return {row.layer: row.params for row in self.rows}

    def to_markdown(self) -> str:
        bits = sorted({row.bits for row in self.rows})
        lines = ["| layer | type | weights | " + " | ".join(f"PSNR at {b} bits (dB)" for b in bits) + " |",
                 "|---|---|---|" + "---|" * len(bits)]
        for layer in self.layers:
            first = next(row for row in self.rows if row.layer == layer)
            cells = [f"{next(r.psnr_db for r in self.rows if r.layer == layer and r.bits == b):.2f}" for b in bits]
            lines.append(f"| {layer} | {first.kind} | {first.params} | " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"


def _psnr(mse: float, data_range: float) -> float:
    return 100.0 if mse <= 0 else 10 * math.log10(data_range**2 / mse)


@contextlib.contextmanager
def _weight_swapped(layer: nn.Module, weight: Tensor) -> Iterator[None]:
    original = layer.weight.detach().clone()
    with torch.no_grad():
        layer.weight.copy_(weight)
    try:
        yield
    finally:
        with torch.no_grad():
            layer.weight.copy_(original)


def _check_bits(bits: Sequence[int]) -> tuple[int, ...]:
    values = tuple(bits) if not isinstance(bits, int) else (bits,)
    if not values or any(isinstance(b, bool) or not isinstance(b, int) or not 2 <= b <= 8 for b in values):
        raise ConfigError(f"bits must be bit widths in 2..8, e.g. bits=(4, 8); got {bits!r}.")
    return tuple(sorted(set(values)))


def reference_outputs(float_model: nn.Module, inputs: InputSource, num_samples: int,
                      batch_size: Optional[int] = None) -> list[tuple[Tensor, Tensor]]:
    """(input batch, float output) pairs of ``num_samples`` inputs (in batches of ``batch_size``,
    default all at once), on the model's device."""
    device = next(float_model.parameters()).device
    float_model.eval()
    batches = [batch.to(device) for batch in iter_batches(inputs, num_samples, batch_size=batch_size or num_samples)]
    with torch.no_grad():
        return [(batch, float_model(batch)) for batch in batches]


def output_mse(model: nn.Module, pairs: Sequence[tuple[Tensor, Tensor]]) -> float:
    """Mean squared difference of ``model``'s outputs from the reference outputs in ``pairs``."""
    model.eval()
    with torch.no_grad():
        errors = [(model(batch) - reference).square().mean() for batch, reference in pairs]
    return float(torch.stack(errors).mean())


def layer_sensitivity(
    float_model: nn.Module,
    inputs: InputSource,
    config: QuantConfig,
    bits: Sequence[int] = (4, 8),
    num_samples: int = SENSITIVITY_SAMPLES,
    data_range: float = 2.0,
) -> SensitivityTable:
    """The sensitivity table of the folded float model ``float_model`` (left as it was)."""
    bits = _check_bits(bits)
    # Quantized weights are swapped into a float copy laid out like the quantized model.
    float_model = copy.deepcopy(float_model)
    latent_projections_as_linear(float_model)
    pairs = reference_outputs(float_model, inputs, num_samples)
    quantized = {b: dict(quant_layers(quantize_model(float_model, config.replace(weight_bits=b)))) for b in bits}
    rows = []
    for name in quantized[bits[0]]:
        layer = float_model.get_submodule(name)
        for b in bits:
            with torch.no_grad():
                weight = quantized[b][name].quant_weight().value.detach()
            with _weight_swapped(layer, weight):
                mse = output_mse(float_model, pairs)
            rows.append(SensitivityRow(name, type(layer).__name__, layer.weight.numel(), b, mse, _psnr(mse, data_range)))
    return SensitivityTable(tuple(rows), data_range)


def plot_sensitivity(table: SensitivityTable, path: str | Path) -> Path:
    """A bar chart of output PSNR per layer, one bar per bit width, written to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from gan_brevitas.atomic_files import atomic_write

    layers = table.layers
    bits = sorted({row.bits for row in table.rows})
    width = 0.8 / len(bits)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.35 * len(layers)), 4))
    for index, b in enumerate(bits):
        values = [_psnr(table.mse(layer, b), table.data_range) for layer in layers]
        ax.bar([i + index * width for i in range(len(layers))], values, width, label=f"{b}-bit weights")
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(layers))], layers, rotation=90, fontsize=7)
    ax.set_ylabel("output PSNR vs float (dB), this layer alone quantized")
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", dpi=120))
    plt.close(fig)
    return path
