"""Pictures of the demo: labelled sample grids and the Figure 1 quantile plot."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from PIL import Image, ImageDraw

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
    """One labelled row per method, same inputs in every column; written atomically."""
    if inputs is not None:
        rows = [("input", inputs)] + rows
    width = LABEL_WIDTH + CELL * max(r[1].shape[0] for r in rows)
    canvas = Image.new("RGB", (width, 24 + CELL * len(rows)), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((4, 4), title, fill="black")
    for i, (label, images) in enumerate(rows):
        y = 24 + i * CELL
        draw.text((4, y + CELL // 2 - 6), label, fill="black")
        canvas.paste(_to_pil_row(images), (LABEL_WIDTH, y))
    tmp = path.with_name(path.name + ".tmp.png")
    canvas.save(tmp)
    os.replace(tmp, path)


def save_quantile_plot(path: Path, sweeps: dict[str, list[dict]]) -> None:
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
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)
