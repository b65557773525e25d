"""How much FID and qFID move with the draw of samples alone, on the packaged demo generators.

    python benchmarks/noise_floor.py      # writes benchmarks/results/noise_floor.{json,md}
    python benchmarks/noise_floor.py sagan --n 32 --out /tmp/nf     # a quick check

Per model, n = 1,000 images, the offline demo-CNN extractor: FID of the float model against real
images on the demo's draw (latents / input images seed 1, real images seed 2, as `gan-brevitas demo`)
and on another draw (seeds 3 and 4), and the qFID noise floor, the float model against itself on
the two input draws (`gan_brevitas.demo.run.noise_floor`). A qFID below the floor: the quantized
outputs are closer to the float ones than two samples of the float model are to each other.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from gan_brevitas.demo import zoo
from gan_brevitas.demo.run import noise_floor
from gan_brevitas.harness import (
    Report,
    ResultRow,
    machine_description,
    markdown_table,
    write_report,
)
from gan_brevitas.metrics.evaluate import collect_inputs
from gan_brevitas.metrics.extractors import resolve_extractor
from gan_brevitas.metrics.fid import fid, generate
from gan_brevitas.quant.convert import fold_for_quantization

RESULTS = Path(__file__).resolve().parent / "results"
N = 1000


def measure(name: str, n: int = N) -> ResultRow:
    start = time.perf_counter()
    extractor = resolve_extractor()
    model = fold_for_quantization(zoo.load_demo_generator(name))
    first = generate(model, collect_inputs(zoo.demo_inputs(name, n, seed=1), n), n, progress=False)
    second = generate(model, collect_inputs(zoo.demo_inputs(name, n, seed=3), n), n, progress=False)
    metrics = {
        "fid_inputs1_real2": fid(first, zoo.real_images(name, n, seed=2), extractor=extractor).value,
        "fid_inputs3_real4": fid(second, zoo.real_images(name, n, seed=4), extractor=extractor).value,
        "noise_floor_qfid_inputs3_vs_1": noise_floor(name, model, first, n, extractor),
    }
    fields = {"extractor": extractor.label, "extractor_sha256": extractor.weights_sha256}
    return ResultRow(name, "full-precision", "float, two draws", metrics, n, time.perf_counter() - start, fields)


def report(rows: list[ResultRow], out: Path, n: int) -> Report:
    machine = machine_description()
    table = markdown_table(
        ["model", "n", "FID vs real, draw 1", "FID vs real, draw 2", "qFID noise floor (float vs float, two draws)"],
        [[r.model, r.n, f"{r.metrics['fid_inputs1_real2']:.2f}", f"{r.metrics['fid_inputs3_real4']:.2f}",
          f"{r.metrics['noise_floor_qfid_inputs3_vs_1']:.3f}"] for r in rows])
    lines = [f"# Noise of FID / qFID at n = {n:,} (demo generators, offline demo CNN)", "",
             "Command: `python benchmarks/noise_floor.py`. Machine: " + machine + ".", "", *table]
    return Report.at(out, "noise_floor", {"machine": machine, "rows": [r.flat() for r in rows]}, lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=list(zoo.DEMO_MODELS))
    parser.add_argument("--n", type=int, default=N, help="images per metric")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for noise_floor.{json,md}")
    args = parser.parse_args()
    rows = [measure(name, args.n) for name in args.models]
    for row in rows:
        print(json.dumps(row.flat()))
    write_report(report(rows, args.out, args.n))


if __name__ == "__main__":
    main()
