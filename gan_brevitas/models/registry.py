"""The table of generator architectures by name, and the one function that builds them."""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn

from gan_brevitas.errors import ConfigError
from gan_brevitas.models.cyclegan import ResnetGenerator
from gan_brevitas.models.sagan import Generator as SAGANGenerator
from gan_brevitas.models.stylegan import StyledGenerator

#: Architecture name -> generator class. Names are what users type (CLI, recipes, configs).
GENERATORS: dict[str, type[nn.Module]] = {
    "stylegan": StyledGenerator,
    "sagan": SAGANGenerator,
    "cyclegan": ResnetGenerator,
}


def generator_class(name: str) -> type[nn.Module]:
    """The class registered under ``name``; ConfigError listing the known names otherwise."""
    try:
        return GENERATORS[name]
    except KeyError:
        raise ConfigError(
            f"unknown generator {name!r}; choose one of {sorted(GENERATORS)}"
        ) from None


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
