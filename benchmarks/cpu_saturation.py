"""What a deployed int8 file computes on this CPU, beside what the quantized model computes.

    python -m benchmarks.cpu_saturation        # writes benchmarks/results/cpu_saturation_<flags>.{json,md,png}

On x86 processors without VNNI or AMX, ONNX Runtime and OpenVINO add uint8 x int8 products in
16-bit pairs that saturate with 8-bit weights (`gan_brevitas.cpu_features`). Per suite generator
(`benchmarks.suite`; its checkpoints must be in the cache), in one run: PSNR vs the float model
on the held-out test inputs of our default PTQ with 8-bit weights, with 7-bit weights, with
7-bit weights on the first layer only (the one reading the full-range input), and of GPTQ
with 7-bit weights, each as the PyTorch fake-quant model, as the `target="onnxruntime"` file on ONNX Runtime and as the
`target="openvino"` file on OpenVINO; and the anchors a CPU user would pick, deployed the same
way: ONNX Runtime's ``quantize_static`` (QDQ, per channel, its defaults: ``reduce_range=False``)
and NNCF's default PTQ on OpenVINO (its default overflow fix: 7-bit weights on the first
layer). The result file is named after the CPU's int8 instruction sets: the figures differ
between processors.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from benchmarks.quality_suite import export_fp32_onnx, nncf_ptq, ort_static
from benchmarks.suite import SOURCES, SuiteEntry, load_suite
from gan_brevitas import QuantConfig, recipes
from gan_brevitas.cpu_features import int8_features, int8_pairs_saturate
from gan_brevitas.deploy.runner import open_runner
from gan_brevitas.harness import Report, machine_description, markdown_table, write_report
from gan_brevitas.metrics.psnr import psnr
from gan_brevitas.quant.convert import quant_layers

RESULTS = Path(__file__).resolve().parent / "results"
THREADS = 2
OURS = ("torch", "onnxruntime", "openvino")
#: Our variants: vanilla PTQ on the default scheme at 8-bit weights, at 7, with 7 on the first layer only, GPTQ at 7.
VARIANTS = ("w8", "w7", "w7-first", "w7-gptq")
ANCHORS = ("ort-static", "nncf")


def _run_file(path: Path, engine: str, inputs: Tensor) -> Tensor:
    runner = open_runner(path, engine, threads=THREADS)
    return torch.cat([torch.as_tensor(np.asarray(runner(inputs[i : i + 1]))) for i in range(inputs.shape[0])])


def _first_layer(entry: SuiteEntry) -> str:
    probe = recipes.quantize(entry.model, "vanilla-ptq", inputs=entry.calib[:2], num_samples=2, progress=False)
    return next(iter(quant_layers(probe)))[0]


def _variants(entry: SuiteEntry) -> dict[str, tuple[str, QuantConfig]]:
    """variant -> (method, config): `VARIANTS` for this generator."""
    first = ((_first_layer(entry), {"weight_bits": 7}),)
    return {"w8": ("vanilla-ptq", QuantConfig()), "w7": ("vanilla-ptq", QuantConfig(weight_bits=7)),
            "w7-first": ("vanilla-ptq", QuantConfig(layers=first)), "w7-gptq": ("gptq", QuantConfig(weight_bits=7))}


def _ours(entry: SuiteEntry, variant: str, method: str, config: QuantConfig, work: Path) -> dict[str, Tensor]:
    """Our quantized model: the fake-quant model's test outputs and each exported file's."""
    qmodel = recipes.quantize(entry.model, method, inputs=entry.calib, config=config,
                              num_samples=entry.calib.shape[0], progress=False)
    with torch.no_grad():
        outputs = {"torch": qmodel(entry.test)}
    ort_file = recipes.export(qmodel, work / f"{entry.name}.{variant}.onnx", "onnxruntime",
                              example_input=entry.calib[:1]).path
    ov_file = recipes.export(qmodel, work / f"{entry.name}.{variant}.ov.onnx", "openvino",
                             example_input=entry.calib[:1], inputs=entry.calib).path
    outputs["onnxruntime"] = _run_file(ort_file, "onnxruntime", entry.test)
    outputs["openvino"] = _run_file(ov_file, "openvino", entry.test)
    return outputs


def measure(entry: SuiteEntry) -> dict:
    start = time.perf_counter()
    data_range = entry.output_range[1] - entry.output_range[0]
    with torch.no_grad():
        reference = entry.model(entry.test)
    row: dict = {"model": entry.name, "n_test": int(entry.test.shape[0])}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for variant, (method, config) in _variants(entry).items():
            for where, output in _ours(entry, variant, method, config, work).items():
                row[f"ours-{variant}-{where}"] = psnr(output, reference, data_range=data_range)
        fp32 = work / f"{entry.name}.fp32.onnx"
        export_fp32_onnx(entry.model, entry.calib, fp32)
        row["ort-static"] = psnr(ort_static(entry, fp32, work, THREADS).output, reference, data_range=data_range)
        row["nncf"] = psnr(nncf_ptq(entry, fp32, THREADS).output, reference, data_range=data_range)
    row["seconds"] = time.perf_counter() - start
    return row


def figure(rows: list[dict]):
    import matplotlib.pyplot as plt

    keys = [f"ours-{v}-{w}" for v in VARIANTS for w in OURS] + list(ANCHORS)
    fig, ax = plt.subplots(figsize=(11, 4))
    width = 0.8 / len(keys)
    for i, key in enumerate(keys):
        ax.bar([j + i * width for j in range(len(rows))], [r[key] for r in rows], width, label=key)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(rows))], [r["model"] for r in rows])
    ax.set_ylabel("PSNR vs float (dB)")
    ax.set_title(f"Deployed int8 on this CPU (int8: {int8_features()})")
    ax.legend(fontsize=6, ncol=3)
    fig.tight_layout()
    return fig


def report(rows: list[dict], out: Path, name: str) -> Report:
    machine = machine_description()
    lines = [f"# Deployed int8 vs the quantized model on this CPU (int8: {int8_features()})", "",
             f"Command: `python -m benchmarks.cpu_saturation`. Machine: {machine}; {THREADS} engine threads. "
             f"This CPU's int8 pairs saturate: {int8_pairs_saturate()}.",
             "PSNR (dB) vs the float model on the suite's held-out test inputs (n per row); one run. "
             "ours, as the PyTorch fake-quant model and as the exported file on each engine: w8 vanilla PTQ on "
             "the default scheme (`recipes.quantize(gen, \"vanilla-ptq\", inputs=calib)`), w7 the same with `QuantConfig(weight_bits=7)`, w7-first "
             "with 7-bit weights on the first layer only, w7-gptq `recipes.quantize(gen, \"gptq\", inputs=calib, "
             "config=QuantConfig(weight_bits=7))`. Anchors: ONNX Runtime "
             "`quantize_static` (QDQ, per channel, defaults) on ONNX Runtime, NNCF default PTQ on OpenVINO.", ""]
    header = ["model", "n"] + [f"{v} {w}" for v in VARIANTS for w in OURS] + ["ORT quantize_static", "NNCF on OpenVINO"]
    lines += markdown_table(header, [[r["model"], r["n_test"]] + [f"{r[f'ours-{v}-{w}']:.2f}" for v in VARIANTS for w in OURS]
                                     + [f"{r[k]:.2f}" for k in ANCHORS] for r in rows])
    data = {"machine": machine, "int8_features": int8_features(), "int8_pairs_saturate": int8_pairs_saturate(),
            "rows": rows}
    return Report.at(out, name, data, lines, lambda: figure(rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=list(SOURCES), help="suite generators (default: all)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    rows = []
    for entry in load_suite(args.models):
        rows.append(measure(entry))
        print(rows[-1], flush=True)
    name = "cpu_saturation_" + int8_features().replace(", ", "_")
    written = write_report(report(rows, args.out, name))
    print("\n".join(str(p) for p in written))


if __name__ == "__main__":
    main()
