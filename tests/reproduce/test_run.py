"""`gan-brevitas reproduce` end to end on the tiny profile: rows run once, then come from the cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from gan_brevitas import cli
from gan_brevitas.models import build_generator
from gan_brevitas.reproduce import load_recipe
from gan_brevitas.reproduce.runner import cannot_run
from tests.reproduce.conftest import RECIPES

ROWS = ["table4/sagan_full_precision.toml", "table4/sagan_vanilla_ptq_w8_per_tensor.toml"]
DEMO_CHECKPOINT = Path(__file__).resolve().parents[2] / "gan_brevitas" / "demo" / "checkpoints" / "sagan_G.safetensors"


@pytest.fixture(scope="module")
def sagan_checkpoint(tmp_path_factory) -> Path:
    """A small random SAGAN in the reference layout (a user's checkpoint)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("user") / "sagan_G.pth"
    torch.save(build_generator("sagan", image_size=32, z_dim=16, conv_dim=16).state_dict(), path)
    return path


def reproduce(args: list[str], capsys) -> str:
    assert cli.main(["reproduce", *args, "--profile", "tiny"]) == 0
    return capsys.readouterr().out


def test_two_rows_run_then_come_from_the_cache(tmp_path, sagan_checkpoint, capsys):
    out = tmp_path / "out"
    recipes = [str(RECIPES / row) for row in ROWS]
    args = [*recipes, "--checkpoint", str(sagan_checkpoint), "--out", str(out)]
    first = reproduce(args, capsys)
    assert first.count(" ran\n") == 2
    records = sorted((out / "rows").glob("*.json"))
    assert len(records) == 2
    stamps = [r.stat().st_mtime_ns for r in records]
    vanilla = next(json.loads(r.read_text()) for r in records if "vanilla" in r.read_text())
    assert vanilla["config"]["profile"] == "tiny" and vanilla["config"]["quant"]["weight_bits"] == 8
    assert vanilla["metrics"]["qfid"] >= 0 and vanilla["metrics"]["fid"] is None  # no --real: no FID
    assert vanilla["source"]["source"] == "checkpoint"

    kept = "\n## Findings on real pretrained generators (the real-generator suite)\n\nwritten from the benchmarks\n"
    (out / "RESULTS.md").write_text((out / "RESULTS.md").read_text() + kept)
    second = reproduce(args, capsys)
    assert second.count(" cached\n") == 2 and " ran\n" not in second
    assert (out / "RESULTS.md").read_text().endswith(kept)  # the benchmarks' section survives a rewrite
    assert [r.stat().st_mtime_ns for r in records] == stamps

    results = (out / "RESULTS.md").read_text()
    assert "profile **tiny**" in results and "gan-brevitas-demo-cnn" in results
    assert "| sagan | vanilla PTQ, per-tensor, a8/w8 |" in results and "| 86.8 |" in results
    assert "no --real images, so no FID" in results
    floor = next(json.loads(r.read_text()) for r in records if "full_precision" in r.read_text())["metrics"]
    assert floor["noise_floor_qfid"] > 0  # another draw of inputs: the float model differs from itself
    assert f"sagan {floor['noise_floor_qfid']:.3f} (n={floor['n']})" in results
    assert f"| sagan | vanilla PTQ, per-tensor, a8/w8 | {vanilla['n']} |" in results
    assert "## Findings" in results and "F6" in results
    assert (out / "figures" / "sagan_grid.png").stat().st_size > 1000


def test_an_edited_recipe_runs_again_and_report_only_runs_nothing(tmp_path, sagan_checkpoint, edited, capsys):
    out = tmp_path / "out"
    common = ["--checkpoint", str(sagan_checkpoint), "--out", str(out)]
    recipe = edited(ROWS[1])
    reproduce([str(recipe), *common], capsys)
    recipe.write_text(recipe.read_text().replace("[tiny.options]\nnum_samples = 4", "[tiny.options]\nnum_samples = 3"))
    before = (out / "RESULTS.md").read_bytes()
    # No row of this edited recipe is cached: --report-only refuses rather than replace the report.
    assert cli.main(["reproduce", str(recipe), *common, "--report-only", "--profile", "tiny"]) == 2
    assert "--report-only found none of the 1 row(s) in the cache" in capsys.readouterr().err
    assert (out / "RESULTS.md").read_bytes() == before
    assert " ran\n" in reproduce([str(recipe), *common], capsys)
    assert len(list((out / "rows").glob("*.json"))) == 2


@pytest.mark.skipif(not DEMO_CHECKPOINT.is_file(), reason="demo checkpoints not in this checkout")
def test_demo_generators_are_the_default_and_get_a_fid(tmp_path, capsys):
    out = tmp_path / "out"
    reproduce([str(RECIPES / ROWS[1]), "--out", str(out)], capsys)
    (record,) = [json.loads(r.read_text()) for r in (out / "rows").glob("*.json")]
    assert record["source"]["source"] == "demo" and record["metrics"]["fid"] is not None


def test_a_bare_checkpoint_needs_one_model(sagan_checkpoint, capsys):
    code = cli.main(["reproduce", str(RECIPES / ROWS[0]), str(RECIPES / "table4/stylegan_full_precision.toml"),
                     "--checkpoint", str(sagan_checkpoint), "--profile", "tiny"])
    assert code == 2
    assert "name the model, e.g. --checkpoint stylegan=PATH" in capsys.readouterr().err


def test_perceptual_rows_without_vgg_weights_are_not_run(tmp_path, monkeypatch):
    monkeypatch.delenv("GAN_BREVITAS_VGG16_WEIGHTS", raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    (row,) = load_recipe(RECIPES / "table4/sagan_ma_qat_w8_per_channel.toml").rows("paper")
    assert "VGG16 ImageNet weights" in cannot_run(row)
    (cpu_row,) = load_recipe(RECIPES / "table4/sagan_ma_qat_w8_per_channel.toml").rows("cpu")
    assert cannot_run(cpu_row) == ""  # the cpu profile's stand-in loss needs no VGG16
