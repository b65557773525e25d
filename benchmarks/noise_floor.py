"""How much FID and qFID move with the draw of samples alone, on the packaged demo generators.

    python benchmarks/noise_floor.py      # writes benchmarks/results/noise_floor.{json,md}

Per model, n = 1,000 images, the offline demo-CNN extractor: FID of the float model against real
images on the demo's draw (latents / input images seed 1, real images seed 2, as `gan-brevitas demo`)
and on another draw (seeds 3 and 4), and the qFID noise floor, the float model against itself on
the two input draws (`gan_brevitas.demo.run.noise_floor`). A qFID below the floor: the quantized
outputs are closer to the float ones than two samples of the float model are to each other.
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path
from typing import Any

import torch

from gan_brevitas.atomic_files import atomic_write
from gan_brevitas.demo import zoo
from gan_brevitas.demo.run import noise_floor
from gan_brevitas.metrics.evaluate import collect_inputs
from gan_brevitas.metrics.extractors import resolve_extractor
from gan_brevitas.metrics.fid import fid, generate
from gan_brevitas.quant.convert import fold_for_quantization

RESULTS = Path(__file__).resolve().parent / "results"
N = 1000


def measure(name: str, n: int = N) -> dict[str, Any]:
    extractor = resolve_extractor()
    model = fold_for_quantization(zoo.load_demo_generator(name))
    first = generate(model, collect_inputs(zoo.demo_inputs(name, n, seed=1), n), n, progress=False)
    second = generate(model, collect_inputs(zoo.demo_inputs(name, n, seed=3), n), n, progress=False)
    return {
        "model": name, "n": n, "extractor": extractor.label, "extractor_sha256": extractor.weights_sha256,
        "fid_inputs1_real2": fid(first, zoo.real_images(name, n, seed=2), extractor=extractor).value,
        "fid_inputs3_real4": fid(second, zoo.real_images(name, n, seed=4), extractor=extractor).value,
        "noise_floor_qfid_inputs3_vs_1": noise_floor(name, model, first, n, extractor),
    }


def write(rows: list[dict[str, Any]]) -> None:
    machine = f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}"
    lines = ["# Noise of FID / qFID at n = 1,000 (demo generators, offline demo CNN)", "",
             "Command: `python benchmarks/noise_floor.py`. Machine: " + machine + ".", "",
             "| model | n | FID vs real, draw 1 | FID vs real, draw 2 | qFID noise floor (float vs float, two draws) |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['n']} | {r['fid_inputs1_real2']:.2f} | {r['fid_inputs3_real4']:.2f} | "
              f"{r['noise_floor_qfid_inputs3_vs_1']:.3f} |" for r in rows]
    text = json.dumps({"machine": machine, "rows": rows}, indent=2, allow_nan=False) + "\n"
    RESULTS.mkdir(exist_ok=True)
    atomic_write(RESULTS / "noise_floor.json", lambda temporary: Path(temporary).write_text(text))
    atomic_write(RESULTS / "noise_floor.md", lambda temporary: Path(temporary).write_text("\n".join(lines) + "\n"))


def main() -> None:
    rows = [measure(name) for name in (sys.argv[1:] or zoo.DEMO_MODELS)]
    for row in rows:
        print(json.dumps(row))
    write(rows)


if __name__ == "__main__":
    main()
