"""Step 1 of a QAT run: everything that can fail, checked before a single file is written.

Options, VGG16 weights for the perceptual loss, the run directory, the inputs (the same on every
process), the discriminator against the generator's output shape, and the fingerprint a resumed
run must match. `validate_run` returns what it found as a `RunSetup`.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Optional

import torch
from torch import Tensor, nn

from gan_brevitas.errors import ConfigError
from gan_brevitas.inputs import InputSource, iter_batches
from gan_brevitas.qat.checkpoint import (
    check_run_dir,
    json_sha256,
    module_sha256,
    write_run_record,
)
from gan_brevitas.qat.discriminator import check_discriminator, fresh_discriminator
from gan_brevitas.qat.distill import (
    GENERATION_BATCH,
    draw_inputs,
    generator_image,
    inputs_fingerprint,
)
from gan_brevitas.qat.distributed import DistContext
from gan_brevitas.qat.losses import load_vgg16_features, resolve_vgg16_weights
from gan_brevitas.qat.options import QATOptions
from gan_brevitas.qat.state import RunSetup
from gan_brevitas.quant.config import QuantConfig

log = logging.getLogger(__name__)


def _model_device(model: nn.Module) -> torch.device:
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def _device(float_model: nn.Module, opts: QATOptions, dist: DistContext) -> torch.device:
    if opts.device is not None:
        return torch.device(opts.device)
    if dist.active and torch.cuda.is_available():
        return torch.device("cuda", dist.local_rank)
    return _model_device(float_model)


def _explain_scaling(config: QuantConfig, opts: QATOptions) -> None:
    learns_quant = opts.schedule in ("lsq", "ma-lsq")
    if learns_quant and config.weight_scaling == "stats":
        log.warning(
            "config.weight_scaling='stats': LSQ-QAT learns the activation scales and zero "
            "points, while weight scales follow the weight quantiles at every step. For the "
            "paper's LSQ (learned weight step sizes too) pass weight_scaling='learned' (CLI: "
            "--set weight_scaling=learned)."
        )
    if opts.schedule != "lsq" and config.weight_scaling == "learned":
        log.info(
            "weight_scaling='learned': during MA epochs the weight scales keep their quantile "
            "initialisation; weights train through straight-through rounding."
        )


def _check_options(float_model: nn.Module, opts: QATOptions, dist: DistContext) -> Optional[Path]:
    """The option checks that need no data; returns the run directory (None: none)."""
    out_dir = Path(opts.out_dir) if opts.out_dir is not None else None
    if out_dir is not None and out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"out_dir {out_dir} is a file, not a directory.")
    if getattr(float_model, "noise_mode", None) == "random":
        log.warning(
            "the generator draws fresh noise on every call (noise_mode='random'): the quantized "
            "model cannot reproduce the stored outputs exactly; use noise_mode='const' for distillation."
        )
    if opts.batch_size % dist.world_size:
        raise ConfigError(
            f"batch_size={opts.batch_size} is the global batch and must divide evenly over "
            f"{dist.world_size} processes."
        )
    return out_dir


def _draw(inputs: InputSource, opts: QATOptions, eval_source: Optional[InputSource]) -> tuple[Tensor, Tensor]:
    """(held-out inputs, training inputs)."""
    if eval_source is None:
        return draw_inputs(inputs, opts.num_train, opts.eval_samples)
    _, train = draw_inputs(inputs, opts.num_train, 0)
    if opts.eval_samples == 0:
        return train[:0], train
    held = torch.cat([b.detach().cpu() for b in iter_batches(eval_source, opts.eval_samples, GENERATION_BATCH)])
    return held, train


def _build_discriminator(opts: QATOptions, given: Optional[nn.Module], sample: Tensor) -> Optional[nn.Module]:
    needed = opts.adv_weight > 0 or opts.loss == "perceptual-disc"
    if not needed:
        if given is not None:
            log.info("adv_weight=0 and loss=%r: the discriminator is not used.", opts.loss)
        return None
    if sample.dim() != 4:
        raise ConfigError(
            f"the adversarial term needs image outputs [B, C, H, W], got {tuple(sample.shape)}: "
            "set adv_weight=0 and loss='mse' for other outputs."
        )
    if given is None:
        log.info("no discriminator given: training a fresh PatchGAN critic (seed %d).", opts.seed)
        disc = fresh_discriminator(sample.shape[1], sample.shape[-1], seed=opts.seed)
    else:
        disc = copy.deepcopy(given)
    disc = disc.to(sample.device)
    check_discriminator(disc, sample)
    return disc.train()


def _fingerprint(config: QuantConfig, opts: QATOptions, float_sha: str, inputs_sha: str, disc: Optional[nn.Module],
                 vgg: Optional[nn.Module]) -> dict[str, str]:
    """What a resumed run must match: options, scheme, teacher, inputs, critic, VGG16."""
    return {
        "options": json_sha256(opts.training_dict()),
        "quant_config": json_sha256(config.to_dict()),
        "float_model": float_sha,
        "inputs": inputs_sha,
        "discriminator": module_sha256(disc) if disc is not None else "none",
        "vgg": module_sha256(vgg) if vgg is not None else "none",
    }


def validate_run(
    float_model: nn.Module,
    config: QuantConfig,
    inputs: InputSource,
    opts: QATOptions,
    dist: DistContext,
    discriminator: Optional[nn.Module],
    eval_source: Optional[InputSource],
) -> RunSetup:
    """Step 1: everything that can fail, before any file is written (then the main process
    writes the run record of a new run)."""
    device = _device(float_model, opts, dist)
    _explain_scaling(config, opts)
    vgg = None
    if opts.loss == "perceptual":
        vgg = load_vgg16_features(resolve_vgg16_weights(opts.vgg_weights)).to(device)
    out_dir = _check_options(float_model, opts, dist)
    float_model.to(device).eval()
    eval_in, train_in = _draw(inputs, opts, eval_source)
    inputs_sha = inputs_fingerprint(eval_in, train_in)
    if len(set(dist.gather_objects(inputs_sha))) > 1:
        raise ConfigError("the processes drew different inputs: give every process the same inputs (same sampler seed).")
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        sample = generator_image(float_model(train_in[:2].to(device)))
    disc = _build_discriminator(opts, discriminator, sample)
    float_sha = module_sha256(float_model)
    fingerprint = _fingerprint(config, opts, float_sha, inputs_sha, disc, vgg)
    resuming = out_dir is not None and check_run_dir(out_dir, fingerprint, opts.resume)
    dist.barrier()  # every process has checked before the main one writes
    if out_dir is not None and dist.is_main and not resuming:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_run_record(out_dir, fingerprint, {"options": opts.to_dict(), "quant_config": config.to_dict()})
    return RunSetup(device, out_dir, vgg, eval_in, train_in, sample, disc, float_sha, fingerprint, resuming)
