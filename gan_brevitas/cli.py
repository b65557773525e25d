"""`gan-brevitas`: the command line. Each subcommand is a thin layer over `recipes`.

The parser is built without importing torch or the demo stack (`--help` answers at once);
each command imports what it needs. Exit codes: 0 done, 1 the run failed (a file, the data or
an export was refused, with the reason), 2 bad usage (an unknown option or an invalid value).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Callable, Optional, Sequence

from gan_brevitas.errors import ConfigError, GanBrevitasError
from gan_brevitas.quant.config import QuantConfig

log = logging.getLogger("gan_brevitas")

#: Exit codes.
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

#: Names the parser offers, kept here so that building it imports no torch (a test checks them
#: against `models.GENERATORS` and `demo.run.SECTIONS`). Method names are checked when the command
#: runs (`gan_brevitas.methods`; an unknown one is refused with the list and a did-you-mean).
GENERATOR_NAMES = ("cyclegan", "sagan", "stylegan")
#: `gan_brevitas.methods.DEFAULT_METHOD` / `PAPER_METHOD`: what runs when no --method is given,
#: without / with --paper (a test checks they agree).
DEFAULT_METHOD, PAPER_METHOD = "gptq", "vanilla-ptq"
METHOD_EXAMPLES = "gptq, vanilla-ptq, ste-brecq, ar-brecq, ma-qat, lsq-qat, mixed-precision, modelopt-int8"
DEMO_SECTIONS = ("ptq", "figure1", "brecq", "qat", "modelopt")

EPILOG = """examples:
  gan-brevitas demo                                     # the main job, offline (see README)
  gan-brevitas quantize --model cyclegan --checkpoint latest_net_G.pth --images horses/ \\
      --method vanilla-ptq --weight-bits 4 --out q.safetensors
  gan-brevitas quantize --model mypkg.nets:Generator --checkpoint g.pth --input-shape 128 --out q.safetensors
  gan-brevitas info q.safetensors
  gan-brevitas reproduce recipes --profile cpu --out reproduce_out

exit codes: 0 done; 1 the run failed (the message says why); 2 bad usage.
"""


def _config_from_args(args: argparse.Namespace) -> QuantConfig:
    base = QuantConfig.paper() if args.paper else QuantConfig()
    if args.config:
        try:
            base = QuantConfig.from_file(args.config)
        except ConfigError as err:
            raise ConfigError(f"--config: {err}") from None
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
        "bias_correction": args.bias_correction,
    }
    return base.replace(**{k: v for k, v in changes.items() if v is not None})


def _progress(args: argparse.Namespace) -> bool:
    """Progress bars (with ETA) on a terminal; none under --quiet or in a log file."""
    return not args.quiet and sys.stderr.isatty()


def _calibration_inputs(model, args: argparse.Namespace, limit: Optional[int] = None):
    """Images from --images for image generators, seeded latents otherwise."""
    from gan_brevitas.inputs import latent_sampler, load_image_folder

    if getattr(model, "input_kind", "latent") == "image":
        if not args.images:
            raise ConfigError("this generator translates images: give its input images with --images DIR.")
        return load_image_folder(args.images, model.image_size, limit=limit)
    if args.images:
        raise ConfigError(f"this generator takes latents, not images: leave out --images {args.images} "
                          "(its latents are drawn from a seeded normal distribution; --seed chooses them).")
    shape = getattr(model, "input_shape", None) or (getattr(model, "latent_dim", None),)
    if shape[0] is None:
        raise ConfigError("cannot tell this generator's input shape: give --input-shape (e.g. 128 or 3,64,64).")
    return latent_sampler(shape, seed=args.seed)


def _model_kwargs(args: argparse.Namespace) -> dict:
    if not args.model_kwargs:
        return {}
    try:
        kwargs = json.loads(args.model_kwargs)
    except json.JSONDecodeError as err:
        raise ConfigError(f"--model-kwargs is not JSON ({err.msg}): e.g. '{{\"width\": 64}}'.") from None
    if not isinstance(kwargs, dict):
        raise ConfigError("--model-kwargs must be a JSON object, e.g. '{\"width\": 64}'.")
    return kwargs


def _load_float_model(args: argparse.Namespace, recorded: Optional[dict] = None):
    """The float generator of --model / --checkpoint: one of ours, or a user's package.module:Class."""
    from gan_brevitas import recipes
    from gan_brevitas.models.registry import architecture
    from gan_brevitas.models.user import describe_inputs, load_user_generator, parse_input_shape

    if args.model in GENERATOR_NAMES or (args.model is None and recorded):
        name = args.model or recorded["name"]
        family = architecture(name)
        kwargs = dict(recorded["kwargs"]) if recorded and recorded.get("name") == name else {}
        if args.size is not None:
            kwargs[family.size_argument] = args.size
        kwargs.update(family.inference_kwargs)  # same inputs -> same images (calibration, qFID)
        return recipes.load_generator(name, args.checkpoint, **kwargs)
    if args.model is None:
        raise ConfigError("this file holds a generator of your own: name its class with --model package.module:Class.")
    if ":" not in args.model:  # neither one of ours nor a class: most likely a typo of ours
        try:
            architecture(args.model)
        except ConfigError as err:
            raise ConfigError(f"--model: {err}, or name a class of your own as package.module:Class.") from None
    if not args.input_shape:
        raise ConfigError(f"--model {args.model}: give the shape of one input with --input-shape "
                          "(e.g. 128 for latents, 3,64,64 for images).")
    model = load_user_generator(args.model, args.checkpoint, _model_kwargs(args))
    describe_inputs(model, parse_input_shape(args.input_shape), "image" if args.images else "latent")
    return model


