"""Pictures of the experiments: labelled sample grids and the Figure 1 quantile plot."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import numpy as np
import torch
from PIL import Image, ImageDraw

from gan_brevitas.atomic_files import atomic_write

if TYPE_CHECKING:
    from matplotlib.figure import Figure

LABEL_WIDTH = 230
CELL = 64


def _to_pil_row(images: torch.Tensor) -> Image.Image:
    images = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()
    tiles = [Image.fromarray(img.permute(1, 2, 0).numpy()).resize((CELL, CELL), Image.NEAREST) for img in images]
    row = Image.new("RGB", (CELL * len(tiles), CELL))
    for i, tile in enumerate(tiles):
        row.paste(tile, (i * CELL, 0))
    return row


def save_grid(path: Path, rows: list[tuple[str, torch.Tensor]], title: str, inputs: Optional[torch.Tensor] = None) -> None:
    """One labelled row per method, same inputs in every column; written atomically.

    The label column and the canvas grow to fit the longest label and the title, so labels
    carrying the method, bits and metrics are never cut.
    """
    if inputs is not None:
        rows = [("input", inputs)] + rows
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    label_width = max(LABEL_WIDTH, 12 + max(int(measure.textlength(label)) for label, _ in rows))
    width = max(label_width + CELL * max(r[1].shape[0] for r in rows), 12 + int(measure.textlength(title)))
    canvas = Image.new("RGB", (width, 24 + CELL * len(rows)), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((4, 4), title, fill="black")
    for i, (label, images) in enumerate(rows):
        y = 24 + i * CELL
        draw.text((4, y + CELL // 2 - 6), label, fill="black")
        canvas.paste(_to_pil_row(images), (label_width, y))
    atomic_write(path, lambda temporary: canvas.save(temporary, format="PNG"))


def quantile_figure(sweeps: dict[str, list[dict]]) -> Figure:
    """The paper's Figure 1: qFID against the upper activation quantile, one line per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, sweep in sweeps.items():
        xs = [1.0 - point["high_quantile"] for point in sweep]
        ax.plot(np.array(xs) + 1e-5, [point["qfid"] for point in sweep], marker="o", label=name)
    ax.set_xscale("log")
    ax.set_xlabel("1 - upper activation quantile (lower = 1 - upper)")
    ax.set_ylabel("qFID (lower is better)")
    ax.set_title("Vanilla PTQ W8A8 per tensor: qFID vs activation quantile")
    ax.legend()
    fig.tight_layout()
    return fig
