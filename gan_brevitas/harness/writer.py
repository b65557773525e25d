"""The one writer of experiment results: strict JSON, a markdown page and its plots.

Every file goes through `gan_brevitas.atomic_files`; plots first, JSON next, the markdown page
(which refers to the others) last. Non-finite numbers are written as null: strict JSON readers
(and other tools) refuse NaN and Infinity.
"""

from __future__ import annotations

import json
import math
import os
import platform
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from gan_brevitas.cpu_features import int8_features, int8_pairs_saturate
from gan_brevitas.atomic_files import atomic_write, atomic_write_text

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass
class Report:
    """What one experiment writes.

    Attributes:
        json_path, data: the results as JSON data.
        markdown_path, markdown: the human-readable page (lines or one text).
        plots: path -> a function that draws the figure (matplotlib is imported only then).
    """

    json_path: Path
    data: Mapping[str, Any]
    markdown_path: Path
    markdown: str | Sequence[str]
    plots: Mapping[Path, Callable[[], Figure]] = field(default_factory=dict)

    @classmethod
    def at(cls, directory: Path, stem: str, data: Mapping[str, Any], markdown: str | Sequence[str],
           plot: Callable[[], Figure] | None = None) -> Report:
        """``<directory>/<stem>.json``, ``.md`` and (with ``plot``) ``.png``."""
        directory = Path(directory)
        plots = {} if plot is None else {directory / f"{stem}.png": plot}
        return cls(directory / f"{stem}.json", data, directory / f"{stem}.md", markdown, plots)


def strict_json(value: Any) -> Any:
    """``value`` with non-finite floats as None, tuples as lists and paths as text."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def save_figure(path: Path, figure: Figure, dpi: int = 120) -> Path:
    """Write a matplotlib figure atomically (format from the suffix) and close it."""
    import matplotlib.pyplot as plt

    try:
        return atomic_write(path, lambda temporary: figure.savefig(temporary, dpi=dpi, format=Path(path).suffix[1:]))
    finally:
        plt.close(figure)


def write_report(report: Report) -> list[Path]:
    """Write the plots, the JSON and the markdown page; returns their paths."""
    written = []
    if report.plots:
        import matplotlib

        matplotlib.use("Agg")
    for path, draw in report.plots.items():
        written.append(save_figure(path, draw()))
    text = json.dumps(strict_json(report.data), indent=2, allow_nan=False)
    written.append(atomic_write_text(report.json_path, text + "\n"))
    markdown = report.markdown if isinstance(report.markdown, str) else "\n".join(report.markdown)
    written.append(atomic_write_text(report.markdown_path, markdown.rstrip("\n") + "\n"))
    return written


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """A markdown table: the header, its rule, one line per row (cells as given, str()-ed)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]


def machine_description(device: str = "cpu") -> str:
    """The machine, in one line: processor and its int8 instruction sets, cores, torch threads
    and version (and the GPU)."""
    flags = int8_features()
    saturation = "; int8 pairs saturate" if int8_pairs_saturate() else ""
    text = (f"{platform.machine()} {platform.processor() or ''}".strip() + f" (int8: {flags}{saturation})"
            + f", {os.cpu_count()} CPU cores, {torch.get_num_threads()} torch threads, torch {torch.__version__}")
    if device.startswith("cuda") and torch.cuda.is_available():
        text += f", {torch.cuda.get_device_name(torch.device(device))}"
    return text
