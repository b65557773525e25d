"""Where the generators of a reproduce run come from: the packaged demo zoo or user checkpoints.

Either way a model arrives as `ModelData`: the float generator, a discriminator for QAT (or
None: QAT then trains a fresh critic), its inputs and real images, and an identity (content
hashes) that enters every row's cache key, so new checkpoints re-run their rows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torch import Tensor, nn

from gan_brevitas.errors import ConfigError, GanBrevitasError
from gan_brevitas.inputs import InputSource, latent_sampler, load_image_folder
from gan_brevitas.models.registry import architecture
from gan_brevitas.qat.checkpoint import module_sha256, tensor_sha256

log = logging.getLogger(__name__)


@dataclass
class ModelData:
    """A float generator and the data its rows need.

    Attributes:
        name: the paper model ("stylegan", "sagan", "cyclegan").
        model: the float generator, eval mode.
        discriminator: the critic QAT trains alongside; None: QAT builds a fresh one.
        train_inputs: ``seed -> InputSource`` for calibration and training.
        eval_inputs: ``(n, seed) -> inputs`` held out for the metrics.
        real_images: ``(n, seed) -> images`` for FID, or None when there are none.
        identity: content hashes of everything above that is not a seed (the cache key's share).
        description: one line for RESULTS.md.
    """

    name: str
    model: nn.Module
    discriminator: nn.Module | None
    train_inputs: Callable[[int], InputSource]
    eval_inputs: Callable[[int, int], Tensor]
    real_images: Callable[[int, int], Tensor] | None
    identity: dict[str, str]
    description: str


@dataclass(frozen=True)
class UserData:
    """Folders of images that go with user checkpoints (``--images``, ``--eval-images``, ``--real``)."""

    images: str | None = None
    eval_images: str | None = None
    real: str | None = None


def demo_model(name: str) -> ModelData:
    """The packaged demo generator ``name`` with its discriminator, inputs and real images."""
    from gan_brevitas.demo import zoo

    model = zoo.load_demo_generator(name)
    try:
        discriminator: nn.Module | None = zoo.load_demo_discriminator(name)
    except GanBrevitasError as err:
        log.warning("demo %s discriminator unavailable (%s): QAT trains a fresh critic", name, err)
        discriminator = None

    def real(n: int, seed: int) -> Tensor:
        try:
            return zoo.real_images(name, n, seed=seed)
        except ConfigError as err:
            raise ConfigError(f"{err}. The demo has fewer real images than this profile's FID asks for: "
                              "lower [eval] n_real, or run --profile cpu.") from None

    return ModelData(
        name=name,
        model=model,
        discriminator=discriminator,
        train_inputs=lambda seed: zoo.demo_sampler(name, seed=seed),
        eval_inputs=lambda n, seed: zoo.demo_inputs(name, n, seed=seed),
        real_images=real,
        identity={
            "source": "demo",
            "generator": module_sha256(model),
            "discriminator": module_sha256(discriminator) if discriminator is not None else "none",
        },
        description=f"packaged demo generator `{name}` (gan_brevitas/demo/checkpoints, {type(model).__name__})",
    )


def checkpoint_model(name: str, path: str, data: UserData) -> ModelData:
    """A user checkpoint of paper model ``name`` (loaded strictly by `recipes.load_generator`).

    Latent generators get seeded standard normal latents. Image-to-image generators take
    ``data.images`` for calibration / training and ``data.eval_images`` (default: the same
    folder) for the metrics. FID needs ``data.real``; without it only qFID and PSNR are measured.
    """
    from gan_brevitas import recipes

    build = architecture(name).inference_kwargs  # same inputs -> same images
    model = recipes.load_generator(name, path, **build)
    size = getattr(model, "image_size", None)
    identity = {"source": "checkpoint", "generator": module_sha256(model)}
    if getattr(model, "input_kind", "latent") == "image":
        if data.images is None:
            raise ConfigError(f"{name} translates images: give its calibration / training images with --images DIR.")
        train = load_image_folder(data.images, size)
        held_out = train if data.eval_images is None else load_image_folder(data.eval_images, size)
        identity["images"] = tensor_sha256([("train", train), ("eval", held_out)])

        def train_inputs(seed: int) -> InputSource:
            return train

        def eval_inputs(n: int, seed: int) -> Tensor:
            if len(held_out) < n:
                raise ConfigError(f"the evaluation images hold {len(held_out)} images, the profile asks for "
                                  f"n={n}: add images or lower [eval] n.")
            return held_out[:n]
    else:
        dim = model.latent_dim

        def train_inputs(seed: int) -> InputSource:
            return latent_sampler(dim, seed=seed)

        def eval_inputs(n: int, seed: int) -> Tensor:
            return latent_sampler(dim, seed=seed)(n)

    real_images = None
    if data.real is not None:
        real = load_image_folder(data.real, size)
        identity["real"] = tensor_sha256([("real", real)])

        def real_images(n: int, seed: int) -> Tensor:
            return real[:n]

    return ModelData(
        name=name,
        model=model,
        discriminator=None,
        train_inputs=train_inputs,
        eval_inputs=eval_inputs,
        real_images=real_images,
        identity=identity,
        description=f"checkpoint `{Path(path).name}` ({type(model).__name__})"
        + ("" if data.real is not None else "; no --real images, so no FID"),
    )
