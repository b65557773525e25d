"""Point 3: `reproduce --report-only` without the (git-ignored) row cache must not replace the
committed RESULTS.md by an empty report."""

from __future__ import annotations

from pathlib import Path

from gan_brevitas import cli

ROOT = Path(__file__).resolve().parents[2]


def test_report_only_without_cache_leaves_results_md_byte_identical(tmp_path: Path, capsys) -> None:
    results = tmp_path / "RESULTS.md"
    results.write_bytes(b"# Reproducing the paper\n\n43 rows measured over 40 minutes.\n")
    before = results.read_bytes()
    code = cli.main(["reproduce", str(ROOT / "recipes" / "figure1" / "sagan_act_quantiles.toml"),
                     "--profile", "tiny", "--report-only", "--out", str(tmp_path)])
    assert code == 2
    err = capsys.readouterr().err
    assert "--report-only found none of the" in err and "RESULTS.md was left unchanged" in err
    assert results.read_bytes() == before
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == [results]


def test_a_recipe_that_is_not_text(tmp_path: Path, capsys) -> None:
    recipe = tmp_path / "r.toml"
    recipe.write_bytes(b"\x1f\x8b\x08\x00binary")
    assert cli.main(["reproduce", str(recipe), "--out", str(tmp_path / "out")]) == 2
    assert f"{recipe} is not valid TOML" in capsys.readouterr().err
