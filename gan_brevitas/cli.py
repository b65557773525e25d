"""`gan-brevitas`: the command line. Each subcommand is a thin layer over `recipes`."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path
from typing import Callable, Optional, Sequence

from gan_brevitas.errors import GanBrevitasError
from gan_brevitas.quant.config import QuantConfig

log = logging.getLogger("gan_brevitas")

EPILOG = """examples:
  gan-brevitas quantize --model cyclegan --checkpoint latest_net_G.pth --images horses/ \\
      --method vanilla-ptq --weight-bits 4 --out q.safetensors
  gan-brevitas info q.safetensors
  gan-brevitas reproduce recipes/*/*.toml --profile cpu --out reproduce_out
"""


def _config_from_args(args: argparse.Namespace) -> QuantConfig:
    base = QuantConfig.from_json(Path(args.config).read_text()) if args.config else QuantConfig()
    changes = {
        "weight_bits": args.weight_bits,
        "act_bits": args.act_bits,
        "per_channel": args.per_channel,
        "act_scheme": args.act_scheme,
        "act_range": args.act_range,
        "act_quantiles": tuple(args.act_quantiles) if args.act_quantiles else None,
        "weight_range": args.weight_range,
        "weight_quantiles": tuple(args.weight_quantiles) if args.weight_quantiles else None,
        "skip": tuple(args.skip) if args.skip else None,
    }
    return base.replace(**{k: v for k, v in changes.items() if v is not None})


def _calibration_inputs(model, args: argparse.Namespace):
    from gan_brevitas.inputs import latent_sampler, load_image_folder

    if getattr(model, "input_kind", "latent") == "image":
        if not args.images:
            raise GanBrevitasError(
                "this generator translates images: give calibration images with --images DIR."
            )
        return load_image_folder(args.images, model.image_size, limit=args.num_samples)
    latent_dim = getattr(model, "latent_dim", None)
    if latent_dim is None:
        raise GanBrevitasError("cannot tell this generator's latent size; use the Python API with inputs=...")
    return latent_sampler(latent_dim, seed=args.seed)


def _method_options(method: str, pairs: Optional[Sequence[str]]) -> dict[str, object]:
    """``--set steps=2000 --set loss=mse`` -> {"steps": 2000, "loss": "mse"} (JSON values, else
    text); the keys are checked against the method's config fields (`gan_brevitas.methods`)."""
    from gan_brevitas.methods import check_option_names

    options: dict[str, object] = {}
    for pair in pairs or ():
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise GanBrevitasError(f"--set expects KEY=VALUE, got {pair!r}.")
        try:
            options[key.replace("-", "_")] = json.loads(text)
        except json.JSONDecodeError:
            options[key.replace("-", "_")] = text
    quant_fields = {f.name for f in dataclasses.fields(QuantConfig)}
    check_option_names(method, [key for key in options if key not in quant_fields], allowed_extras=False)
    return options


def cmd_quantize(args: argparse.Namespace) -> int:
    from gan_brevitas import recipes
    from gan_brevitas.quant.serialize import check_output_path

    out = check_output_path(args.out)
    if args.method.startswith("modelopt-"):
        raise GanBrevitasError(
            "ModelOpt models are not saved by this command: use the Python API "
            "(recipes.quantize(..., 'modelopt-int8'), then modelopt.torch.opt.save or recipes.export)."
        )
    config = _config_from_args(args)
    options = {"num_samples": args.num_samples, **_method_options(args.method, args.set)}
    build_kwargs = {}
    if args.size is not None:
        build_kwargs["size" if args.model == "stylegan" else "image_size"] = args.size
    if args.model == "stylegan":
        build_kwargs["noise_mode"] = "const"  # same latents -> same images (calibration, qFID)
    model = recipes.load_generator(args.model, args.checkpoint, **build_kwargs)
    inputs = _calibration_inputs(model, args)
    qmodel = recipes.quantize(model, args.method, config=config, inputs=inputs, **options)
    recipes.save(qmodel, out)
    print(recipes.describe(qmodel))
    print(f"\nwrote {out} ({args.method}, {qmodel.gan_brevitas.config.to_json()})")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from gan_brevitas import recipes
    from gan_brevitas.quant.serialize import read_quant_info

    info = read_quant_info(args.path)
    print(f"file:      {args.path}")
    print(f"method:    {info.method}")
    print(f"generator: {json.dumps(info.generator)}")
    print(f"config:    {info.config.to_json()}\n")
    if info.generator is not None:
        print(recipes.describe(recipes.load(args.path)))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from gan_brevitas import recipes
    from gan_brevitas.inputs import load_image_folder

    qmodel = recipes.load(args.quantized)
    if args.demo:
        from gan_brevitas.demo import zoo

        model = zoo.load_demo_generator(args.demo)
        inputs = zoo.demo_inputs(args.demo, args.n, seed=args.seed)
        real = zoo.real_images(args.demo, args.n, seed=args.seed + 1)
    else:
        if not args.checkpoint:
            raise GanBrevitasError("give the float generator with --checkpoint FILE (or --demo NAME).")
        spec = qmodel.gan_brevitas.generator or {}
        model = recipes.load_generator(spec.get("name"), args.checkpoint, **spec.get("kwargs", {}))
        inputs = _calibration_inputs(model, args)
        real = load_image_folder(args.real, model.image_size, limit=args.n) if args.real else None
    result = recipes.evaluate(qmodel, model, inputs, n=args.n, real=real, inception_weights=args.inception_weights)
    fid_text = "n/a (no --real images)" if result.fid is None else f"{result.fid:.3f}"
    print(f"FID   {fid_text}\nqFID  {result.qfid:.3f}\nPSNR  {result.psnr:.2f} dB\n"
          f"n={result.n}, extractor {result.extractor} (sha256 {result.extractor_sha256})")
    if args.grid:
        _write_grid(args.grid, qmodel, model, inputs)
        print(f"grid: {args.grid}")
    return 0


def _write_grid(path: str, qmodel, model, inputs) -> None:
    from gan_brevitas.demo.figures import save_grid
    from gan_brevitas.metrics.evaluate import collect_inputs
    from gan_brevitas.metrics.fid import generate
    from gan_brevitas.quant.convert import fold_for_quantization
    from gan_brevitas.quant.serialize import check_output_path

    out = check_output_path(path)
    x = collect_inputs(inputs, 8)
    rows = [("full precision", generate(fold_for_quantization(model), x, 8, progress=False)),
            (qmodel.gan_brevitas.method, generate(qmodel, x, 8, progress=False))]
    save_grid(out, rows, title="full precision vs quantized", inputs=x if x.dim() == 4 else None)


def cmd_demo(args: argparse.Namespace) -> int:
    from gan_brevitas.demo.run import DemoSettings, run_demo

    settings = DemoSettings(
        models=tuple(args.models), n=args.n, num_samples=args.num_samples, out_dir=Path(args.out_dir),
        inception_weights=args.inception_weights, sections=tuple(args.sections), brecq_steps=args.brecq_steps,
        brecq_samples=args.brecq_samples, qat_epochs=args.qat_epochs, qat_train=args.qat_train,
    )
    run_demo(settings)
    return 0


def _checkpoint_map(items: Sequence[str] | None, models: set[str]) -> dict[str, str]:
    """``--checkpoint [MODEL=]PATH`` items -> {model: path}; a bare PATH needs one model."""
    from gan_brevitas.reproduce.spec import MODELS

    mapping: dict[str, str] = {}
    for item in items or ():
        name, sep, path = item.partition("=")
        if not sep:
            if len(models) != 1:
                raise GanBrevitasError(
                    f"--checkpoint {item}: these recipes use {', '.join(sorted(models))}; name the model, "
                    "e.g. --checkpoint stylegan=PATH."
                )
            name, path = next(iter(models)), item
        if name not in MODELS:
            raise GanBrevitasError(f"--checkpoint {item}: {name!r} is not one of {', '.join(MODELS)}.")
        mapping[name] = path
    return mapping


def cmd_reproduce(args: argparse.Namespace) -> int:
    import torch

    from gan_brevitas.reproduce import RunSettings, UserData, load_recipes, reproduce
    from gan_brevitas.reproduce.report import summary

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    recipes = load_recipes(args.recipes)
    settings = RunSettings(
        profile=args.profile,
        out_dir=Path(args.out),
        checkpoints=_checkpoint_map(args.checkpoint, {r.experiment.model for r in recipes}),
        user_data=UserData(images=args.images, eval_images=args.eval_images, real=args.real),
        device=args.device,
        inception_weights=args.inception_weights,
        report_only=args.report_only,
        command=" ".join(["gan-brevitas", *args.argv]),
    )
    outcomes, path = reproduce(recipes, settings)
    print(summary(outcomes))
    print(f"\nreport: {path}")
    return 0


def _add_quant_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("quantization scheme (defaults: the paper's)")
    group.add_argument("--config", help="QuantConfig as a JSON file; the flags below override it")
    group.add_argument("--weight-bits", type=int, help="weight bits, 2..8 (default 8)")
    group.add_argument("--act-bits", type=int, help="activation bits, 2..8 (default 8)")
    group.add_argument("--per-channel", action="store_true", default=None, help="one weight scale per output channel")
    group.add_argument("--act-scheme", choices=["asymmetric", "symmetric"], help="asymmetric (paper) or symmetric (TensorRT)")
    group.add_argument("--act-range", choices=["minmax", "quantile"], help="activation range statistic")
    group.add_argument("--act-quantiles", type=float, nargs=2, metavar=("LOW", "HIGH"), help="e.g. 0.001 0.999")
    group.add_argument("--weight-range", choices=["minmax", "quantile"], help="weight range statistic")
    group.add_argument("--weight-quantiles", type=float, nargs=2, metavar=("LOW", "HIGH"), help="e.g. 0.0001 0.9999")
    group.add_argument("--skip", nargs="*", help="module-name patterns or class names kept in float")


def build_parser() -> argparse.ArgumentParser:
    from gan_brevitas.demo.run import SECTIONS
    from gan_brevitas.methods import method_names

    parser = argparse.ArgumentParser(
        prog="gan-brevitas",
        description="Quantize GAN generators (StyleGAN, SAGAN, CycleGAN, yours) with Brevitas.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log details")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    quantize = sub.add_parser("quantize", help="quantize a generator checkpoint and save it")
    quantize.add_argument("--model", required=True, choices=["stylegan", "sagan", "cyclegan"], help="architecture")
    quantize.add_argument("--checkpoint", required=True, help="float checkpoint in the reference layout")
    quantize.add_argument("--size", type=int, help="output resolution (StyleGAN: default 128; read from the file otherwise)")
    quantize.add_argument("--method", default="vanilla-ptq", choices=method_names(), help="recipe (default vanilla-ptq)")
    quantize.add_argument("--num-samples", type=int, default=500, help="calibration samples, fed one at a time (default 500)")
    quantize.add_argument("--images", help="folder of calibration images (image-to-image generators)")
    quantize.add_argument("--seed", type=int, default=0, help="seed of the calibration latents")
    quantize.add_argument("--out", required=True, help="output file (safetensors)")
    quantize.add_argument("--set", action="append", metavar="KEY=VALUE", help="method option, e.g. --set steps=2000 (repeatable)")
    _add_quant_options(quantize)
    quantize.set_defaults(func=cmd_quantize)

    evaluate = sub.add_parser("evaluate", help="FID, qFID and PSNR of a quantized generator vs its float original")
    evaluate.add_argument("quantized", help="file written by `gan-brevitas quantize`")
    evaluate.add_argument("--checkpoint", help="the float generator checkpoint it was made from")
    evaluate.add_argument("--demo", choices=["stylegan", "sagan", "cyclegan"], help="use a packaged demo generator, its inputs and real data")
    evaluate.add_argument("--images", help="input images for image-to-image generators")
    evaluate.add_argument("--real", help="folder of real images for FID (omit: FID is skipped)")
    evaluate.add_argument("--n", type=int, default=1000, help="images per metric (paper: 50000; default 1000)")
    evaluate.add_argument("--seed", type=int, default=0, help="seed of the latents")
    evaluate.add_argument("--num-samples", type=int, default=1000, help=argparse.SUPPRESS)
    evaluate.add_argument("--grid", help="write a PNG grid: full precision vs quantized, same inputs")
    evaluate.add_argument("--inception-weights", help="local Inception-v3 weights (else $GAN_BREVITAS_INCEPTION_WEIGHTS, torch-fidelity's cache, or the offline demo CNN)")
    evaluate.set_defaults(func=cmd_evaluate)

    demo = sub.add_parser("demo", help="the main job: quantize the packaged demo generators and report (offline)")
    demo.add_argument("--models", nargs="+", default=["stylegan", "sagan", "cyclegan"], choices=["stylegan", "sagan", "cyclegan"])
    demo.add_argument("--n", type=int, default=1000, help="images per metric (default 1000)")
    demo.add_argument("--num-samples", type=int, default=200, help="calibration samples, one at a time (default 200; paper 500)")
    demo.add_argument("--out-dir", default="demo_out", help="where report.md, results.json and the PNGs go")
    demo.add_argument("--inception-weights", help="local Inception-v3 weights file (default: offline demo CNN)")
    demo.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=SECTIONS,
                      help="which parts to run (default: all; modelopt only where ModelOpt is installed)")
    demo.add_argument("--brecq-steps", type=int, default=100, help="BRECQ steps per block (default 100; paper 2,000 / 20,000)")
    demo.add_argument("--brecq-samples", type=int, default=128, help="BRECQ reconstruction inputs (default 128; paper 896)")
    demo.add_argument("--qat-epochs", type=int, default=2, help="QAT epochs (default 2; paper 100-200)")
    demo.add_argument("--qat-train", type=int, default=128, help="QAT distillation pairs per epoch (default 128; paper 10,000)")
    demo.set_defaults(func=cmd_demo)

    reproduce = sub.add_parser(
        "reproduce", help="run the paper's experiments from recipes/*.toml and write RESULTS.md",
        description="Run recipe files (one per row of the paper's Tables 3 and 4, one Figure 1 sweep per "
        "model), cache every finished row, skip cached rows, and write OUT/RESULTS.md.",
    )
    reproduce.add_argument("recipes", nargs="+", help="recipe TOML files or folders, e.g. recipes/table4/*.toml")
    reproduce.add_argument("--profile", default="cpu", choices=["paper", "cpu", "tiny"],
                           help="paper: the files as written; cpu: scaled for a 2-core machine (default); tiny: tests")
    reproduce.add_argument("--checkpoint", action="append", metavar="[MODEL=]PATH",
                           help="your generator checkpoint for MODEL (default: the packaged demo generators); repeatable")
    reproduce.add_argument("--images", help="calibration / training images of an image-to-image checkpoint")
    reproduce.add_argument("--eval-images", help="held-out images for its metrics (default: --images)")
    reproduce.add_argument("--real", help="real images for FID with --checkpoint (omit: no FID)")
    reproduce.add_argument("--out", default="reproduce_out", help="cache, RESULTS.md and figures (default reproduce_out/)")
    reproduce.add_argument("--device", default="cpu", help="where generators run and train (default cpu)")
    reproduce.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    reproduce.add_argument("--inception-weights", help="local Inception-v3 weights (default: offline demo CNN)")
    reproduce.add_argument("--report-only", action="store_true", help="run nothing; rewrite RESULTS.md from the cache")
    reproduce.set_defaults(func=cmd_reproduce)

    from gan_brevitas.export.commands import add_commands as add_export_commands

    add_export_commands(sub)

    info = sub.add_parser("info", help="show what a quantized generator file holds")
    info.add_argument("path", help="file written by `gan-brevitas quantize`")
    info.set_defaults(func=cmd_info)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except GanBrevitasError as err:
        print(f"gan-brevitas {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