def _method_options(method: str, pairs: Optional[Sequence[str]]) -> dict[str, object]:
    """``--set steps=2000 --set loss=mse`` -> {"steps": 2000, "loss": "mse"} (JSON values, else
    text); the keys are checked against the method's config fields (`gan_brevitas.methods`)."""
    from gan_brevitas.methods import check_option_names

    options: dict[str, object] = {}
    for pair in pairs or ():
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects KEY=VALUE, got {pair!r}.")
        try:
            options[key.replace("-", "_")] = json.loads(text)
        except json.JSONDecodeError:
            options[key.replace("-", "_")] = text
    quant_fields = {f.name for f in dataclasses.fields(QuantConfig)}
    check_option_names(method, [key for key in options if key not in quant_fields], allowed_extras=False)
    return options


def cmd_quantize(args: argparse.Namespace) -> int:
    from gan_brevitas import recipes
    from gan_brevitas.atomic_files import check_output_path

    out = check_output_path(args.out)
    config = _config_from_args(args)
    if args.method is None:
        args.method = PAPER_METHOD if args.paper else DEFAULT_METHOD
    options = {"progress": _progress(args), **_method_options(args.method, args.set)}
    if args.num_samples is not None:
        options["num_samples"] = args.num_samples
    model = _load_float_model(args)
    inputs = _calibration_inputs(model, args, limit=args.num_samples)
    qmodel = recipes.quantize(model, args.method, config=config, inputs=inputs, **options)
    if int(os.environ.get("RANK", "0")) != 0:
        return EXIT_OK  # under torchrun the QAT processes trained together; the first one saves
    recipes.save(qmodel, out)
    if not args.quiet:
        print(recipes.describe(qmodel))
    print(f"\nwrote {out} ({args.method}, {qmodel.gan_brevitas.config.to_json()})")
    return EXIT_OK


