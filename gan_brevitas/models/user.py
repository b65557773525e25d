"""A generator class of the user's, named on the command line as ``package.module:Class``.

`load_user_generator` imports the class (the user's own code, named by the user), builds it with
the given keyword arguments, loads a checkpoint into it strictly (safe loading, as for our
generators) and records the input shape the callers should build, so that calibration, metrics
and export treat it like one of ours.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from gan_brevitas.errors import CheckpointError, ConfigError
from gan_brevitas.models.load import load_state_dict_file

#: ``package.module:Class`` (dotted module path, colon, class name).
CLASS_SPEC = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")
MAX_KEYS_SHOWN = 10


def is_class_spec(text: str) -> bool:
    """True for ``module:Class`` names (as opposed to our architecture names)."""
    return CLASS_SPEC.fullmatch(text) is not None


def import_generator_class(spec: str) -> type[nn.Module]:
    """Import ``package.module:Class`` and check it is an ``nn.Module`` subclass."""
    if not is_class_spec(spec):
        raise ConfigError(f"--model {spec!r}: expected an architecture name or package.module:Class.")
    module_name, _, class_name = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(
            f"--model {spec}: cannot import module {module_name!r} ({err}); is its folder on "
            "PYTHONPATH (or the package installed)?"
        ) from None
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ConfigError(f"--model {spec}: {module_name} has no nn.Module subclass named {class_name!r}.")
    return cls


def parse_input_shape(text: str) -> tuple[int, ...]:
    """``"3,64,64"`` -> (3, 64, 64); ``"128"`` -> (128,): the shape of ONE input, no batch axis."""
    try:
        shape = tuple(int(part) for part in text.split(","))
    except ValueError:
        shape = ()
    if not shape or any(side <= 0 for side in shape):
        raise ConfigError(
            f"--input-shape {text!r}: give positive integers separated by commas, without the "
            "batch axis, e.g. 3,64,64 for images or 128 for latents."
        )
    return shape


def describe_inputs(model: nn.Module, shape: Sequence[int], kind: str) -> None:
    """Give ``model`` the attributes our callers read: ``input_kind``, ``input_shape`` and,
    when they apply, ``latent_dim`` / ``in_channels`` / ``image_size``."""
    model.input_kind = kind
    model.input_shape = tuple(int(side) for side in shape)
    if kind == "latent" and len(shape) == 1:
        model.latent_dim = int(shape[0])
    if kind == "image":
        if len(shape) != 3:
            raise ConfigError(f"image inputs need --input-shape C,H,W, got {','.join(map(str, shape))}.")
        model.in_channels = int(shape[0])
        model.image_size = int(shape[1]) if shape[1] == shape[2] else (int(shape[1]), int(shape[2]))


def load_user_generator(
    spec: str,
    checkpoint: str | os.PathLike[str],
    kwargs: Mapping[str, Any] | None = None,
) -> nn.Module:
    """Build ``spec``'s class with ``kwargs`` and load ``checkpoint`` into it strictly (eval mode)."""
    cls = import_generator_class(spec)
    try:
        model = cls(**dict(kwargs or {}))
    except TypeError as err:
        raise ConfigError(f"--model {spec}: cannot build it with {dict(kwargs or {})}: {err}; "
                          "pass its constructor arguments with --model-kwargs JSON.") from None
    file = Path(checkpoint)
    state = load_state_dict_file(file)
    expected = model.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    wrong = [f"{key} {list(state[key].shape)} vs {list(expected[key].shape)}"
             for key in expected if key in state and state[key].shape != expected[key].shape]
    if missing or unexpected or wrong:
        parts = [f"{len(keys)} {what}: {', '.join(keys[:MAX_KEYS_SHOWN])}"
                 for what, keys in (("missing keys", missing), ("unexpected keys", unexpected),
                                    ("shape mismatches (file vs model)", wrong)) if keys]
        raise CheckpointError(
            f"{file} does not match {spec} built with {dict(kwargs or {})}: " + "; ".join(parts)
            + ". Pass the constructor arguments it was trained with (--model-kwargs JSON)."
        )
    model.load_state_dict(state, strict=True)
    return model.eval()
