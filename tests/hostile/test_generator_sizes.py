"""Point 10 and the sizes a file records about itself: a 32 px StyleGAN checkpoint builds the
32 px model, a contradicting --size is refused, and a record beside a checkpoint that asks for a
far bigger generator than its weights is refused before anything is allocated."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from gan_brevitas import cli, recipes
from gan_brevitas.errors import CheckpointError
from tests.hostile.conftest import SAGAN

STYLEGAN_DEMO = Path(__file__).resolve().parents[2] / "gan_brevitas" / "demo" / "checkpoints" / "stylegan_G.safetensors"


def test_stylegan_32px_checkpoint_without_size_is_32px_and_a_bigger_size_is_refused(tmp_path: Path, capsys) -> None:
    assert recipes.load_generator("stylegan", STYLEGAN_DEMO).image_size == 32
    code = cli.main(["quantize", "--model", "stylegan", "--checkpoint", str(STYLEGAN_DEMO), "--size", "128",
                     "--num-samples", "2", "--out", str(tmp_path / "q.safetensors")])
    assert code == 1 and not (tmp_path / "q.safetensors").exists()
    assert "size=128" in capsys.readouterr().err


def test_a_record_asking_for_a_huge_generator_is_refused_before_building(tmp_path: Path, monkeypatch) -> None:
    checkpoint = tmp_path / "g.pth"
    torch.save(recipes.build_generator("sagan", **SAGAN).state_dict(), checkpoint)
    record = {"generator": {"name": "sagan", "kwargs": {"image_size": 1024, "z_dim": 32, "conv_dim": 4096}}}
    (tmp_path / "g.json").write_text(json.dumps(record))

    from gan_brevitas.models import load

    def must_not_build(*args, **kwargs):
        raise AssertionError("the generator was built (allocated) before its size was checked")

    monkeypatch.setattr(load, "build_generator", must_not_build)
    with pytest.raises(CheckpointError, match=r"holds 0\.\d MiB of weights, but sagan\(.*\) would need \d+\.\d MiB"):
        recipes.load_generator("sagan", checkpoint)