def cmd_info(args: argparse.Namespace) -> int:
    from gan_brevitas import recipes
    from gan_brevitas.quant.serialize import read_quant_info

    info = read_quant_info(args.path)
    print(f"file:        {args.path}")
    print(f"method:      {info.method}")
    print(f"generator:   {json.dumps(info.generator) if info.generator else 'your own class (not recorded)'}")
    print(f"input shape: {list(info.input_shape) if info.input_shape else 'not recorded'}")
    print(f"config:      {info.config.to_json()}\n")
    if info.generator is not None:
        print(recipes.describe(recipes.load(args.path)))
    return EXIT_OK


def _extractor(args: argparse.Namespace, demo: bool):
    """The FID feature extractor: Inception-v3 for the user's images (weights from a local file),
    the offline demo CNN only for the demo data or when asked for by name."""
    from gan_brevitas.metrics.extractors import choose_extractor

    return choose_extractor(args.extractor, args.inception_weights, demo_data=demo)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from gan_brevitas import recipes
    from gan_brevitas.inputs import load_image_folder
    from gan_brevitas.metrics.evaluate import evaluate
    from gan_brevitas.quant.convert import fold_for_quantization
    from gan_brevitas.atomic_files import check_output_path

    grid = check_output_path(args.grid) if args.grid else None
    qmodel = _load_quantized(args)
    if args.demo:
        from gan_brevitas.demo import zoo

        model = zoo.load_demo_generator(args.demo)
        inputs = zoo.demo_inputs(args.demo, args.n, seed=args.seed)
        real = zoo.real_images(args.demo, args.n, seed=args.seed + 1)
    else:
        if not args.checkpoint:
            raise ConfigError("give the float generator with --checkpoint FILE (or --demo NAME).")
        model = _load_float_model(args, recorded=qmodel.gan_brevitas.generator)
        inputs = _calibration_inputs(model, args, limit=args.n)
        real = load_image_folder(args.real, model.image_size, limit=args.n) if args.real else None
    extractor = _extractor(args, demo=bool(args.demo))
    result = evaluate(qmodel, fold_for_quantization(model), inputs, args.n, real, extractor, progress=_progress(args))
    fid_text = "n/a (no --real images)" if result.fid is None else f"{result.fid:.3f}"
    print(f"FID   {fid_text}\nqFID  {result.qfid:.3f}\nPSNR  {result.psnr:.2f} dB\n"
          f"n={result.n}, extractor {result.extractor} (sha256 {result.extractor_sha256})")
    if grid is not None:
        _write_grid(grid, qmodel, model, inputs, result)
        print(f"grid: {grid}")
    return EXIT_OK


def _load_quantized(args: argparse.Namespace):
    """A quantized file; a user's generator is rebuilt from --model package.module:Class."""
    from gan_brevitas import recipes
    from gan_brevitas.quant.serialize import read_quant_info

    info = read_quant_info(args.quantized)
    if info.generator is not None:
        return recipes.load(args.quantized)
    if not args.model or args.model in GENERATOR_NAMES:
        raise ConfigError(f"{args.quantized} holds a generator of your own: name its class with "
                          "--model package.module:Class (and --model-kwargs if it takes arguments).")
    from gan_brevitas.models.user import import_generator_class

    return recipes.load(args.quantized, import_generator_class(args.model)(**_model_kwargs(args)))


def _write_grid(out: Path, qmodel, model, inputs, result) -> None:
    from gan_brevitas.harness.figures import save_grid
    from gan_brevitas.metrics.evaluate import collect_inputs
    from gan_brevitas.metrics.fid import generate
    from gan_brevitas.quant.convert import fold_for_quantization

    info = qmodel.gan_brevitas
    x = collect_inputs(inputs, 8)
    label = (f"{info.method} W{info.config.weight_bits}A{info.config.act_bits}"
             f"{' per-channel' if info.config.per_channel else ''}: qFID {result.qfid:.2f}, PSNR {result.psnr:.1f} dB")
    rows = [("full precision", generate(fold_for_quantization(model), x, 8, progress=False)),
            (label, generate(qmodel, x, 8, progress=False))]
    title = f"full precision vs quantized, same inputs per column (metrics on n={result.n}, {result.extractor})"
    save_grid(out, rows, title=title, inputs=x if x.dim() == 4 else None)


