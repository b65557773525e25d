"""Train the small demo generators whose checkpoints ship in ``gan_brevitas/demo/checkpoints``.

    python -m tools.train_demo --model stylegan|sagan|cyclegan [--steps N] [--seed 0]
                                      [--out DIR] [--state-dir DIR] [--resume]

No public checkpoint can be downloaded on our machines, so the project trains its own, small
(same classes as :mod:`gan_brevitas.models`, narrower, 32 px) and on data that ships with PyPI
packages (:mod:`gan_brevitas.demo.data`). Each recipe was picked to train reliably in about a
quarter of an hour on one CPU core of a shared machine:

* ``stylegan``: StyledGenerator on the 5,000 MNIST digits; non-saturating logistic loss with a
  lazy R1 penalty on reals, Adam (0.0, 0.99), mapping network at 1/100 of the generator's
  learning rate (rosinality's recipe, trained directly at 32 px), EMA of the generator weights.
  Trained with random noise, saved with ``noise_mode="const"`` (demo inference is
  deterministic).
* ``sagan``: SAGAN Generator on the same digits; non-saturating loss with R1 on reals, Adam
  (0.5, 0.999), EMA of the generator weights whose BatchNorm statistics are re-estimated for
  the averaged weights before saving.
* ``cyclegan``: two ResnetGenerators, gravel -> brick and back, two PatchGANs; LSGAN loss, cycle
  loss 10, identity loss 5, Adam 2e-4 (0.5, 0.999), learning rate decayed linearly to 0 over the
  second half (junyanz's recipe). Only gravel -> brick and its brick discriminator are saved.

What made the digit GANs train on a CPU budget: the discriminator (no spectral norm, R1 only,
a minibatch-stddev channel) learns 10x slower than the generator. With spectral norm on the
discriminator and equal learning rates it won within a few hundred steps (its loss near 0) and
the generators collapsed to one or two images, whatever the loss (hinge or logistic), the
generator's own spectral norm, initialisation or attention (all tried at 32 and 64 px). MSGAN's
mode-seeking term (``mode_seeking``, weight 0.2) keeps different latents giving different images.

StyleGAN and SAGAN use :class:`~gan_brevitas.models.discriminators.ConvDiscriminator` (with
``spectral=False``), CycleGAN :class:`~gan_brevitas.models.discriminators.NLayerDiscriminator`.

Everything is seeded (parameters from ``torch.manual_seed(seed)``, data batches from a private
generator). A training state (all networks, optimizers, RNG states, loss log, elapsed time) is
written atomically every ``checkpoint_every`` steps to ``--state-dir``; ``--resume`` continues
from it. At the end the generator and discriminator are written as safetensors with a JSON
(build kwargs, command, seed, steps, wall time, losses, FID vs real images with the offline
demo CNN) into ``--out``.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import logging
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import Tensor, nn
from torchvision.utils import save_image
from tqdm import tqdm

from gan_brevitas.atomic_files import atomic_write
from gan_brevitas.demo.data import mnist_digits, translation_domains
from gan_brevitas.demo.zoo import (
    CHECKPOINT_DIR,
    DEMO_MODELS,
    IMAGE_SIZE,
    TRAIN_COMMAND,
    checkpoint_paths,
    heldout_translation_images,
    latent_dim,
    latents,
    real_images,
)
from gan_brevitas.errors import CheckpointError, ConfigError
from gan_brevitas.harness import machine_description
from gan_brevitas.metrics.extractors import demo_cnn_spec, weights_sha256
from gan_brevitas.metrics.fid import fid, generate
from gan_brevitas.models.discriminators import build_discriminator
from gan_brevitas.models.registry import build_generator

__all__ = ["RECIPES", "TrainConfig", "export", "main", "train"]

logger = logging.getLogger(__name__)

DEFAULT_STATE_DIR = Path(tempfile.gettempdir()) / "gan-brevitas-train"
FID_SAMPLES = 1000
GRID_SAMPLES = 64
BN_RECALIBRATION_BATCHES = 40
EMA_WARMUP = 10  # EMA decay ramps as (1 + step) / (EMA_WARMUP + step) up to ema_decay
LOSS_KINDS = ("logistic", "hinge", "lsgan_cycle")


@dataclass(frozen=True)
class TrainConfig:
    """One demo model's architecture and training hyper-parameters (RECIPES holds the defaults).

    Attributes:
        model: demo model name (the generator architecture).
        generator_kwargs: build_generator kwargs, as saved (and used at inference).
        discriminator_kind / discriminator_kwargs: build_discriminator arguments.
        loss: "logistic" (non-saturating), "hinge", or "lsgan_cycle" (CycleGAN).
        steps / batch_size / seed: length, batch and seed of the run.
        lr_g / lr_d / betas: Adam settings of generator and discriminator.
        mapping_lr_mult: learning-rate factor of the StyleGAN mapping network.
        r1_gamma / r1_every: R1 penalty weight on reals (0 = off), applied lazily every n steps.
        ema_decay: decay of the generator weight EMA (0 = no EMA; the raw generator is saved).
        mode_seeking: weight of MSGAN's mode-seeking term in the generator loss (0 = off).
        lambda_cycle / lambda_identity: CycleGAN loss weights.
        decay_start: fraction of the steps after which learning rates decay linearly to 0.
        train_noise_mode: StyleGAN noise during training (the saved kwargs say "const").
        n_translation_crops: crops per CycleGAN domain in the training set.
        log_every / checkpoint_every: steps between loss log entries / training states.
    """

    model: str
    generator_kwargs: Mapping[str, Any]
    discriminator_kind: str
    discriminator_kwargs: Mapping[str, Any]
    loss: str
    steps: int
    batch_size: int
    lr_g: float
    lr_d: float
    betas: tuple[float, float]
    seed: int = 0
    mapping_lr_mult: float = 1.0
    r1_gamma: float = 0.0
    r1_every: int = 4
    ema_decay: float = 0.0
    mode_seeking: float = 0.0
    lambda_cycle: float = 10.0
    lambda_identity: float = 5.0
    decay_start: float = 1.0
    train_noise_mode: str | None = None
    n_translation_crops: int = 4000
    log_every: int = 50
    checkpoint_every: int = 200

    def __post_init__(self) -> None:
        if self.model not in DEMO_MODELS:
            raise ConfigError(f"model must be one of {DEMO_MODELS}, got {self.model!r}")
        if self.loss not in LOSS_KINDS:
            raise ConfigError(f"loss must be one of {LOSS_KINDS}, got {self.loss!r}")
        for name in ("steps", "batch_size", "r1_every", "log_every", "checkpoint_every", "n_translation_crops"):
            if getattr(self, name) < 1:
                raise ConfigError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        if min(self.lr_g, self.lr_d) <= 0 or not 0.0 <= self.ema_decay < 1.0 or not 0.0 <= self.decay_start <= 1.0:
            raise ConfigError(
                f"TrainConfig needs lr_g, lr_d > 0, 0 <= ema_decay < 1 and 0 <= decay_start <= 1; got "
                f"lr_g={self.lr_g}, lr_d={self.lr_d}, ema_decay={self.ema_decay}, decay_start={self.decay_start}"
            )
        object.__setattr__(self, "generator_kwargs", dict(self.generator_kwargs))
        object.__setattr__(self, "discriminator_kwargs", dict(self.discriminator_kwargs))
        object.__setattr__(self, "betas", tuple(self.betas))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (lists for tuples)."""
        return json.loads(json.dumps(asdict(self)))


