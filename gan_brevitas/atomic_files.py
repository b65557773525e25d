"""Writing files so that no reader ever sees half of one (a crash leaves the old file or none)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Optional


def umask_mode() -> int:
    """The mode a plain ``open(path, "w")`` would give a new file (0o666 less the umask)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write(path: Path, write: Callable[[str], None], mode: Optional[int] = None) -> None:
    """Call ``write(temporary_path)``, then move the file onto ``path`` with ``os.replace``.

    The temporary file sits in the same directory (``os.replace`` is atomic only within one file
    system) and gets ``mode``, by default the one the user's umask gives every other file they
    write (mkstemp and some writers create 0600). On any error the temporary file is removed
    and the error re-raised.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        write(temporary)
        os.chmod(temporary, umask_mode() if mode is None else mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
