"""Which W8A8 post-training recipe should `recipes.quantize(gen, inputs=x)` run by default?

    python -m benchmarks.default_recipe [--suite] [--threads 2]
    # writes benchmarks/results/default_recipe.{json,md}; finished runs are cached in
    # benchmarks/.cache/default_recipe (an interrupted run resumes; a code change reruns all)

Every candidate is vanilla PTQ with a different `QuantConfig` (range estimators, granularity,
bias correction), run on the packaged demo generators (StyleGAN, SAGAN, CycleGAN) and, with
``--suite``, on the real-generator suite of `benchmarks/suite` (its cache must be prepared).
The figure is the PSNR of the quantized output against the folded float output on held-out
inputs (other latents / other photos than the calibration ones), in the model's output range,
and the wall time of `recipes.quantize`.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from gan_brevitas import recipes
from gan_brevitas.demo import zoo
from gan_brevitas.harness import (
    Report,
    ResultRow,
    Run,
    RunCache,
    machine_description,
    markdown_table,
    package_fingerprint,
    sweep,
    write_report,
)
from gan_brevitas.metrics.psnr import psnr
from gan_brevitas.qat.checkpoint import module_sha256, tensor_sha256
from gan_brevitas.quant.config import QuantConfig
from gan_brevitas.quant.convert import fold_for_quantization

RESULTS = Path(__file__).resolve().parent / "results"
CACHE = Path(__file__).resolve().parent / ".cache" / "default_recipe"
CACHE_FORMAT = "benchmarks/default_recipe/1"
DEMO_CALIB = 64
DEMO_TEST = 64


@dataclass
class Subject:
    name: str
    model: nn.Module
    calib: Tensor
    test: Tensor
    data_range: float

    def identity(self) -> dict[str, str]:
        """Content hashes of the generator and its inputs (a cache key's share)."""
        return {"generator": module_sha256(self.model),
                "inputs": tensor_sha256([("calib", self.calib), ("test", self.test)])}


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


def measure_run(run: Run[tuple[Subject, QuantConfig]], key: str) -> tuple[ResultRow, dict[str, Tensor]]:
    subject, config = run.spec
    result = measure(subject, config)
    print(f"{subject.name:24s} {run.label:45s} {result['psnr_db']:6.2f} dB {result['seconds']:6.1f} s", flush=True)
    row = ResultRow(subject.name, run.method, run.label, {"psnr_db": result["psnr_db"]}, len(subject.test),
                    result["seconds"], {"config": config.to_dict()})
    return row, {}


def markdown(rows: list[ResultRow], subjects: list[str], machine: str, load: float) -> list[str]:
    lines = ["# Default W8A8 recipe: vanilla PTQ variants, PSNR (dB) vs float on held-out inputs", "",
             f"`python -m benchmarks.default_recipe`; machine {machine}; load average {load:.2f} at the end.", ""]
    cells = []
    for label in CANDIDATES:
        chosen = [r for r in rows if r.label == label]
        values = [r.metrics["psnr_db"] for r in chosen]
        cells.append([label, *(f"{r.metrics['psnr_db']:.2f} ({r.seconds:.0f} s)" for r in chosen),
                      f"{sum(values) / len(values):.2f}"])
    return lines + markdown_table(["candidate", *subjects, "mean"], cells)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", action="store_true", help="also the real-generator suite")
    parser.add_argument("--no-demo", action="store_true", help="skip the demo generators")
    parser.add_argument("--models", nargs="*", help="only these subjects (e.g. 'demo sagan')")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="default_recipe", help="the results' file name stem")
    parser.add_argument("--results", type=Path, default=RESULTS, help="the results' folder")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    subjects = ([] if args.no_demo else demo_subjects()) + (suite_subjects() if args.suite else [])
    subjects = [s for s in subjects if not args.models or s.name in args.models]
    runs = [Run(s.name, "vanilla-ptq", label, config.to_dict(), spec=(s, config))
            for s in subjects for label, config in CANDIDATES.items()]
    identities = {s.name: s.identity() for s in subjects}
    context = {"package": package_fingerprint(), "threads": args.threads}
    outcomes = sweep(runs, measure_run, RunCache(CACHE, CACHE_FORMAT),
                     lambda run: {**context, "subject": identities[run.model]}, progress=False)
    rows = [o.row for o in outcomes]
    machine, load = machine_description(), os.getloadavg()[0]
    data = {"machine": machine, "load_1min": load, "rows": [r.flat() for r in rows]}
    write_report(Report.at(args.results, args.out, data, markdown(rows, [s.name for s in subjects], machine, load)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
