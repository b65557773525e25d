"""Point 8: unique temporary names (two writers never collide), nothing left behind on failure,
a SIGKILLed QAT run's temporary checkpoint removed at the next start, and a job stopped by
SIGTERM leaves its earlier outputs untouched (no new grid beside an old report)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from gan_brevitas import atomic_files
from gan_brevitas.atomic_files import atomic_write, atomic_write_text, staging_directory
from gan_brevitas.qat.checkpoint import check_run_dir
from tests.hostile.conftest import leftovers

ROOT = Path(__file__).resolve().parents[2]


def test_two_writers_of_one_file_never_collide(tmp_path: Path) -> None:
    target = tmp_path / "results.json"
    errors: list[BaseException] = []

    def writer(text: str) -> None:
        try:
            for _ in range(50):
                atomic_write_text(target, text * 1000)
        except BaseException as err:  # noqa: BLE001 - collected for the assertion
            errors.append(err)

    threads = [threading.Thread(target=writer, args=(t,)) for t in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert target.read_text() in ("a" * 1000, "b" * 1000)
    assert leftovers(tmp_path) == []


def test_failed_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    def crash(temporary: str) -> None:
        Path(temporary).write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "checkpoint.pt", crash)
    assert list(tmp_path.iterdir()) == []


_KILLED_WRITER = """
import sys, time
from pathlib import Path
from gan_brevitas.atomic_files import atomic_write

def slow(temporary):
    Path(temporary).write_bytes(b"half a checkpoint")
    print("writing", flush=True)
    time.sleep(60)

atomic_write(Path(sys.argv[1]) / "checkpoint.pt", slow)
"""


def test_sigkill_mid_checkpoint_leaves_nothing_after_the_next_start(tmp_path: Path) -> None:
    (tmp_path / "checkpoint.pt.tmp").write_bytes(b"left by an older version")
    process = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(tmp_path)], cwd=ROOT,
                               stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert process.stdout.readline().strip() == "writing"
    process.kill()
    process.wait()
    assert len(leftovers(tmp_path)) == 2  # the killed writer's temporary file and the legacy one
    assert check_run_dir(tmp_path, {"a": "1"}, resume=True) is False  # the next start
    assert list(tmp_path.iterdir()) == []


_STOPPED_JOB = """
import sys, time
from pathlib import Path
from gan_brevitas import cli
from gan_brevitas.atomic_files import atomic_write_text, staging_directory

cli.install_signal_handlers()
out = Path(sys.argv[1])
with staging_directory(out, last=("report.md",)) as staging:
    atomic_write_text(staging / "stylegan_grid.png", "new grid")
    print("grid written", flush=True)
    time.sleep(60)
    atomic_write_text(staging / "report.md", "new report")
"""


def test_sigterm_keeps_the_earlier_outputs_together(tmp_path: Path) -> None:
    (tmp_path / "stylegan_grid.png").write_text("old grid")
    (tmp_path / "report.md").write_text("old report")
    process = subprocess.Popen([sys.executable, "-c", _STOPPED_JOB, str(tmp_path)], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert process.stdout.readline().strip() == "grid written"
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 128 + signal.SIGTERM
    assert (tmp_path / "stylegan_grid.png").read_text() == "old grid"
    assert (tmp_path / "report.md").read_text() == "old report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.md", "stylegan_grid.png"]


def test_finished_job_publishes_report_last(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "report.md").write_text("old report")
    moved: list[str] = []
    real_replace = atomic_files.os.replace
    with staging_directory(tmp_path, last=("report.md",)) as staging:
        atomic_write_text(staging / "report.md", "new report")
        atomic_write_text(staging / "z_grid.png", "new grid")
        monkeypatch.setattr(atomic_files.os, "replace", lambda a, b: (moved.append(Path(b).name), real_replace(a, b)))
    assert moved == ["z_grid.png", "report.md"]
    assert (tmp_path / "report.md").read_text() == "new report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.md", "z_grid.png"]
