"""Every file gan-brevitas writes goes through here: checked first, then written atomically.

- :func:`check_output_path` is the one output-path check. A target must be a regular file or
  absent, its directory must exist (or be creatable) and be writable, and, when the caller
  knows roughly how many bytes it will write, the disk must have room. Symbolic links, device
  nodes, FIFOs and directories are refused: ``os.replace`` would replace the link or the node
  itself. Commands call it for every output BEFORE any compute, so a bad path fails in seconds,
  not after an hours-long run.
- :func:`atomic_write` writes through a uniquely named temporary file in the target's directory
  (``.NAME.XXXXXXXX.tmp``) and ``os.replace``: a reader sees the old file or the new one, two
  writers never share a temporary file, and any failure (a full disk included) removes the
  temporary file and leaves the old target byte-identical.
- :func:`remove_stale_temporaries` deletes temporary files of that pattern left by a process
  that was killed (SIGKILL) before it could clean up; run directories call it when they start.
- :func:`staging_directory` collects a job's several outputs and moves them into place only
  when the job has finished, so an interrupted job never leaves new files beside old ones.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Optional

from gan_brevitas.errors import OutputPathError

TEMP_SUFFIX = ".tmp"
STAGING_PREFIX = ".gan-brevitas-staging-"
#: Kept free beyond a write's own estimate (file-system metadata, other writers).
FREE_SPACE_MARGIN = 16 * 2**20


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device node"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _check_target(path: Path, what: str) -> None:
    """Raise unless ``path`` is absent or a writable regular file (a link is never followed)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISREG(info.st_mode):
        raise OutputPathError(
            f"{what} {path} exists and is {_kind(info.st_mode)}; gan-brevitas only replaces regular "
            "files, so nothing was written: give the path of a new or regular file."
        )
    if not os.access(path, os.W_OK):
        raise OutputPathError(
            f"{what} {path} is read-only; nothing was written: make it writable or choose another path."
        )


def _free_bytes(directory: Path) -> int:
    return shutil.disk_usage(directory).free


def check_output_path(
    path: str | os.PathLike[str],
    *,
    what: str = "output",
    expected_bytes: int = 0,
    create_parent: bool = False,
) -> Path:
    """The output path as a Path, after checking that it can be written; OutputPathError if not.

    Args:
        path: the file to be written.
        what: how the message names the file ("output", "--out", "checkpoint", ...).
        expected_bytes: an estimate of the file's size; the disk must hold it plus a margin.
        create_parent: create a missing directory (run directories) instead of refusing.
    """
    path = Path(path).expanduser()
    if path.name in ("", ".", ".."):
        raise OutputPathError(f"{what} {str(path)!r} names a directory, not a file: add a file name.")
    parent = path.parent
    if create_parent:
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise OutputPathError(f"cannot create the directory {parent} for {what} {path}: {err.strerror}.") from None
    if not parent.exists():
        raise OutputPathError(f"cannot write {what} {path}: directory {parent} does not exist; create it first.")
    if not parent.is_dir():
        raise OutputPathError(f"cannot write {what} {path}: {parent} is not a directory.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputPathError(
            f"cannot write {what} {path}: directory {parent} is not writable (read-only or not yours); "
            "choose another output directory."
        )
    _check_target(path, what)
    if expected_bytes > 0:
        free = _free_bytes(parent)
        if free < expected_bytes + FREE_SPACE_MARGIN:
            raise OutputPathError(
                f"not enough disk space for {what} {path}: the disk holding {parent} has "
                f"{free / 2**20:.1f} MiB free, about {(expected_bytes + FREE_SPACE_MARGIN) / 2**20:.1f} MiB "
                "are needed; free some space or write elsewhere."
            )
    return path