#: The recipes that produced the committed checkpoints (``--steps`` / ``--seed`` override).
RECIPES: dict[str, TrainConfig] = {
    "stylegan": TrainConfig(
        model="stylegan",
        # Blocks 0-3 (4 ... 32 px) do the work; the unused blocks 4-8 exist only so that the
        # reference layout loads strictly, so they are made 8 channels wide (a small file).
        generator_kwargs={
            "code_dim": 128,
            "n_mlp": 4,
            "size": IMAGE_SIZE,
            "channels": [64, 64, 64, 32, 8, 8, 8, 8, 8],
            "noise_mode": "const",
        },
        discriminator_kind="conv",
        discriminator_kwargs={"image_size": IMAGE_SIZE, "ch": 16, "spectral": False},
        loss="logistic",
        steps=6000,
        batch_size=16,
        lr_g=2e-3,
        lr_d=2e-4,
        betas=(0.0, 0.99),
        mapping_lr_mult=0.01,
        r1_gamma=1.0,
        ema_decay=0.999,
        mode_seeking=0.2,
        train_noise_mode="random",
    ),
    "sagan": TrainConfig(
        model="sagan",
        generator_kwargs={"image_size": IMAGE_SIZE, "z_dim": 128, "conv_dim": 32},
        discriminator_kind="conv",
        discriminator_kwargs={"image_size": IMAGE_SIZE, "ch": 16, "spectral": False},
        loss="logistic",
        steps=2000,
        batch_size=32,
        lr_g=1e-3,
        lr_d=1e-4,
        betas=(0.5, 0.999),
        r1_gamma=1.0,
        ema_decay=0.999,
        mode_seeking=0.2,
    ),
    "cyclegan": TrainConfig(
        model="cyclegan",
        generator_kwargs={"ngf": 16, "n_blocks": 6, "image_size": IMAGE_SIZE},
        discriminator_kind="patch",
        discriminator_kwargs={"ndf": 32, "n_layers": 2},
        loss="lsgan_cycle",
        steps=2000,
        batch_size=8,
        lr_g=2e-4,
        lr_d=2e-4,
        betas=(0.5, 0.999),
        decay_start=0.5,
    ),
}


