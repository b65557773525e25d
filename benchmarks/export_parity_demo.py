"""ONNX Runtime int8 export of the TRAINED demo generators: parity with the PyTorch fake-quant
model, in output-quantizer steps, and whether every quantized conv runs as an int8 kernel.

    python benchmarks/export_parity_demo.py        # writes benchmarks/results/export_parity_demo.{json,md,png}
    python benchmarks/export_parity_demo.py --models sagan --out /tmp/epd        # a quick check

The latency benchmark (export_ort_latency.py) uses random-init generators at reference widths,
where deep InstanceNorm stacks spread single rounding flips to about one output step; this
checks the same export path on the trained generators that ship with the package. Each is
quantized with vanilla PTQ (the paper's W8A8 per-tensor scheme, 64 calibration latents/images),
exported for ONNX Runtime, and run on 16 held-out inputs. ``floor`` is the model against itself
with its inputs moved by 1e-6 (`gan_brevitas.export.ort.ParityReport`).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from gan_brevitas import QuantConfig, recipes
from gan_brevitas.demo import zoo
from gan_brevitas.deploy.parity import parity
from gan_brevitas.export.ort import int8_kernel_report
from gan_brevitas.harness import (
    Report,
    ResultRow,
    machine_description,
    markdown_table,
    write_report,
)

RESULTS = Path(__file__).resolve().parent / "results"


def measure(name: str, work: Path, threads: int) -> ResultRow:
    start = time.perf_counter()
    generator = zoo.load_demo_generator(name)
    calibration = zoo.demo_inputs(name, 64, seed=5)
    config = QuantConfig.paper()
    qmodel = recipes.quantize(generator, "vanilla-ptq", config=config, inputs=calibration,
                              num_samples=64, progress=False)
    path = work / f"{name}_int8.onnx"
    recipes.export(qmodel, path, "onnxruntime", inputs=calibration)
    report = parity(qmodel, path, zoo.demo_inputs(name, 16, seed=6), n=16, threads=threads)
    kernels = int8_kernel_report(path)
    metrics = {
        "mae_steps": report.mae / report.output_step,
        "max_steps": report.max_abs / report.output_step,
        "floor_steps": report.floor_mae / report.output_step,
        "output_step": report.output_step,
        "within_one_step": report.within_step,
        "quantized_convs": len(kernels.quantized),
        "int8_kernels": len(kernels.int8),
    }
    return ResultRow(name, "vanilla-ptq", "paper W8A8 per-tensor, onnxruntime", metrics, 16,
                     time.perf_counter() - start, {"config": config.to_dict()})


def parity_figure(rows: list[ResultRow]):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3))
    ax.bar([i - 0.2 for i in range(len(rows))], [r.metrics["mae_steps"] for r in rows], width=0.4,
           label="ORT vs fake-quant")
    ax.bar([i + 0.2 for i in range(len(rows))], [r.metrics["floor_steps"] for r in rows], width=0.4, label="own floor")
    ax.axhline(1.0, color="gray", linestyle="--", linewidth=1)
    ax.set_xticks(range(len(rows)), [r.model for r in rows])
    ax.set_ylabel("MAE (output quantizer steps)")
    ax.set_title("int8 ONNX Runtime parity, trained demo generators")
    ax.legend()
    fig.tight_layout()
    return fig


def report(rows: list[ResultRow], threads: int, out: Path) -> Report:
    machine = f"{machine_description()}, {threads} ORT thread(s)"
    lines = ["# ONNX Runtime int8 export of the trained demo generators: parity", "",
             f"Machine: {machine}. Command: `python benchmarks/export_parity_demo.py`.", ""]
    lines += markdown_table(
        ["model", "MAE (output steps)", "max (steps)", "model's own floor (steps)", "within 1 step",
         "int8 kernels / quantized convs"],
        [[r.model, f"{m['mae_steps']:.3f}", f"{m['max_steps']:.2f}", f"{m['floor_steps']:.3f}",
          "yes" if m["within_one_step"] else "NO", f"{m['int8_kernels']} / {m['quantized_convs']}"]
         for r in rows for m in [r.metrics]])
    data = {"machine": machine, "rows": [r.flat() for r in rows]}
    return Report.at(out, "export_parity_demo", data, lines, lambda: parity_figure(rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--models", nargs="*", default=list(zoo.DEMO_MODELS))
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for export_parity_demo.{json,md,png}")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as work:
        rows = [measure(name, Path(work), args.threads) for name in args.models]
    write_report(report(rows, args.threads, args.out))
    print((args.out / "export_parity_demo.md").read_text())


if __name__ == "__main__":
    main()
