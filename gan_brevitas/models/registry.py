"""The table of generator architectures by name, and the one function that builds them."""

from __future__ import annotations

import inspect
from typing import Any

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