# --------------------------------------------------------------------------- state


@dataclass
class Session:
    """Everything a training run changes; a training-state file holds exactly this.

    ``nets``: "G" and "D" always (the saved pair); "G_ema" with EMA; CycleGAN adds "F"
    (brick -> gravel) and "D_X" (judges gravel), in the CycleGAN paper's notation (G: X -> Y,
    F: Y -> X, D judges Y = brick).
    """

    config: TrainConfig
    nets: dict[str, nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]
    data_rng: torch.Generator
    step: int = 0
    elapsed_s: float = 0.0
    sessions: int = 1
    loss_log: list[dict[str, float]] = field(default_factory=list)
    invocations: list[str] = field(default_factory=list)


def _image(output: Tensor | tuple[Tensor, ...]) -> Tensor:
    """The image of a generator output (SAGAN returns (image, attn1, attn2))."""
    return output[0] if isinstance(output, tuple) else output


def _adam(params: list[dict[str, Any]], config: TrainConfig) -> torch.optim.Adam:
    for group in params:
        group["base_lr"] = group["lr"]
    return torch.optim.Adam(params, betas=config.betas)


def _new_generator(config: TrainConfig) -> nn.Module:
    generator = build_generator(config.model, **config.generator_kwargs)
    if config.train_noise_mode is not None:
        generator.noise_mode = config.train_noise_mode
    return generator


def new_session(config: TrainConfig) -> Session:
    """Freshly initialised networks and optimizers, seeded with ``config.seed``."""
    torch.manual_seed(config.seed)
    nets: dict[str, nn.Module] = {
        "G": _new_generator(config),
        "D": build_discriminator(config.discriminator_kind, **config.discriminator_kwargs),
    }
    if config.model == "cyclegan":
        nets["F"] = _new_generator(config)
        nets["D_X"] = build_discriminator(config.discriminator_kind, **config.discriminator_kwargs)
    if config.ema_decay > 0:
        nets["G_ema"] = copy.deepcopy(nets["G"]).eval()
        nets["G_ema"].requires_grad_(False)

    g_params = list(nets["G"].parameters()) + (list(nets["F"].parameters()) if "F" in nets else [])
    if config.mapping_lr_mult != 1.0:  # StyleGAN: the mapping network learns 100x slower
        mapping = {id(p) for p in nets["G"].style.parameters()}
        g_groups = [
            {"params": [p for p in g_params if id(p) not in mapping], "lr": config.lr_g},
            {"params": [p for p in g_params if id(p) in mapping], "lr": config.lr_g * config.mapping_lr_mult},
        ]
    else:
        g_groups = [{"params": g_params, "lr": config.lr_g}]
    d_params = list(nets["D"].parameters()) + (list(nets["D_X"].parameters()) if "D_X" in nets else [])
    optimizers = {"G": _adam(g_groups, config), "D": _adam([{"params": d_params, "lr": config.lr_d}], config)}
    return Session(config, nets, optimizers, torch.Generator().manual_seed(config.seed))


def state_path(state_dir: Path, model: str) -> Path:
    return state_dir / f"{model}_train_state.pt"


