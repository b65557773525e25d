"""The main job end to end at tiny sample counts."""

import importlib.util
import json

import pytest

from gan_brevitas import cli
from gan_brevitas.demo.run import DemoSettings
from gan_brevitas.errors import ConfigError

TINY = ["--n", "130", "--num-samples", "4", "--brecq-steps", "2", "--brecq-samples", "8",
        "--qat-epochs", "2", "--qat-train", "8"]


def test_demo_runs_end_to_end_and_writes_its_report(tmp_path, capsys):
    out = tmp_path / "demo_out"
    code = cli.main(["demo", *TINY, "--sections", "ptq", "figure1", "--out-dir", str(out)])
    assert code == 0
    for name in ("stylegan", "sagan", "cyclegan"):
        assert (out / f"{name}_grid.png").stat().st_size > 1000
    assert (out / "figure1_quantile.png").stat().st_size > 1000
    report = (out / "report.md").read_text()
    assert "NOT comparable" in report and "gan-brevitas-demo-cnn" in report
    results = json.loads((out / "results.json").read_text())
    rows = [r for r in results["results"] if r["model"] == "sagan"]
    assert len(rows) == 1 + 2 + 8  # full precision + default W8, W4 + {min-max, quantile} x {W8, W4} x {tensor, channel}
    assert all(r["qfid"] >= 0 for r in rows)
    assert set(results["figure1"]) == {"stylegan", "sagan", "cyclegan"}
    assert "PTQ quantile W8A8 per-tensor" in capsys.readouterr().out


def test_demo_brecq_qat_and_modelopt_sections(tmp_path):
    out = tmp_path / "demo_out"
    code = cli.main(["demo", *TINY, "--n", "32", "--models", "sagan", "--sections", "brecq", "qat", "modelopt",
                     "--out-dir", str(out)])
    assert code == 0
    rows = json.loads((out / "results.json").read_text())["results"]
    has_modelopt = importlib.util.find_spec("modelopt") is not None
    assert [r["method"] for r in rows] == ["-", "ste-brecq", "ar-brecq", "ma-qat", "lsq-qat", "lsq-qat"] + (
        ["modelopt-int8"] if has_modelopt else [])
    assert [r["weight_bits"] for r in rows[1:6]] == [8, 4, 8, 8, 4]
    assert all(r["qfid"] >= 0 and r["psnr"] > 0 for r in rows[1:])
    assert (out / "sagan_grid.png").stat().st_size > 1000


def test_demo_sections_can_be_chosen(tmp_path):
    out = tmp_path / "demo_out"
    assert cli.main(["demo", *TINY, "--models", "sagan", "--sections", "ptq", "--out-dir", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert {r["method"] for r in results["results"]} == {"-", "gptq", "vanilla-ptq"}  # the default, the paper's
    assert not (out / "figure1_quantile.png").exists()
    assert "Figure 1" not in (out / "report.md").read_text()


def test_demo_settings_reject_bad_values():
    with pytest.raises(ConfigError, match="unknown demo section"):
        DemoSettings(sections=("ptq", "gptq"))
    with pytest.raises(ConfigError, match="brecq_steps must be >= 1"):
        DemoSettings(brecq_steps=0)
    with pytest.raises(ConfigError, match="qat_epochs must be >= 2"):
        DemoSettings(qat_epochs=1)


def test_results_json_is_strict_and_structured(tmp_path):
    """results.json parses with a strict JSON reader (no Infinity/NaN), settings are JSON values,
    every row says its n, and the noise floor is reported per model."""
    out = tmp_path / "demo_out"
    assert cli.main(["demo", *TINY, "--n", "32", "--models", "sagan", "--sections", "ptq", "--out-dir", str(out),
                     "-q"]) == 0
    text = (out / "results.json").read_text()

    def refuse(constant):
        raise ValueError(f"non-standard JSON constant {constant}")

    results = json.loads(text, parse_constant=refuse)
    assert json.loads(json.dumps(results, allow_nan=False)) == results  # round trip, strict both ways
    settings = results["settings"]
    assert settings["n"] == 32 and settings["models"] == ["sagan"] and settings["sections"] == ["ptq"]
    assert settings["progress"] is False and settings["out_dir"] == str(out)
    assert results["results"][0]["psnr"] is None  # full precision: identical outputs
    assert all(r["n"] == 32 for r in results["results"])
    assert results["noise_floor_qfid"]["sagan"] > 0
    report = (out / "report.md").read_text()
    assert "Noise floor" in report and "| n |" in report


def test_a_repeated_demo_measures_nothing_again(tmp_path, monkeypatch):
    """Every finished run is cached in <out>/rows: the same demo again takes its rows from there."""
    out = tmp_path / "demo_out"
    args = ["demo", *TINY, "--n", "32", "--models", "sagan", "--sections", "ptq", "--out-dir", str(out), "-q"]
    assert cli.main(args) == 0
    first = json.loads((out / "results.json").read_text())["results"]

    def refuse(*args, **kwargs):
        raise AssertionError("a cached run was quantized again")

    monkeypatch.setattr("gan_brevitas.recipes.quantize", refuse)
    assert cli.main(args) == 0
    again = json.loads((out / "results.json").read_text())["results"]
    assert [(r["label"], r["qfid"], r["psnr"], r["seconds"]) for r in again[1:]] == [
        (r["label"], r["qfid"], r["psnr"], r["seconds"]) for r in first[1:]]
    assert len(list((out / "rows").glob("*.json"))) == len(first) - 1
