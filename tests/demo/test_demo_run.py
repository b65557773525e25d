"""The main job end to end at tiny sample counts."""

import json

from gan_brevitas import cli


def test_demo_runs_end_to_end_and_writes_its_report(tmp_path, capsys):
    out = tmp_path / "demo_out"
    code = cli.main(["demo", "--n", "130", "--num-samples", "4", "--out-dir", str(out)])
    assert code == 0
    for name in ("stylegan", "sagan", "cyclegan"):
        assert (out / f"{name}_grid.png").stat().st_size > 1000
    assert (out / "figure1_quantile.png").stat().st_size > 1000
    report = (out / "report.md").read_text()
    assert "NOT comparable" in report and "gan-brevitas-demo-cnn" in report
    results = json.loads((out / "results.json").read_text())
    rows = [r for r in results["results"] if r["model"] == "sagan"]
    assert len(rows) == 1 + 8  # full precision + {min-max, quantile} x {W8, W4} x {tensor, channel}
    assert all(r["qfid"] >= 0 for r in rows)
    assert set(results["figure1"]) == {"stylegan", "sagan", "cyclegan"}
    assert "PTQ quantile W8A8 per-tensor" in capsys.readouterr().out
