"""Backends: the toolkits that hold a quantized generator (Brevitas, NVIDIA ModelOpt).

Each implements `Backend` in its own module (`brevitas`, `modelopt`); the rest of the package
asks `backend_for(model)` (or `backend_for_file(path)`) and never checks a model's type.
Importing this package never imports ModelOpt: a model can hold ModelOpt quantizers only if
ModelOpt was imported already, and a file names its backend in its metadata.
"""

from __future__ import annotations

import os

from torch import nn

from gan_brevitas.backends.base import (
    MODELOPT_FILE_FORMAT,
    MODELOPT_INSTALL,
    Backend,
    is_modelopt_model,
    read_file_metadata,
)


def backend_for(model: nn.Module) -> Backend:
    """The backend that holds ``model``'s quantizers (Brevitas for anything else)."""
    if is_modelopt_model(model):
        from gan_brevitas.backends.modelopt import BACKEND
    else:
        from gan_brevitas.backends.brevitas import BACKEND
    return BACKEND


def backend_for_file(path: str | os.PathLike) -> Backend:
    """The backend that wrote the quantized generator file ``path`` (its ``format`` metadata)."""
    if read_file_metadata(path).get("format") == MODELOPT_FILE_FORMAT:
        from gan_brevitas.backends.modelopt import BACKEND
    else:
        from gan_brevitas.backends.brevitas import BACKEND
    return BACKEND


__all__ = [
    "MODELOPT_INSTALL",
    "Backend",
    "backend_for",
    "backend_for_file",
    "is_modelopt_model",
    "read_file_metadata",
]