def save_session(session: Session, path: Path) -> None:
    """Write the training state atomically (torch.save of tensors, numbers and strings only)."""
    content = {
        "config": session.config.to_dict(),
        "nets": {name: net.state_dict() for name, net in session.nets.items()},
        "optimizers": {name: opt.state_dict() for name, opt in session.optimizers.items()},
        "data_rng": session.data_rng.get_state(),
        "torch_rng": torch.get_rng_state(),
        "step": session.step,
        "elapsed_s": session.elapsed_s,
        "sessions": session.sessions,
        "loss_log": session.loss_log,
        "invocations": session.invocations,
    }
    atomic_write(path, lambda temporary: torch.save(content, temporary))
    logger.info("saved training state at step %d to %s", session.step, path)


def load_session(config: TrainConfig, path: Path) -> Session:
    """Rebuild the session saved at ``path``; its config must equal ``config`` except ``steps``."""
    if not path.is_file():
        raise CheckpointError(f"--resume: no training state at {path}; run without --resume to start afresh")
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch.load raises many types for a damaged file
        raise CheckpointError(f"{path} is not a readable training state ({type(err).__name__}: {err})") from err
    # A field added to TrainConfig after the state was saved counts as its default value.
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig) if f.default is not dataclasses.MISSING}
    saved, wanted = {**defaults, **content["config"]}, config.to_dict()
    differing = sorted(key for key in wanted if key != "steps" and saved.get(key) != wanted[key])
    if differing:
        raise CheckpointError(
            f"{path} was trained with other settings ({', '.join(differing)} differ); resume with the "
            "same recipe and seed, or start afresh without --resume"
        )
    session = new_session(config)
    for name, net in session.nets.items():
        net.load_state_dict(content["nets"][name], strict=True)
    for name, optimizer in session.optimizers.items():
        optimizer.load_state_dict(content["optimizers"][name])
    session.data_rng.set_state(content["data_rng"])
    torch.set_rng_state(content["torch_rng"])
    session.step = int(content["step"])
    session.elapsed_s = float(content["elapsed_s"])
    session.sessions = int(content["sessions"]) + 1
    session.loss_log = list(content["loss_log"])
    session.invocations = list(content.get("invocations", []))
    logger.info("resumed %s from step %d (%.0f s trained)", config.model, session.step, session.elapsed_s)
    return session


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class TrainingData:
    """Training images in [-1, 1]: ``domains`` is (digits,) or (gravel, brick)."""

    domains: tuple[Tensor, ...]

    def batch(self, batch_size: int, rng: torch.Generator) -> tuple[Tensor, ...]:
        """One batch per domain, drawn with replacement (domains drawn independently: unpaired)."""
        return tuple(images[torch.randint(len(images), (batch_size,), generator=rng)] for images in self.domains)


def training_data(config: TrainConfig) -> TrainingData:
    if config.model == "cyclegan":
        return TrainingData(translation_domains(IMAGE_SIZE, config.n_translation_crops, config.seed))
    digits, _ = mnist_digits(size=IMAGE_SIZE)
    return TrainingData((digits,))


# --------------------------------------------------------------------------- losses