def cmd_demo(args: argparse.Namespace) -> int:
    from gan_brevitas.demo.run import DemoSettings, run_demo

    settings = DemoSettings(
        models=tuple(args.models), n=args.n, num_samples=args.num_samples, out_dir=Path(args.out_dir),
        inception_weights=args.inception_weights, sections=tuple(args.sections), brecq_steps=args.brecq_steps,
        brecq_samples=args.brecq_samples, qat_epochs=args.qat_epochs, qat_train=args.qat_train,
        progress=_progress(args),
    )
    run_demo(settings)
    return EXIT_OK


def _checkpoint_map(items: Sequence[str] | None, models: set[str]) -> dict[str, str]:
    """``--checkpoint [MODEL=]PATH`` items -> {model: path}; a bare PATH needs one model."""
    from gan_brevitas.reproduce.spec import MODELS

    mapping: dict[str, str] = {}
    for item in items or ():
        name, sep, path = item.partition("=")
        if not sep:
            if len(models) != 1:
                raise ConfigError(
                    f"--checkpoint {item}: these recipes use {', '.join(sorted(models))}; name the model, "
                    "e.g. --checkpoint stylegan=PATH."
                )
            name, path = next(iter(models)), item
        if name not in MODELS:
            raise ConfigError(f"--checkpoint {item}: {name!r} is not one of {', '.join(MODELS)}.")
        mapping[name] = path
    return mapping


def cmd_reproduce(args: argparse.Namespace) -> int:
    import torch

    from gan_brevitas.reproduce import RunSettings, UserData, load_recipes, reproduce
    from gan_brevitas.reproduce.report import summary

    if args.threads is not None:
        if args.threads < 1:
            raise ConfigError(f"--threads must be >= 1, got {args.threads}.")
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
    group = parser.add_argument_group("quantization scheme (defaults: QuantConfig(); --paper for the paper's)")
    group.add_argument("--config", help="QuantConfig as a JSON file; the flags below override it")
    group.add_argument("--paper", action="store_true", help="start from the paper's scheme, QuantConfig.paper()")
    group.add_argument("--weight-bits", type=int, help="weight bits, 2..8 (default 8)")
    group.add_argument("--act-bits", type=int, help="activation bits, 2..8 (default 8)")
    group.add_argument("--per-channel", action=argparse.BooleanOptionalAction, default=None,
                       help="one weight scale per output channel (default) or per tensor")
    group.add_argument("--act-scheme", choices=["asymmetric", "symmetric"], help="asymmetric (paper) or symmetric (TensorRT)")
    group.add_argument("--act-range", choices=["minmax", "quantile", "mse"], help="activation range statistic")
    group.add_argument("--act-quantiles", type=float, nargs=2, metavar=("LOW", "HIGH"), help="e.g. 0.001 0.999")
    group.add_argument("--weight-range", choices=["minmax", "quantile", "mse", "auto"], help="weight range statistic")
    group.add_argument("--weight-quantiles", type=float, nargs=2, metavar=("LOW", "HIGH"), help="e.g. 0.0001 0.9999")
    group.add_argument("--bias-correction", action=argparse.BooleanOptionalAction, default=None,
                       help="correct the mean output shift of each layer after calibration (default on)")
    group.add_argument("--skip", nargs="*", help="module-name patterns or class names kept in float")


