"""Point 6: expected failures at the command line end with our message and exit status 2 (bad
usage: a config, an option) or 1 (the run failed: a file that cannot be read), never a raw
traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gan_brevitas import cli, recipes
from tests.hostile.conftest import SAGAN


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "g.pth"
    torch.save(recipes.build_generator("sagan", **SAGAN).state_dict(), path)
    return path


def _quantize(checkpoint: Path, tmp_path: Path, *extra: str) -> list[str]:
    return ["quantize", "--model", "sagan", "--checkpoint", str(checkpoint), "--size", "32", "--num-samples", "4",
            "--out", str(tmp_path / "q.safetensors"), *extra]


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "cannot read the config file .*missing.json: No such file or directory"),
        ("{not json", "config file .*: a QuantConfig must be a JSON object; this text is not JSON"),
        ("[8]", "a QuantConfig must be a JSON object of fields, got list"),
        ('{"weight_bitz": 4}', r"unknown QuantConfig key\(s\) \['weight_bitz'\]"),
        ('{"skip": 3}', "skip must be a list of module-name patterns"),
        (b"\xff\xfe\x00binary", "cannot read the config file"),
    ],
    ids=["missing", "not-json", "list", "unknown-key", "wrong-type", "binary"],
)
def test_bad_config_file(checkpoint: Path, tmp_path: Path, capsys, content, message: str) -> None:
    config = tmp_path / "missing.json"
    if isinstance(content, bytes):
        config.write_bytes(content)
    elif content is not None:
        config.write_text(content)
    assert cli.main(_quantize(checkpoint, tmp_path, "--config", str(config))) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert pytest.importorskip("re").search(message, err), err
    assert not (tmp_path / "q.safetensors").exists()


@pytest.mark.parametrize("option", ["stepz=10", "num_sample=3"])
def test_unknown_method_option(checkpoint: Path, tmp_path: Path, capsys, option: str) -> None:
    assert cli.main(_quantize(checkpoint, tmp_path, "--set", option)) == 2
    err = capsys.readouterr().err
    assert option.split("=")[0] in err and "Traceback" not in err


def test_info_on_a_file_that_is_not_ours(tmp_path: Path, capsys) -> None:
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 64)
    assert cli.main(["info", str(junk)]) == 1  # the run failed (2 is kept for bad usage)
    assert "is not a readable safetensors file" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["missing", "a-file", "corrupt-png", "text-as-png"])
def test_bad_image_folders(tmp_path: Path, capsys, kind: str) -> None:
    from PIL import Image

    checkpoint = tmp_path / "c.pth"
    torch.save(recipes.build_generator("cyclegan", ngf=4, n_blocks=1, image_size=16).state_dict(), checkpoint)
    folder = tmp_path / "images"
    if kind == "a-file":
        folder.write_text("x")
    elif kind != "missing":
        folder.mkdir()
        Image.new("RGB", (16, 16)).save(folder / "a.png")
        bad = folder / "b.png"
        bad.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(50) if kind == "corrupt-png" else b"hello")
    code = cli.main(["quantize", "--model", "cyclegan", "--checkpoint", str(checkpoint), "--num-samples", "2",
                     "--images", str(folder), "--out", str(tmp_path / "q.safetensors")])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    expected = "does not exist (or is not a folder)" if kind in ("missing", "a-file") else f"cannot read the image {folder / 'b.png'}"
    assert expected in err
