"""Copy the suite's checkpoints out of repository snapshots into the cache, and verify them.

    python -m benchmarks.suite.prepare --mirror-root DIR   # copy, then verify
    python -m benchmarks.suite.prepare                               # verify what is cached

Nothing is downloaded: ``--mirror-root`` is a folder of bare git snapshots of the source
repositories, one per repository, at ``<root>/<owner>+<name>/repo`` (a ``git clone --bare`` of
the repository there). Each
checkpoint is read by its recorded git blob id (``git cat-file``), written to the cache, and
must match its recorded sha256.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from gan_brevitas.atomic_files import atomic_write

from benchmarks.suite.registry import SOURCES, Source, SuiteCacheError, cache_dir, verified_path


def copy_from_snapshot(source: Source, mirror_root: Path, cache: Path) -> None:
    git_dir = mirror_root / source.repository.replace("/", "+") / "repo"
    if not git_dir.is_dir():
        raise SuiteCacheError(f"no snapshot of {source.repository} at {git_dir}.")
    blob = subprocess.run(
        ["git", f"--git-dir={git_dir}", "cat-file", "-p", source.blob], check=True, capture_output=True
    ).stdout
    atomic_write(cache / source.filename, lambda temporary: Path(temporary).write_bytes(blob))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mirror-root", type=Path, help="folder of bare git snapshots to copy from")
    parser.add_argument("--cache", type=Path, help="cache folder (default benchmarks/suite/.cache)")
    args = parser.parse_args(argv)
    cache = args.cache or cache_dir()
    failures = 0
    for source in SOURCES.values():
        try:
            if args.mirror_root:
                copy_from_snapshot(source, args.mirror_root, cache)
            path = verified_path(source, cache)
            print(f"ok   {source.name:18s} {path}  ({source.repository}@{source.commit[:10]}:{source.path})")
        except (SuiteCacheError, subprocess.CalledProcessError) as error:
            failures += 1
            print(f"FAIL {source.name:18s} {error}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
