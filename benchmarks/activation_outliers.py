"""How far the activations of the demo generators reach beyond their per-sample quantiles: the
question behind "quantile ranges beat min-max" (the paper's F1) not holding on them at W8A8.

    python benchmarks/activation_outliers.py     # writes benchmarks/results/activation_outliers.{json,md,png}
    python benchmarks/activation_outliers.py --samples 20 --out /tmp/ao      # a quick check

For every Conv / ConvTranspose / Linear output of the folded float generator, over 200 held-out
inputs: ``reach`` = the global max over all samples / the mean of the per-sample 0.999 quantiles
(what min-max spends of the grid over what the paper's quantile statistic keeps), and ``tail`` = the
mean per-sample max / the mean per-sample 0.999 quantile (how much a single sample's own tail
sticks out). A reach of 2 costs min-max one bit of an 8-bit grid, so clipping to the quantiles gains
little resolution; quantile ranges pay off where a few far outliers stretch the min-max range (not
measured here: the paper's full-size generators cannot be downloaded on our machines).
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gan_brevitas.demo import zoo
from gan_brevitas.harness import (
    Report,
    machine_description,
    markdown_table,
    write_report,
)
from gan_brevitas.quant.convert import fold_for_quantization

RESULTS = Path(__file__).resolve().parent / "results"
SAMPLES = 200
QUANTILE = 0.999


def layer_ratios(name: str, samples: int = SAMPLES) -> list[dict[str, Any]]:
    model = fold_for_quantization(zoo.load_demo_generator(name)).eval()
    maxima: dict[str, list[torch.Tensor]] = {}
    quantiles: dict[str, list[torch.Tensor]] = {}

    def record(layer_name: str, output: torch.Tensor) -> None:
        flat = output.detach().flatten(1)
        maxima.setdefault(layer_name, []).append(flat.amax(1))
        quantiles.setdefault(layer_name, []).append(torch.quantile(flat, QUANTILE, dim=1))

    for layer_name, layer in model.named_modules():
        if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            layer.register_forward_hook(lambda m, a, out, key=layer_name: record(key, out))
    inputs = zoo.demo_inputs(name, samples, seed=3)
    with torch.no_grad():
        for start in range(0, samples, 20):
            model(inputs[start : start + 20])
    rows = []
    for layer_name in maxima:
        peak, q = torch.cat(maxima[layer_name]), torch.cat(quantiles[layer_name])
        if float(q.mean()) <= 0:
            continue
        rows.append({"layer": layer_name, "reach": float(peak.max() / q.mean()), "tail": float(peak.mean() / q.mean())})
    return rows


def reach_figure(per_model: dict[str, list[dict[str, Any]]]):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3))
    ax.boxplot([[r["reach"] for r in rows] for rows in per_model.values()], tick_labels=list(per_model))
    ax.set_ylabel("global max / mean per-sample q0.999")
    ax.set_title("Activation reach per layer (demo generators)")
    fig.tight_layout()
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=SAMPLES, help="held-out inputs per model")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for activation_outliers.{json,md,png}")
    args = parser.parse_args()
    torch.set_num_threads(1)
    per_model = {name: layer_ratios(name, args.samples) for name in zoo.DEMO_MODELS}
    summary = {
        name: {"layers": len(rows), "median_reach": statistics.median(r["reach"] for r in rows),
               "max_reach": max(r["reach"] for r in rows), "median_tail": statistics.median(r["tail"] for r in rows)}
        for name, rows in per_model.items()
    }
    machine = machine_description()
    lines = ["# Activation reach of the demo generators", "",
             f"Command: `python benchmarks/activation_outliers.py`; {args.samples} held-out inputs; {machine}.", ""]
    lines += markdown_table(
        ["model", "layers", "median reach (global max / mean per-sample q0.999)", "max reach",
         "median tail (per-sample max / q0.999)"],
        [[n, s["layers"], f"{s['median_reach']:.2f}", f"{s['max_reach']:.2f}", f"{s['median_tail']:.2f}"]
         for n, s in summary.items()])
    data = {"machine": machine, "summary": summary, "layers": per_model}
    write_report(Report.at(args.out, "activation_outliers", data, lines, lambda: reach_figure(per_model)))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