def _add_model_options(parser: argparse.ArgumentParser, required: bool) -> None:
    group = parser.add_argument_group("the float generator")
    group.add_argument("--model", required=required, metavar="NAME|MODULE:CLASS",
                       help=f"architecture: {', '.join(GENERATOR_NAMES)}, or your own nn.Module as "
                       "package.module:Class (importable: on PYTHONPATH or installed)")
    group.add_argument("--checkpoint", required=required, help="float checkpoint (state_dict; reference layout for ours)")
    group.add_argument("--size", type=int, help="output resolution; default: read from the checkpoint (its record, "
                       "or for StyleGAN the highest trained block)")
    group.add_argument("--model-kwargs", metavar="JSON", help="constructor arguments of your own class, e.g. '{\"width\": 64}'")
    group.add_argument("--input-shape", metavar="SHAPE", help="your own class: one input without the batch axis, "
                       "e.g. 128 (latents, standard normal) or 3,64,64 (images, with --images)")


def _add_extractor_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--inception-weights", help="local Inception-v3 weights (else $GAN_BREVITAS_INCEPTION_WEIGHTS "
                        "or torch-fidelity's cache)")
    parser.add_argument("--extractor", choices=["inception", "demo-cnn"], help="FID features: inception (default; "
                        "needs its weights) or demo-cnn, the offline CNN trained on the demo digits/textures "
                        "(the default only with --demo)")


def _add_common_options(parser: argparse.ArgumentParser, default: object) -> None:
    parser.add_argument("-v", "--verbose", action="store_true", default=default, help="log details")
    parser.add_argument("-q", "--quiet", action="store_true", default=default,
                        help="no progress bars or tables (bars are also off when stderr is not a terminal)")


