"""ONNX Runtime int8 export of the TRAINED demo generators: parity with the PyTorch fake-quant
model, in output-quantizer steps, and whether every quantized conv runs as an int8 kernel.

    python benchmarks/export_parity_demo.py        # writes benchmarks/results/export_parity_demo.{json,md,png}

The latency benchmark (export_ort_latency.py) uses random-init generators at reference widths,
where deep InstanceNorm stacks spread single rounding flips to about one output step; this
checks the same export path on the trained generators that ship with the package. Each is
quantized with vanilla PTQ (the paper's W8A8 per-tensor scheme, 64 calibration latents/images),
exported for ONNX Runtime, and run on 16 held-out inputs. ``floor`` is the model against itself
with its inputs moved by 1e-6 (`gan_brevitas.export.ort.ParityReport`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from pathlib import Path
from typing import Any

import torch

from gan_brevitas import QuantConfig, recipes
from gan_brevitas.atomic_files import atomic_write
from gan_brevitas.demo import zoo
from gan_brevitas.deploy.parity import parity
from gan_brevitas.export.ort import int8_kernel_report

RESULTS = Path(__file__).resolve().parent / "results"


def measure(name: str, work: Path, threads: int) -> dict[str, Any]:
    generator = zoo.load_demo_generator(name)
    calibration = zoo.demo_inputs(name, 64, seed=5)
    qmodel = recipes.quantize(generator, "vanilla-ptq", config=QuantConfig.paper(), inputs=calibration,
                              num_samples=64, progress=False)
    path = work / f"{name}_int8.onnx"
    recipes.export(qmodel, path, "onnxruntime", inputs=calibration)
    report = parity(qmodel, path, zoo.demo_inputs(name, 16, seed=6), n=16, threads=threads)
    kernels = int8_kernel_report(path)
    return {
        "model": name,
        "mae_steps": report.mae / report.output_step,
        "max_steps": report.max_abs / report.output_step,
        "floor_steps": report.floor_mae / report.output_step,
        "output_step": report.output_step,
        "within_one_step": report.within_step,
        "quantized_convs": len(kernels.quantized),
        "int8_kernels": len(kernels.int8),
    }


def write(rows: list[dict[str, Any]], threads: int) -> None:
    RESULTS.mkdir(exist_ok=True)
    machine = f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, {threads} ORT thread(s)"
    payload = {"machine": machine, "rows": rows}
    lines = ["# ONNX Runtime int8 export of the trained demo generators: parity", "",
             f"Machine: {machine}. Command: `python benchmarks/export_parity_demo.py`.", "",
             "| model | MAE (output steps) | max (steps) | model's own floor (steps) | within 1 step | int8 kernels / quantized convs |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['mae_steps']:.3f} | {r['max_steps']:.2f} | {r['floor_steps']:.3f} | "
              f"{'yes' if r['within_one_step'] else 'NO'} | {r['int8_kernels']} / {r['quantized_convs']} |" for r in rows]
    for suffix, text in (("json", json.dumps(payload, indent=2)), ("md", "\n".join(lines) + "\n")):
        atomic_write(RESULTS / f"export_parity_demo.{suffix}", lambda temporary, text=text: Path(temporary).write_text(text))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3))
    names = [r["model"] for r in rows]
    ax.bar([i - 0.2 for i in range(len(rows))], [r["mae_steps"] for r in rows], width=0.4, label="ORT vs fake-quant")
    ax.bar([i + 0.2 for i in range(len(rows))], [r["floor_steps"] for r in rows], width=0.4, label="own floor")
    ax.axhline(1.0, color="gray", linestyle="--", linewidth=1)
    ax.set_xticks(range(len(rows)), names)
    ax.set_ylabel("MAE (output quantizer steps)")
    ax.set_title("int8 ONNX Runtime parity, trained demo generators")
    ax.legend()
    fig.tight_layout()
    atomic_write(RESULTS / "export_parity_demo.png", lambda temporary: fig.savefig(temporary, dpi=120, format="png"))
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as work:
        rows = [measure(name, Path(work), args.threads) for name in zoo.DEMO_MODELS]
    write(rows, args.threads)
    print((RESULTS / "export_parity_demo.md").read_text())


if __name__ == "__main__":
    main()