def d_loss(kind: str, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Discriminator loss: non-saturating logistic or hinge."""
    if kind == "hinge":
        return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def g_loss(kind: str, fake_logits: Tensor) -> Tensor:
    """Generator loss: non-saturating logistic or hinge."""
    if kind == "hinge":
        return -fake_logits.mean()
    return F.softplus(-fake_logits).mean()


def r1_penalty(discriminator: nn.Module, real: Tensor) -> Tensor:
    """Mean squared norm of the gradient of D's logits with respect to real images (R1)."""
    real = real.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(discriminator(real).sum(), real, create_graph=True)
    return grad.pow(2).flatten(1).sum(1).mean()


def mode_seeking_loss(z: Tensor, images: Tensor, eps: float = 1e-5) -> Tensor:
    """MSGAN's mode-seeking term (Mao et al. 2019): 1 / (image distance / latent distance).

    The batch is split in two halves that are paired; the term is small when different latents
    give different images, so minimising it keeps the generator from collapsing to one output.
    """
    half = len(z) // 2
    image_distance = (images[:half] - images[half : 2 * half]).abs().mean()
    latent_distance = (z[:half] - z[half : 2 * half]).abs().mean()
    return 1.0 / (image_distance / latent_distance + eps)


def lsgan(logits: Tensor, target_real: bool) -> Tensor:
    """Least-squares GAN loss against target 1 (real) or 0 (fake)."""
    return F.mse_loss(logits, torch.full_like(logits, 1.0 if target_real else 0.0))


@contextmanager
def frozen(*modules: nn.Module) -> Iterator[None]:
    """Turn off parameter gradients of ``modules`` (the discriminators during a G step)."""
    flags = [(p, p.requires_grad) for module in modules for p in module.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model for parameters; buffers are copied."""
    for ema_p, p in zip(ema.parameters(), model.parameters()):
        ema_p.lerp_(p, 1.0 - decay)
    for ema_b, b in zip(ema.buffers(), model.buffers()):
        ema_b.copy_(b)


def lr_factor(step: int, config: TrainConfig) -> float:
    """1 until ``decay_start * steps``, then linearly down to 0 at ``steps`` (junyanz 'linear')."""
    start = config.decay_start * config.steps
    if step < start:
        return 1.0
    return max(0.0, 1.0 - (step - start) / max(1.0, config.steps - start))


# --------------------------------------------------------------------------- steps


def adversarial_step(session: Session, batch: tuple[Tensor, ...], step: int) -> dict[str, float]:
    """One D and one G update of an unconditional GAN (StyleGAN, SAGAN)."""
    config, nets, opts = session.config, session.nets, session.optimizers
    generator, discriminator = nets["G"], nets["D"]
    (real,) = batch
    z = torch.randn(len(real), generator.latent_dim)

    with torch.no_grad():
        fake = _image(generator(z))
    loss_d = d_loss(config.loss, discriminator(real), discriminator(fake))
    losses = {"d": loss_d.item()}
    if config.r1_gamma > 0 and step % config.r1_every == 0:
        r1 = r1_penalty(discriminator, real)
        loss_d = loss_d + 0.5 * config.r1_gamma * config.r1_every * r1
        losses["r1"] = r1.item()
    opts["D"].zero_grad(set_to_none=True)
    loss_d.backward()
    opts["D"].step()

    with frozen(discriminator):
        z = torch.randn(len(real), generator.latent_dim)
        fake = _image(generator(z))
        loss_g = g_loss(config.loss, discriminator(fake))
        if config.mode_seeking > 0:
            loss_g = loss_g + config.mode_seeking * mode_seeking_loss(z, fake)
    opts["G"].zero_grad(set_to_none=True)
    loss_g.backward()
    opts["G"].step()
    losses["g"] = loss_g.item()

    if "G_ema" in nets:
        decay = min(config.ema_decay, (1 + step) / (EMA_WARMUP + step))
        update_ema(nets["G_ema"], generator, decay)
    return losses


def cycle_step(session: Session, batch: tuple[Tensor, ...], step: int) -> dict[str, float]:
    """One CycleGAN update: G (gravel -> brick) and F (brick -> gravel) together, then D, D_X."""
    config, nets, opts = session.config, session.nets, session.optimizers
    g, f, d_y, d_x = nets["G"], nets["F"], nets["D"], nets["D_X"]
    real_x, real_y = batch

    with frozen(d_y, d_x):
        fake_y, fake_x = g(real_x), f(real_y)
        gan = lsgan(d_y(fake_y), True) + lsgan(d_x(fake_x), True)
        cycle = F.l1_loss(f(fake_y), real_x) + F.l1_loss(g(fake_x), real_y)
        identity = F.l1_loss(g(real_y), real_y) + F.l1_loss(f(real_x), real_x)
        loss_g = gan + config.lambda_cycle * cycle + config.lambda_identity * identity
    opts["G"].zero_grad(set_to_none=True)
    loss_g.backward()
    opts["G"].step()

    fake_y, fake_x = fake_y.detach(), fake_x.detach()
    loss_d_y = 0.5 * (lsgan(d_y(real_y), True) + lsgan(d_y(fake_y), False))
    loss_d_x = 0.5 * (lsgan(d_x(real_x), True) + lsgan(d_x(fake_x), False))
    opts["D"].zero_grad(set_to_none=True)
    (loss_d_y + loss_d_x).backward()
    opts["D"].step()
    return {
        "g_gan": gan.item(),
        "cycle": cycle.item(),
        "identity": identity.item(),
        "d": loss_d_y.item(),
        "d_x": loss_d_x.item(),
    }


#: Loss kind -> the function running one training step.
STEPS: dict[str, Callable[[Session, tuple[Tensor, ...], int], dict[str, float]]] = {
    "logistic": adversarial_step,
    "hinge": adversarial_step,
    "lsgan_cycle": cycle_step,
}


# --------------------------------------------------------------------------- training


def train(session: Session, state_file: Path, grid_file: Path | None = None) -> Session:
    """Run ``session`` up to ``config.steps``, logging losses and saving the state periodically."""
    config = session.config
    data = training_data(config)
    step_fn = STEPS[config.loss]
    for name, net in session.nets.items():
        net.train(name != "G_ema")
    window: dict[str, list[float]] = {}
    bar = tqdm(total=config.steps, initial=session.step, desc=f"training {config.model}", unit="step")
    started = time.perf_counter()
    with bar:
        while session.step < config.steps:
            factor = lr_factor(session.step, config)
            for optimizer in session.optimizers.values():
                for group in optimizer.param_groups:
                    group["lr"] = group["base_lr"] * factor
            losses = step_fn(session, data.batch(config.batch_size, session.data_rng), session.step)
            session.step += 1
            bar.update(1)
            for key, value in losses.items():
                window.setdefault(key, []).append(value)
            if session.step % config.log_every == 0 or session.step == config.steps:
                entry = {"step": session.step, **{k: round(sum(v) / len(v), 5) for k, v in window.items()}}
                session.loss_log.append(entry)
                window.clear()
                bar.set_postfix({k: v for k, v in entry.items() if k != "step"})
                logger.info("step %d %s", session.step, entry)
            if session.step % config.checkpoint_every == 0 or session.step == config.steps:
                session.elapsed_s += time.perf_counter() - started
                started = time.perf_counter()
                save_session(session, state_file)
                if grid_file is not None:
                    save_grid(config, final_generator(session), grid_file)
    session.elapsed_s += time.perf_counter() - started
    return session


@torch.no_grad()
def recalibrate_batch_norm(model: nn.Module, sample: Callable[[int], Tensor], batches: int, batch_size: int = 64) -> None:
    """Re-estimate BatchNorm running statistics of ``model`` (in place) as exact averages over
    ``batches`` generated batches: the EMA weights never ran with the statistics they inherit."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    try:
        for norm in norms:
            norm.reset_running_stats()
            norm.momentum = None  # cumulative average
        model.train()
        for _ in range(batches):
            model(sample(batch_size))
    finally:
        for norm, momentum in zip(norms, momenta):
            norm.momentum = momentum
        model.eval()


def final_generator(session: Session) -> nn.Module:
    """A copy of the generator to save, in eval mode with the inference kwargs.

    The EMA copy when there is one (with BatchNorm statistics re-estimated for its weights);
    StyleGAN gets the saved noise mode ("const").
    """
    config = session.config
    generator = copy.deepcopy(session.nets.get("G_ema", session.nets["G"])).eval()
    if "noise_mode" in config.generator_kwargs:
        generator.noise_mode = config.generator_kwargs["noise_mode"]
    if "G_ema" in session.nets:
        rng = torch.Generator().manual_seed(config.seed)
        recalibrate_batch_norm(
            generator, lambda n: torch.randn(n, generator.latent_dim, generator=rng), BN_RECALIBRATION_BATCHES
        )
    return generator


def evaluation_inputs(config: TrainConfig, n: int, seed: int = 0) -> Tensor:
    """The generator inputs the FID and grids use (as zoo.demo_inputs, without needing the JSON)."""
    if config.model == "cyclegan":
        return heldout_translation_images("gravel", n, seed)
    return latents(latent_dim(config.model, config.generator_kwargs), n, seed)


@torch.no_grad()
def save_grid(config: TrainConfig, generator: nn.Module, path: Path) -> None:
    """PNG grid: 64 samples (8 x 8), or for CycleGAN 4 pairs of rows, gravel inputs above outputs."""
    translation = config.model == "cyclegan"
    inputs = evaluation_inputs(config, GRID_SAMPLES // 2 if translation else GRID_SAMPLES)
    outputs = generate(generator, inputs, len(inputs), progress=False)
    if translation:
        outputs = torch.cat([torch.cat([inputs[i : i + 8], outputs[i : i + 8]]) for i in range(0, len(inputs), 8)])
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(outputs, str(path), nrow=8, normalize=True, value_range=(-1, 1), padding=1)


# --------------------------------------------------------------------------- export


def measure_fid(config: TrainConfig, generator: nn.Module, n: int = FID_SAMPLES) -> dict[str, Any]:
    """FID vs real images (demo CNN) of ``generator``, of a fresh generator of the same build,
    and, for CycleGAN, of the untranslated gravel inputs (the "do nothing" baseline)."""
    spec = demo_cnn_spec()
    inputs = evaluation_inputs(config, n)
    real = real_images(config.model, n)
    torch.manual_seed(config.seed + 1)
    untrained = build_generator(config.model, **config.generator_kwargs)
    result = {
        "fid": fid(generate(generator, inputs, n), real, spec).to_dict(),
        "fid_untrained": fid(generate(untrained, inputs, n), real, spec).to_dict(),
    }
    if config.model == "cyclegan":
        result["fid_inputs"] = fid(inputs, real, spec).to_dict()
    return result


def _save_state_dict(module: nn.Module, path: Path) -> None:
    state = {name: tensor.detach().contiguous().clone() for name, tensor in module.state_dict().items()}
    atomic_write(path, lambda temporary: save_file(state, temporary))


def reproducing_command(config: TrainConfig) -> str:
    """The fresh-run command that gives this result (a resumed run continues exactly: the state
    holds every RNG; only CycleGAN's learning-rate decay depends on the final step count)."""
    return f"{TRAIN_COMMAND} --model {config.model} --steps {config.steps} --seed {config.seed}"


def export(session: Session, out_dir: Path) -> dict[str, Any]:
    """Write ``{model}_G.safetensors``, ``{model}_D.safetensors`` and ``{model}.json`` to out_dir."""
    config = session.config
    started = time.perf_counter()
    paths = checkpoint_paths(config.model, out_dir)
    generator = final_generator(session)
    discriminator = copy.deepcopy(session.nets["D"]).eval()
    fids = measure_fid(config, generator)
    _save_state_dict(generator, paths["generator"])
    _save_state_dict(discriminator, paths["discriminator"])
    info: dict[str, Any] = {
        "model": config.model,
        "generator": {"name": config.model, "kwargs": dict(config.generator_kwargs)},
        "discriminator": {"kind": config.discriminator_kind, "kwargs": dict(config.discriminator_kwargs)},
        "command": reproducing_command(config),
        "invocations": session.invocations,
        "seed": config.seed,
        "steps": session.step,
        "wall_time_s": round(session.elapsed_s, 1),
        "sessions": session.sessions,
        "machine": machine_description(),
        "final_losses": {k: v for k, v in session.loss_log[-1].items() if k != "step"} if session.loss_log else {},
        **fids,
        "files": {
            kind: {"file": paths[kind].name, "bytes": paths[kind].stat().st_size, "sha256": weights_sha256(paths[kind])}
            for kind in ("generator", "discriminator")
        },
        "config": config.to_dict(),
        "loss_log": session.loss_log,
    }
    info["export_seconds"] = round(time.perf_counter() - started, 1)
    atomic_write(paths["info"], lambda temporary: Path(temporary).write_text(json.dumps(info, indent=2) + "\n"))
    logger.info(
        "wrote %s: FID %.2f (untrained %.2f), %.0f s training",
        paths["info"], info["fid"]["value"], info["fid_untrained"]["value"], session.elapsed_s,
    )  # fmt: skip
    return info


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    args_list = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, choices=DEMO_MODELS)
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the recipe's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=CHECKPOINT_DIR, help="where the checkpoint files go")
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR, help="training states and sample grids")
    parser.add_argument("--resume", action="store_true", help="continue from the training state in --state-dir")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (1: on a shared machine, 2 threads ran 7x slower than 1 while other "
        "processes competed for the cores, because the threads wait for each other)",
    )
    args = parser.parse_args(args_list)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)

    recipe = RECIPES[args.model]
    config = dataclasses.replace(recipe, seed=args.seed, steps=args.steps or recipe.steps)
    state_file = state_path(args.state_dir, args.model)
    session = load_session(config, state_file) if args.resume else new_session(config)
    if session.step > 0 and session.step >= config.steps:
        logger.info("the training state is already at step %d; exporting", session.step)
    session.config = config
    session.invocations.append(" ".join([TRAIN_COMMAND, *args_list]))
    grid_file = args.state_dir / f"{args.model}_samples.png"
    train(session, state_file, grid_file)
    export(session, args.out)
    logger.info("sample grid: %s", grid_file)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