def _default_mode() -> int:
    """0o666 minus the process umask: what ``open(path, "w")`` would give (mkstemp gives 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_error(err: BaseException, path: Path) -> Optional[OutputPathError]:
    """The OutputPathError for a failed write of ``path`` when ``err`` (or what caused it, as
    libraries wrap OS errors) is an OSError such as a full disk; None for other errors."""
    seen = 0
    while err is not None and not isinstance(err, OSError) and seen < 8:
        err, seen = err.__cause__ or err.__context__, seen + 1
    if not isinstance(err, OSError):
        return None
    return _disk_error(err, Path(path))


def _disk_error(err: OSError, path: Path) -> OutputPathError:
    if err.errno == errno.ENOSPC:
        return OutputPathError(
            f"the disk holding {path.parent} is full (no space left while writing {path}); the earlier "
            f"{path.name} (if any) is unchanged: free some space or write elsewhere."
        )
    return OutputPathError(f"writing {path} failed: {err.strerror or err}; the earlier file (if any) is unchanged.")


def atomic_write(
    path: str | os.PathLike[str],
    write: Callable[[str], object],
    mode: Optional[int] = None,
    *,
    what: str = "output",
) -> Path:
    """Call ``write(temporary_path)``, then move the file onto ``path`` with ``os.replace``.

    The temporary file has a unique name in the same directory (``os.replace`` is atomic only
    within one file system) and gets ``mode`` (default: what the umask allows, like any new
    file). The target is checked before and again just before the move, so a symlink or device
    node put there meanwhile is refused, not replaced. On any error the temporary file is
    removed; a full disk or another OS error becomes an OutputPathError naming the disk.
    """
    path = check_output_path(path, what=what, create_parent=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    os.close(handle)
    try:
        write(temporary)
        os.chmod(temporary, _default_mode() if mode is None else mode)
        _check_target(path, what)
        os.replace(temporary, path)
    except OSError as err:
        Path(temporary).unlink(missing_ok=True)
        raise _disk_error(err, path) from err
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *, what: str = "output") -> Path:
    """Write ``data`` to ``path`` atomically (flushed to disk before the rename)."""

    def write(temporary: str) -> None:
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())

    return atomic_write(path, write, what=what)


def atomic_write_text(path: str | os.PathLike[str], text: str, *, what: str = "output") -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"), what=what)


def remove_stale_temporaries(directory: str | os.PathLike[str], names: tuple[str, ...] = ()) -> list[Path]:
    """Delete temporary files that :func:`atomic_write` left in ``directory`` when its process was
    killed (``.NAME.*.tmp``; only for the given NAMEs when ``names`` is not empty), and the
    fixed-name ``NAME.tmp`` files of older versions. Returns what was removed.

    Call it where one process owns the directory (a run directory at start), never where
    another writer may be mid-write.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    removed = []
    for entry in directory.iterdir():
        name = entry.name
        ours = name.startswith(".") and name.endswith(TEMP_SUFFIX) and name.count(".") >= 3
        legacy = name.endswith(TEMP_SUFFIX) and not name.startswith(".")
        if names:
            ours = ours and any(name.startswith(f".{n}.") for n in names)
            legacy = legacy and name[: -len(TEMP_SUFFIX)] in names
        if (ours or legacy) and entry.is_file() and not entry.is_symlink():
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


@contextlib.contextmanager
def staging_directory(out_dir: str | os.PathLike[str], last: tuple[str, ...] = ()) -> Iterator[Path]:
    """A private directory inside ``out_dir`` for a job's outputs, published on success.

    Files written into the yielded directory are moved into ``out_dir`` (each an atomic rename;
    the names in ``last``, e.g. the report that refers to the others, at the end) when the
    block ends without error; on any error,
    KeyboardInterrupt or SystemExit (SIGTERM in the CLI) the directory is removed and
    ``out_dir`` keeps its earlier files untouched. Staging directories left by a killed process
    are removed when the next job starts.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob(f"{STAGING_PREFIX}*"):
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=out_dir))
    try:
        yield staging
        publish(staging, out_dir, last)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def publish(staging: Path, out_dir: Path, last: tuple[str, ...] = ()) -> list[Path]:
    """Move every file of ``staging`` into ``out_dir`` (names in ``last`` at the end)."""
    files = sorted((p for p in staging.iterdir() if p.is_file()), key=lambda p: (p.name in last, p.name))
    for source in files:
        check_output_path(out_dir / source.name)
    moved = []
    for source in files:
        target = out_dir / source.name
        _check_target(target, "output")
        os.chmod(source, _default_mode())
        os.replace(source, target)
        moved.append(target)
    return moved
