"""Points 2 and 7: every writer refuses outputs that are not regular files (a device node, a
symlink, a FIFO, a directory), a read-only place and a full disk, before any compute, and
never replaces them."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest
import torch

from gan_brevitas import atomic_files, cli, recipes
from gan_brevitas.atomic_files import atomic_write, atomic_write_text, check_output_path
from gan_brevitas.harness.figures import save_grid
from gan_brevitas.errors import OutputPathError
from gan_brevitas.qat.checkpoint import save_checkpoint
from tests.hostile.conftest import leftovers


def _device_node(path: Path) -> Path:
    """A character device like /dev/null, made inside the test directory (root only)."""
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("making a device node needs root")
    return path


def _targets(tmp_path: Path) -> dict[str, Path]:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    link = tmp_path / "link.out"
    link.symlink_to(victim)
    fifo = tmp_path / "fifo.out"
    os.mkfifo(fifo)
    directory = tmp_path / "dir.out"
    directory.mkdir()
    return {"symlink": link, "FIFO": fifo, "directory": directory}


def _unchanged(tmp_path: Path, targets: dict[str, Path]) -> None:
    assert (tmp_path / "victim.txt").read_text() == "precious"
    assert targets["symlink"].is_symlink() and os.readlink(targets["symlink"]) == str(tmp_path / "victim.txt")
    assert stat.S_ISFIFO(os.lstat(targets["FIFO"]).st_mode)
    assert targets["directory"].is_dir() and not any(targets["directory"].iterdir())
    assert leftovers(tmp_path) == []


KINDS = {"symlink": "a symbolic link", "FIFO": "a FIFO", "directory": "a directory"}


def test_every_writer_refuses_non_regular_targets(tmp_path: Path, quantized_sagan) -> None:
    qmodel, z = quantized_sagan
    targets = _targets(tmp_path)
    writers = {
        "save": lambda p: recipes.save(qmodel, p),
        "export": lambda p: recipes.export(qmodel, p),
        "grid": lambda p: save_grid(p, [("x", torch.zeros(2, 3, 8, 8))], title="t"),
        "text": lambda p: atomic_write_text(p, "new"),
    }
    for kind, target in targets.items():
        for name, write in writers.items():
            with pytest.raises(OutputPathError, match=f"exists and is {KINDS[kind]}; gan-brevitas only replaces regular"):
                write(target)
    _unchanged(tmp_path, targets)


def test_device_node_is_never_replaced(tmp_path: Path, quantized_sagan) -> None:
    qmodel, _ = quantized_sagan
    node = _device_node(tmp_path / "null")
    before = os.lstat(node)
    for write in (lambda: recipes.save(qmodel, node), lambda: atomic_write_text(node, "x")):
        with pytest.raises(OutputPathError, match="exists and is a device node"):
            write()
    after = os.lstat(node)
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev and after.st_ino == before.st_ino


def test_qat_checkpoint_refuses_a_symlinked_checkpoint(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (tmp_path / "checkpoint.pt").symlink_to(victim)
    with pytest.raises(OutputPathError, match="checkpoint.pt exists and is a symbolic link"):
        save_checkpoint(tmp_path, {"epoch": 1})
    assert victim.read_text() == "precious" and (tmp_path / "checkpoint.pt").is_symlink()


def test_cli_refuses_a_bad_out_before_loading_anything(tmp_path: Path, monkeypatch, capsys) -> None:
    def must_not_run(*args, **kwargs):
        raise AssertionError("the generator was loaded before the output path was checked")

    monkeypatch.setattr(recipes, "load_generator", must_not_run)
    (tmp_path / "out").mkdir()
    code = cli.main(["quantize", "--model", "sagan", "--checkpoint", str(tmp_path / "g.pth"), "--out", str(tmp_path / "out")])
    assert code == 1
    assert "exists and is a directory" in capsys.readouterr().err


def test_read_only_directory_is_refused_up_front(tmp_path: Path, monkeypatch) -> None:
    real_access = os.access
    monkeypatch.setattr(atomic_files.os, "access", lambda p, m: False if Path(p) == tmp_path else real_access(p, m))
    with pytest.raises(OutputPathError, match=f"directory {tmp_path} is not writable"):
        check_output_path(tmp_path / "q.safetensors")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_directory_for_real(tmp_path: Path, quantized_sagan) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        with pytest.raises(OutputPathError, match="is not writable"):
            recipes.save(quantized_sagan[0], locked / "q.safetensors")
    finally:
        locked.chmod(0o755)


def test_full_disk_is_found_before_the_run_and_named(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(atomic_files, "_free_bytes", lambda directory: 5 * 2**20)
    with pytest.raises(OutputPathError, match=f"not enough disk space .* the disk holding {tmp_path} has 5.0 MiB free"):
        check_output_path(tmp_path / "q.safetensors", expected_bytes=50 * 2**20)


def test_disk_full_while_writing_keeps_the_old_file_and_names_the_disk(tmp_path: Path) -> None:
    target = tmp_path / "q.safetensors"
    target.write_bytes(b"earlier output")

    def fills_the_disk(temporary: str) -> None:
        Path(temporary).write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OutputPathError, match=f"the disk holding {tmp_path} is full"):
        atomic_write(target, fills_the_disk)
    assert target.read_bytes() == b"earlier output"
    assert leftovers(tmp_path) == []


def test_export_on_a_full_disk_blames_the_disk_not_the_graph(tmp_path: Path, quantized_sagan, monkeypatch) -> None:
    import brevitas.export

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(brevitas.export, "export_onnx_qcdq", disk_full)
    target = tmp_path / "g.onnx"
    target.write_bytes(b"earlier export")
    with pytest.raises(OutputPathError, match="is full") as caught:
        recipes.export(quantized_sagan[0], target)
    assert "fixed graph" not in str(caught.value)
    assert target.read_bytes() == b"earlier export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.onnx"]
