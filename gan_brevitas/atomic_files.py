"""Writing files so that no reader ever sees half of one (a crash leaves the old file or none)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: Path, write: Callable[[str], None], mode: int = 0o644) -> None:
    """Call ``write(temporary_path)``, then move the file onto ``path`` with ``os.replace``.

    The temporary file sits in the same directory (``os.replace`` is atomic only within one file
    system) and gets ``mode`` (mkstemp creates 0600; checkpoints and weights are package data).
    On any error the temporary file is removed and the error re-raised.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        write(temporary)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
