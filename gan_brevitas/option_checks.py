"""The field checks every options dataclass runs in ``__post_init__``, with one wording.

Each check reads the named fields of an options object and raises `ConfigError` naming the
field, the value it got and what it accepts. ``bool`` is refused where an integer is asked
(``True`` is an ``int`` to Python, never a sample count to a user).
"""

from __future__ import annotations

import math
from typing import Any

from gan_brevitas.errors import ConfigError


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_positive_ints(options: object, *names: str) -> None:
    """Each named field is an integer >= 1."""
    for name in names:
        value = getattr(options, name)
        if not _is_int(value) or value < 1:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}.")


def check_non_negative_ints(options: object, *names: str) -> None:
    """Each named field is an integer >= 0."""
    for name in names:
        value = getattr(options, name)
        if not _is_int(value) or value < 0:
            raise ConfigError(f"{name} must be a non-negative integer, got {value!r}.")


def check_ints(options: object, *names: str) -> None:
    """Each named field is an integer (a seed: any sign)."""
    for name in names:
        value = getattr(options, name)
        if not _is_int(value):
            raise ConfigError(f"{name} must be an integer, got {value!r}.")


def check_non_negative_numbers(options: object, *names: str) -> None:
    """Each named field is a finite number >= 0."""
    for name in names:
        value = getattr(options, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ConfigError(f"{name} must be a finite number >= 0, got {value!r}.")


def check_flags(options: object, *names: str, optional: tuple[str, ...] = ()) -> None:
    """Each named field is True or False (or None, for the names in ``optional``)."""
    for name in names:
        value = getattr(options, name)
        if not isinstance(value, bool) and not (value is None and name in optional):
            raise ConfigError(f"{name} must be True or False, got {value!r}.")
