"""Which W8A8 post-training recipe should `recipes.quantize(gen, inputs=x)` run by default?

    python benchmarks/default_recipe.py [--suite] [--threads 2]
    # writes benchmarks/results/default_recipe.{json,md}

Every candidate is vanilla PTQ with a different `QuantConfig` (range estimators, granularity,
bias correction), run on the packaged demo generators (StyleGAN, SAGAN, CycleGAN) and, with
``--suite``, on the real-generator suite of `benchmarks/suite` (its cache must be prepared).
The figure is the PSNR of the quantized output against the folded float output on held-out
inputs (other latents / other photos than the calibration ones), in the model's output range,
and the wall time of `recipes.quantize`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from gan_brevitas import recipes
from gan_brevitas.atomic_files import atomic_write
from gan_brevitas.demo import zoo
from gan_brevitas.metrics.psnr import psnr
from gan_brevitas.quant.config import QuantConfig
from gan_brevitas.quant.convert import fold_for_quantization

RESULTS = Path(__file__).resolve().parent / "results"
DEMO_CALIB = 64
DEMO_TEST = 64


@dataclass
class Subject:
    name: str
    model: nn.Module
    calib: Tensor
    test: Tensor
    data_range: float


def _pc(**changes: Any) -> QuantConfig:
    return QuantConfig.paper(per_channel=True, **changes)


#: label -> config (all W8A8 vanilla PTQ)
CANDIDATES: dict[str, QuantConfig] = {
    "paper (per-tensor, quantile w+a)": QuantConfig.paper(),
    "per-tensor minmax w+a": QuantConfig.paper(weight_range="minmax", act_range="minmax"),
    "per-channel minmax w+a": _pc(weight_range="minmax", act_range="minmax"),
    "per-channel mse w, minmax a": _pc(weight_range="mse", act_range="minmax"),
    "per-channel mse w+a": _pc(weight_range="mse", act_range="mse"),
    "per-channel minmax w, mse a, bias corr.": _pc(weight_range="minmax", act_range="mse", bias_correction=True),
    "per-channel mse w, minmax a, bias corr.": _pc(weight_range="mse", act_range="minmax", bias_correction=True),
    "per-channel mse w+a, bias corr.": _pc(weight_range="mse", act_range="mse", bias_correction=True),
}


def demo_subjects() -> list[Subject]:
    subjects = []
    for name in ("stylegan", "sagan", "cyclegan"):
        model = zoo.load_demo_generator(name)
        subjects.append(Subject(f"demo {name}", model, zoo.demo_inputs(name, DEMO_CALIB, seed=1),
                                zoo.demo_inputs(name, DEMO_TEST, seed=2), 2.0))
    return subjects


def suite_subjects() -> list[Subject]:
    from benchmarks.suite import load_suite

    return [Subject(f"suite {e.name}", e.model, e.calib, e.test, e.output_range[1] - e.output_range[0])
            for e in load_suite()]


def _image(output: Any) -> Tensor:
    return output[0] if isinstance(output, tuple) else output  # SAGAN returns (image, attention)


def measure(subject: Subject, config: QuantConfig) -> dict[str, Any]:
    float_model = fold_for_quantization(subject.model)
    with torch.no_grad():
        reference = _image(float_model(subject.test))
    start = time.perf_counter()
    qmodel = recipes.quantize(subject.model, "vanilla-ptq", config=config, inputs=subject.calib,
                              num_samples=len(subject.calib), progress=False)
    seconds = time.perf_counter() - start
    with torch.no_grad():
        out = _image(qmodel(subject.test))
    return {"psnr_db": psnr(out, reference, data_range=subject.data_range), "seconds": seconds}


def _machine() -> dict[str, Any]:
    flags = subprocess.run("grep -o 'avx512_vnni\\|avx2\\|amx' /proc/cpuinfo | sort -u", shell=True,
                           capture_output=True, text=True).stdout.split()
    return {"cpu": platform.processor() or platform.machine(), "flags": flags,
            "threads": torch.get_num_threads(), "load_1min": os.getloadavg()[0]}


def markdown(rows: list[dict[str, Any]], subjects: list[str], machine: dict[str, Any]) -> str:
    lines = ["# Default W8A8 recipe: vanilla PTQ variants, PSNR (dB) vs float on held-out inputs", "",
             f"`python benchmarks/default_recipe.py`; machine {machine}.", "",
             "| candidate | " + " | ".join(subjects) + " | mean |", "|---" * (len(subjects) + 2) + "|"]
    for label in CANDIDATES:
        values = [r["psnr_db"] for r in rows if r["candidate"] == label]
        cells = [f"{r['psnr_db']:.2f} ({r['seconds']:.0f} s)" for r in rows if r["candidate"] == label]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {sum(values) / len(values):.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", action="store_true", help="also the real-generator suite")
    parser.add_argument("--no-demo", action="store_true", help="skip the demo generators")
    parser.add_argument("--models", nargs="*", help="only these subjects (e.g. 'demo sagan')")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="default_recipe")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    subjects = ([] if args.no_demo else demo_subjects()) + (suite_subjects() if args.suite else [])
    subjects = [s for s in subjects if not args.models or s.name in args.models]
    rows = []
    for subject in subjects:
        for label, config in CANDIDATES.items():
            row = {"model": subject.name, "candidate": label, "config": config.to_dict(), **measure(subject, config)}
            print(f"{subject.name:24s} {label:45s} {row['psnr_db']:6.2f} dB {row['seconds']:6.1f} s", flush=True)
            rows.append(row)
    machine = _machine()
    RESULTS.mkdir(exist_ok=True)
    text = json.dumps({"machine": machine, "rows": rows}, indent=1)
    table = markdown(rows, [s.name for s in subjects], machine)
    atomic_write(RESULTS / f"{args.out}.json", lambda tmp: Path(tmp).write_text(text))
    atomic_write(RESULTS / f"{args.out}.md", lambda tmp: Path(tmp).write_text(table))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
