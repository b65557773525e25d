"""CLI subcommands of the deployment part: ``export``, ``check-trt`` and ``bench``.

`add_commands(subparsers, generator_names)` registers them on the main parser (gan_brevitas.cli wires it in).
Each command is a thin layer over `recipes.export`, `check_tensorrt` and `bench`.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from gan_brevitas.errors import ConfigError

#: The choices of `export` (the same tuples as export.qcdq's TARGETS / CONV_TRANSPOSE_MODES).
EXPORT_TARGETS = ("onnxruntime", "tensorrt", "openvino", "float")
BENCH_ENGINES = ("onnxruntime", "openvino")
CONV_TRANSPOSE_NAMES = ("auto", "subpixel", "keep")

EXPORT_EPILOG = """examples:
  gan-brevitas export q.safetensors --out g_int8.onnx                       # ONNX Runtime, int8
  gan-brevitas export q.safetensors --out g_trt.onnx --target tensorrt --fp16
  gan-brevitas export q.safetensors --out g_ov.xml --target openvino --images calib/   # OpenVINO IR, int8
  gan-brevitas export q.safetensors --out g_fp32.onnx --target float        # same weights, fp32
  gan-brevitas export --model cyclegan --checkpoint latest_net_G.pth --out g_fp32.onnx --target float
"""


def _calibration_inputs(model: Any, args: argparse.Namespace) -> Any:
    """Inputs for re-calibrating symmetric activations (tensorrt, openvino): images or latents."""
    from gan_brevitas.inputs import latent_sampler, load_image_folder

    if getattr(model, "input_kind", "latent") == "image":
        if not args.images:
            return None  # the export explains that inputs are needed, if they are
        return load_image_folder(args.images, model.image_size, limit=args.num_samples)
    latent_dim = getattr(model, "latent_dim", None)
    return latent_sampler(latent_dim, seed=args.seed) if latent_dim else None


def _load_model(args: argparse.Namespace) -> Any:
    from gan_brevitas import recipes

    if args.source and (args.model or args.checkpoint):
        raise ConfigError("give either a quantized file or --model with --checkpoint, not both.")
    if args.source:
        return recipes.load(args.source)
    if not (args.model and args.checkpoint):
        raise ConfigError(
            "nothing to export: give a quantized generator file (from `gan-brevitas quantize`), or "
            "--model NAME --checkpoint FILE with --target float for the fp32 baseline."
        )
    if args.target != "float":
        raise ConfigError(
            f"--model/--checkpoint load a float generator; target {args.target!r} needs a quantized "
            "one: run `gan-brevitas quantize` first, or use --target float."
        )
    return recipes.load_generator(args.model, args.checkpoint)


def cmd_export(args: argparse.Namespace) -> int:
    from gan_brevitas import recipes

    model = _load_model(args)
    if getattr(model, "noise_mode", None) == "random":
        model.noise_mode = "const"
        print("note: noise fixed for export (noise_mode='const', the mode qFID uses)")
    inputs = _calibration_inputs(model, args) if args.target in ("tensorrt", "openvino") else None
    report = recipes.export(
        model, args.out, args.target, inputs=inputs, opset=args.opset, conv_transpose=args.conv_transpose,
        fp16=args.fp16, int4=args.int4, num_samples=args.num_samples, profile=args.profile,
    )
    print(report.format())
    return 0


def cmd_check_trt(args: argparse.Namespace) -> int:
    from gan_brevitas.export.rules import check_tensorrt

    report = check_tensorrt(args.path)
    print(report.format())
    if not report.quantized:
        return 0
    if report.errors or (args.strict and report.warnings):
        return 1
    print("TensorRT accepts this graph as int8 (no rule errors).")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from gan_brevitas.deploy.bench import bench

    from gan_brevitas.atomic_files import atomic_write_text, check_output_path

    out = check_output_path(args.json, what="--json") if args.json else None
    report = bench(args.path, args.against, batch_sizes=args.batch, threads=args.threads,
                   warmup=args.warmup, runs=args.runs, engine=args.engine)
    print(report.format())
    if out is not None:
        atomic_write_text(out, json.dumps(report.to_dict(), indent=2))
        print(f"wrote {out}")
    return 0


def add_commands(subparsers: Any, generator_names: tuple[str, ...]) -> None:
    """Register ``export``, ``check-trt`` and ``bench`` on the CLI's subparsers (no torch import:
    the names are `EXPORT_TARGETS` / `CONV_TRANSPOSE_NAMES` / `BENCH_ENGINES`, checked against
    export.qcdq and deploy.runner by a test; ``generator_names``: the CLI's `GENERATOR_NAMES`)."""

    export = subparsers.add_parser(
        "export", help="export a quantized generator to QCDQ ONNX (onnxruntime, tensorrt) or fp32 ONNX",
        epilog=EXPORT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    export.add_argument("source", nargs="?", help="quantized generator file written by `gan-brevitas quantize`")
    export.add_argument("--out", required=True, help="output .onnx file (.xml: OpenVINO IR, target openvino)")
    export.add_argument("--target", default="onnxruntime", choices=EXPORT_TARGETS, help="deployment target (default onnxruntime)")
    export.add_argument("--model", choices=generator_names, help="float generator architecture (with --target float)")
    export.add_argument("--checkpoint", help="float checkpoint in the reference layout (with --model)")
    export.add_argument("--images", help="calibration images (image generators; tensorrt / openvino re-calibration)")
    export.add_argument("--num-samples", type=int, default=128,
                        help="re-calibration samples for tensorrt / openvino (default 128)")
    export.add_argument("--seed", type=int, default=0, help="seed of the re-calibration latents")
    export.add_argument("--opset", type=int, help="ONNX opset (default 17; 21 with --int4)")
    export.add_argument("--conv-transpose", default="auto", choices=CONV_TRANSPOSE_NAMES,
                        help="rewrite ConvTranspose as Conv + PixelShuffle: auto (per target), subpixel, keep")
    export.add_argument("--fp16", action="store_true", help="float parts in fp16 with explicit casts (tensorrt)")
    export.add_argument("--int4", action="store_true", help="pack <= 4-bit weights as ONNX INT4 (onnxruntime, opset 21)")
    export.add_argument("--profile", action="store_true",
                        help="report the share of engine time outside int8 kernels (onnxruntime, openvino)")
    export.set_defaults(func=cmd_export)

    check = subparsers.add_parser("check-trt", help="check an ONNX file against TensorRT's int8 (Q/DQ) rules")
    check.add_argument("path", help="ONNX model")
    check.add_argument("--strict", action="store_true", help="exit 1 on warnings too")
    check.set_defaults(func=cmd_check_trt)

    bench = subparsers.add_parser("bench", help="CPU latency in ONNX Runtime or OpenVINO, optionally against a baseline")
    bench.add_argument("path", help="exported model (.onnx; .xml for OpenVINO IR), e.g. the int8 export")
    bench.add_argument("--against", help="baseline model with the same input (e.g. the fp32 export)")
    bench.add_argument("--engine", default="onnxruntime", choices=BENCH_ENGINES, help="CPU engine (default onnxruntime)")
    bench.add_argument("--batch", type=int, nargs="+", default=[1, 8], help="batch sizes (default 1 8)")
    bench.add_argument("--threads", type=int, help="intra-op threads (default: the engine's own)")
    bench.add_argument("--runs", type=int, default=20, help="timed runs per model and batch (default 20)")
    bench.add_argument("--warmup", type=int, default=3, help="untimed runs first (default 3)")
    bench.add_argument("--json", help="also write the results to this JSON file")
    bench.set_defaults(func=cmd_bench)
