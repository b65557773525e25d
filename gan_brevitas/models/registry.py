"""The table of generator families: one `Architecture` entry holds everything the package knows
about a family (class, reference layout, input kind, size argument, checkpoint signature, constructor
inference and checks, inference settings, BRECQ blocks), and `build_generator` builds one.

Adding a family: its module (class, ``infer_kwargs``, optionally ``brecq_blocks``) and one
entry in `ARCHITECTURES`.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
from torch import Tensor, nn

from gan_brevitas.errors import ConfigError
from gan_brevitas.models import cyclegan, sagan, stylegan


@dataclass(frozen=True)
class Architecture:
    """One generator family.

    Attributes:
        name: what users type (CLI, recipe files, configs).
        generator: the class.
        reference: the public implementation whose parameter layout the class has.
        input_kind: "latent" (``latent_dim``) or "image" (``in_channels``, image-to-image).
        size_argument: the constructor argument of the output resolution.
        signature_key: a state_dict key only this family's checkpoints have.
        infer_kwargs: constructor arguments read off a checkpoint's shapes.
        inference_kwargs: constructor arguments for deterministic evaluation (the same input
            gives the same image: StyleGAN's constant noise).
        brecq_blocks: BRECQ's blocks as chains of module names; None: the generic rule of
            `gan_brevitas.ptq.blocks.default_blocks`.
        check_kwargs: ``check(file, kwargs, inferred)`` refuses constructor arguments the
            checkpoint cannot serve (StyleGAN: a size above the one it was trained at).
        latent_argument: the constructor argument of the latent size (None: image input).
    """

    name: str
    generator: type[nn.Module]
    reference: str
    input_kind: str
    size_argument: str
    signature_key: str
    infer_kwargs: Callable[[Mapping[str, Tensor]], dict[str, Any]]
    inference_kwargs: Mapping[str, Any] = field(default_factory=dict)
    brecq_blocks: Optional[Callable[[nn.Module], list[tuple[str, ...]]]] = None
    check_kwargs: Optional[Callable[[Any, Mapping[str, Any], Mapping[str, Any]], None]] = None
    latent_argument: Optional[str] = None


ARCHITECTURES: dict[str, Architecture] = {
    family.name: family
    for family in (
        Architecture("stylegan", stylegan.StyledGenerator, "rosinality/style-based-gan-pytorch", "latent", "size",
                     "generator.progression.0.conv1.input", stylegan.infer_kwargs, {"noise_mode": "const"},
                     stylegan.brecq_blocks, stylegan.check_kwargs, latent_argument="code_dim"),
        Architecture("sagan", sagan.Generator, "heykeetae/Self-Attention-GAN", "latent", "image_size",
                     "l1.0.module.weight_bar", sagan.infer_kwargs, brecq_blocks=sagan.brecq_blocks,
                     latent_argument="z_dim"),
        Architecture("cyclegan", cyclegan.ResnetGenerator, "junyanz/pytorch-CycleGAN-and-pix2pix", "image",
                     "image_size", "model.1.weight", cyclegan.infer_kwargs),
    )
}
#: Architecture name -> generator class.
GENERATORS: dict[str, type[nn.Module]] = {name: family.generator for name, family in ARCHITECTURES.items()}


def architecture(name: str) -> Architecture:
    """The family registered under ``name``; ConfigError naming the known ones otherwise."""
    try:
        return ARCHITECTURES[name]
    except (KeyError, TypeError):
        close = difflib.get_close_matches(str(name), list(ARCHITECTURES), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"unknown generator {name!r}{hint}; choose one of {sorted(ARCHITECTURES)}") from None


def architecture_of(model: nn.Module) -> Optional[Architecture]:
    """The family ``model`` belongs to, or None for any other generator."""
    for family in ARCHITECTURES.values():
        if isinstance(model, family.generator):
            return family
    return None


def generator_class(name: str) -> type[nn.Module]:
    """The class registered under ``name``; ConfigError listing the known names otherwise."""
    return architecture(name).generator


def build_generator(name: str, **kwargs: Any) -> nn.Module:
    """Build a freshly initialised generator ``name`` with constructor ``kwargs``.

    Unknown keyword arguments raise ConfigError naming the ones the class accepts. The model
    gets ``generator_spec = {"name": name, "kwargs": kwargs}`` so that it can be rebuilt (for
    example when a quantized copy is saved and loaded again).
    """
    cls = generator_class(name)
    signature = inspect.signature(cls)
    try:
        signature.bind(**kwargs)
    except TypeError as err:
        accepted = ", ".join(signature.parameters)
        raise ConfigError(
            f"bad arguments for generator {name!r}: {err}; it accepts: {accepted}"
        ) from None
    model = cls(**kwargs)
    model.generator_spec = {"name": name, "kwargs": dict(kwargs)}
    return model


def weight_bytes(name: str, **kwargs: Any) -> int:
    """Bytes of the parameters and buffers ``build_generator(name, **kwargs)`` would hold,
    computed on PyTorch's meta device (nothing is allocated), so a size read from an untrusted
    file can be checked before the model is built."""
    with torch.device("meta"):
        shell = build_generator(name, **kwargs)
    return sum(t.numel() * t.element_size() for t in (*shell.parameters(), *shell.buffers()))