def _add_quantize_command(sub: argparse._SubParsersAction) -> None:
    """`gan-brevitas quantize`: a checkpoint in, a quantized file out."""
    quantize = sub.add_parser("quantize", help="quantize a generator checkpoint and save it",
                              epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_model_options(quantize, required=True)
    quantize.add_argument("--method", metavar="METHOD",
                          help=f"recipe (default {DEFAULT_METHOD}; with --paper {PAPER_METHOD}): {METHOD_EXAMPLES}, ...")
    quantize.add_argument("--num-samples", type=int, default=None,
                          help="calibration samples (default: the method's own, gptq 64, vanilla-ptq 500)")
    quantize.add_argument("--images", help="folder of calibration images (image-to-image generators)")
    quantize.add_argument("--seed", type=int, default=0, help="seed of the calibration latents")
    quantize.add_argument("--out", required=True, help="output file (safetensors)")
    quantize.add_argument("--set", action="append", metavar="KEY=VALUE", help="method option, e.g. --set steps=2000 (repeatable)")
    _add_quant_options(quantize)
    quantize.set_defaults(func=cmd_quantize)


def _add_evaluate_command(sub: argparse._SubParsersAction) -> None:
    """`gan-brevitas evaluate`: FID, qFID and PSNR of a quantized file."""
    evaluate = sub.add_parser("evaluate", help="FID, qFID and PSNR of a quantized generator vs its float original")
    evaluate.add_argument("quantized", help="file written by `gan-brevitas quantize`")
    _add_model_options(evaluate, required=False)
    evaluate.add_argument("--demo", choices=GENERATOR_NAMES, help="use a packaged demo generator, its inputs and real data")
    evaluate.add_argument("--images", help="input images for image-to-image generators")
    evaluate.add_argument("--real", help="folder of real images for FID (omit: FID is skipped)")
    evaluate.add_argument("--n", type=int, default=1000, help="images per metric (paper: 50000; default 1000)")
    evaluate.add_argument("--seed", type=int, default=0, help="seed of the latents")
    evaluate.add_argument("--grid", help="write a labelled PNG grid: full precision vs quantized, same inputs")
    _add_extractor_options(evaluate)
    evaluate.set_defaults(func=cmd_evaluate)


def _add_demo_command(sub: argparse._SubParsersAction) -> None:
    """`gan-brevitas demo`: the main job."""
    demo = sub.add_parser("demo", help="the main job: quantize the packaged demo generators and report (offline)")
    demo.add_argument("--models", nargs="+", default=list(GENERATOR_NAMES[::-1]), choices=GENERATOR_NAMES)
    demo.add_argument("--n", type=int, default=1000, help="images per metric (default 1000)")
    demo.add_argument("--num-samples", type=int, default=200, help="calibration samples, one at a time (default 200; paper 500)")
    demo.add_argument("--out-dir", default="demo_out", help="where report.md, results.json and the PNGs go")
    demo.add_argument("--inception-weights", help="local Inception-v3 weights file (default: offline demo CNN)")
    demo.add_argument("--sections", nargs="+", default=list(DEMO_SECTIONS), choices=DEMO_SECTIONS,
                      help="which parts to run (default: all; modelopt only where ModelOpt is installed)")
    demo.add_argument("--brecq-steps", type=int, default=100, help="BRECQ steps per block (default 100; paper 2,000 / 20,000)")
    demo.add_argument("--brecq-samples", type=int, default=128, help="BRECQ reconstruction inputs (default 128; paper 896)")
    demo.add_argument("--qat-epochs", type=int, default=2, help="QAT epochs (default 2; paper 100-200)")
    demo.add_argument("--qat-train", type=int, default=128, help="QAT distillation pairs per epoch (default 128; paper 10,000)")
    demo.set_defaults(func=cmd_demo)


def _add_reproduce_command(sub: argparse._SubParsersAction) -> None:
    """`gan-brevitas reproduce`: the paper's experiments from recipe files."""
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


def _add_info_command(sub: argparse._SubParsersAction) -> None:
    """`gan-brevitas info`: what a quantized file holds."""
    info = sub.add_parser("info", help="show what a quantized generator file holds")
    info.add_argument("path", help="file written by `gan-brevitas quantize`")
    info.set_defaults(func=cmd_info)


def build_parser() -> argparse.ArgumentParser:
    """The whole parser; imports nothing heavy (torch, Brevitas, the demo) until a command runs."""
    parser = argparse.ArgumentParser(
        prog="gan-brevitas",
        description="Quantize GAN generators (StyleGAN, SAGAN, CycleGAN, yours) with Brevitas.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_common_options(parser, default=False)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    _add_common_options(common, default=argparse.SUPPRESS)  # also accepted after the command
    add_parser = sub.add_parser
    sub.add_parser = lambda *a, **k: add_parser(*a, parents=[common], **k)  # type: ignore[method-assign]

    _add_quantize_command(sub)
    _add_evaluate_command(sub)
    _add_demo_command(sub)
    _add_reproduce_command(sub)

    from gan_brevitas.export_commands import add_commands as add_export_commands

    add_export_commands(sub, GENERATOR_NAMES)

    _add_info_command(sub)
    return parser


def _failure(err: BaseException) -> tuple[int, str]:
    """(exit code, message) of an expected failure; unexpected ones are bugs and keep their traceback."""
    if isinstance(err, ConfigError):
        return EXIT_USAGE, str(err)
    if isinstance(err, GanBrevitasError):
        return EXIT_FAILED, str(err)
    if isinstance(err, OSError):  # a file that cannot be read or written: the OS's own words
        where = f" {err.filename}" if err.filename else ""
        return EXIT_FAILED, f"{err.strerror or err}:{where}"
    raise err


def install_signal_handlers() -> None:
    """SIGTERM stops a command the way Ctrl-C does: cleanup runs (temporary files and staged
    outputs are removed, earlier outputs stay), then the process exits with status 143."""

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run one command; returns the exit code (0 ok, 1 failed, 2 bad usage)."""
    if threading.current_thread() is threading.main_thread():
        install_signal_handlers()
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    level = logging.INFO if args.verbose else logging.ERROR if args.quiet else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except KeyboardInterrupt:
        print(f"gan-brevitas {args.command}: interrupted", file=sys.stderr)
        return 130
    except (GanBrevitasError, OSError) as err:
        code, message = _failure(err)
        print(f"gan-brevitas {args.command}: error: {message}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
