"""Build an int8 TensorRT engine from a ``tensorrt`` export, time it, and measure its quality.

    python -m gan_brevitas.trt.evaluate --onnx g_trt.onnx --quantized q.safetensors --n 1000 --out trt.json
    python -m gan_brevitas.trt.evaluate --onnx g_trt.onnx --model cyclegan --checkpoint latest_net_G.pth \\
        --images horses/ --n 500 --out trt.json

Writes JSON: engine latency (CUDA events, batch 1 and 8), qFID of the engine's images against
the full-precision generator's for the same inputs, PSNR, and FID against real images when a
folder is given. Needs a GPU with TensorRT and pycuda (see gan_brevitas/trt/engine.py).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

from gan_brevitas.atomic_files import atomic_write_text, check_output_path
from gan_brevitas.errors import GanBrevitasError

log = logging.getLogger("trt.evaluate")


def _inputs(model: Any, args: argparse.Namespace) -> torch.Tensor:
    from gan_brevitas.inputs import latent_sampler, load_image_folder

    if getattr(model, "input_kind", "latent") == "image":
        if not args.images:
            raise GanBrevitasError("this generator translates images: give input images with --images DIR.")
        return load_image_folder(args.images, model.image_size, limit=args.n)
    return latent_sampler(model.latent_dim, seed=args.seed)(args.n)


def _reference_model(args: argparse.Namespace) -> Any:
    """The full-precision generator: the given checkpoint, or the float twin of the quantized file."""
    from gan_brevitas import recipes
    from gan_brevitas.export.symmetric import float_twin

    if args.model and args.checkpoint:
        model = recipes.load_generator(args.model, args.checkpoint)
    elif args.quantized:
        log.warning("no --model/--checkpoint: qFID is measured against the quantized file's float weights")
        model = float_twin(recipes.load(args.quantized))
    else:
        raise GanBrevitasError("give the full-precision generator: --model NAME --checkpoint FILE, or --quantized FILE.")
    if getattr(model, "noise_mode", None) == "random":
        model.noise_mode = "const"  # the exported graph uses the constant noise maps
    return model.eval()


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    from gan_brevitas.metrics import fid, generate, psnr
    from gan_brevitas.trt.engine import BuildSpec, EngineRunner, build_engine, time_engine

    engine_path = Path(args.engine or Path(args.onnx).with_suffix(".engine"))
    build_engine(args.onnx, engine_path, BuildSpec(max_batch=max(args.batch), opt_batch=max(args.batch)))
    latency = time_engine(engine_path, args.onnx, args.batch, runs=args.runs)

    model = _reference_model(args)
    x = _inputs(model, args)
    runner = EngineRunner(engine_path)
    batch = max(args.batch)
    engine_images = torch.cat([torch.from_numpy(runner(x[i : i + batch].numpy())) for i in range(0, len(x), batch)])
    reference = generate(model, x, n=len(x), batch_size=batch, progress=False)
    result: dict[str, Any] = {
        "onnx": str(args.onnx),
        "engine": str(engine_path),
        "latency": [row.to_dict() for row in latency],
        "n": len(x),
        "qfid": fid(engine_images, reference, name="qfid").to_dict(),
        "psnr_db": psnr(engine_images, reference),
    }
    if args.real_images:
        from gan_brevitas.inputs import load_image_folder

        real = load_image_folder(args.real_images, engine_images.shape[-1], limit=args.n)
        result["fid"] = fid(engine_images, real).to_dict()
    return result


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gan_brevitas.trt.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("--onnx", required=True, help="ONNX file exported with target='tensorrt'")
    parser.add_argument("--engine", help="engine file to write (default: next to the ONNX file)")
    parser.add_argument("--quantized", help="the quantized generator file the ONNX came from")
    parser.add_argument("--model", help="full-precision architecture (stylegan, sagan, cyclegan)")
    parser.add_argument("--checkpoint", help="full-precision checkpoint (with --model)")
    parser.add_argument("--images", help="input images for image-to-image generators")
    parser.add_argument("--real-images", help="real images for FID (optional)")
    parser.add_argument("--n", type=int, default=1000, help="images generated for qFID / FID")
    parser.add_argument("--seed", type=int, default=0, help="seed of the latents")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8], help="batch sizes timed")
    parser.add_argument("--runs", type=int, default=100, help="timed runs per batch size")
    parser.add_argument("--out", required=True, help="JSON result file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        check_output_path(args.out, what="result file", create_parent=True)  # before any compute
        result = evaluate(args)
    except GanBrevitasError as err:
        print(f"trt.evaluate: error: {err}", file=sys.stderr)
        return 2
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n", what="result file")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
