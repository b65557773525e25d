"""Reproduce the paper's experiments: ``recipes/*.toml`` -> cached rows -> RESULTS.md.

    gan-brevitas reproduce recipes/table4/*.toml --profile cpu

* `spec`: recipe files (one per row of Tables 3 / 4, one sweep per model for Figure 1), made
  of the package's config dataclasses and validated on load; profiles "paper", "cpu", "tiny".
* `sources`: where the generators come from (the demo zoo, or user checkpoints).
* `runner`: each row as a run of `gan_brevitas.harness` (cached per row, keyed by everything
  its numbers depend on; the rows not cached yet are measured, with progress).
* `findings`: the paper's findings F1..F6, decided by fixed rules from qFID numbers.
* `report`: RESULTS.md, the Figure 1 plot and the sample grids.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from gan_brevitas.atomic_files import check_output_path
from gan_brevitas.errors import ConfigError
from gan_brevitas.reproduce.report import write_results
from gan_brevitas.harness import NOT_RUN, Outcome
from gan_brevitas.reproduce.runner import RunSettings, run_rows
from gan_brevitas.reproduce.sources import UserData
from gan_brevitas.reproduce.spec import PROFILES, Recipe, Row, load_recipe, load_recipes

__all__ = ["PROFILES", "Outcome", "Recipe", "Row", "RunSettings", "UserData", "load_recipe", "load_recipes",
           "reproduce"]


def reproduce(recipes: Sequence[Recipe], settings: RunSettings) -> tuple[list[Outcome], Path]:
    """Run every row of ``recipes`` under ``settings.profile`` (cached rows are skipped) and
    write RESULTS.md; returns the outcomes and the report's path."""
    check_output_path(settings.out_dir / "RESULTS.md", what="report", create_parent=True)  # before any row runs
    started = time.perf_counter()
    rows = [row for recipe in recipes for row in recipe.rows(settings.profile)]
    outcomes, models, extractor = run_rows(rows, settings)
    _refuse_empty_report(outcomes, settings)
    path = write_results(recipes, outcomes, models.descriptions(), extractor, settings, time.perf_counter() - started)
    return outcomes, path


def _refuse_empty_report(outcomes: Sequence[Outcome], settings: RunSettings) -> None:
    """``--report-only`` with no row in the cache would replace RESULTS.md by an empty report
    (the cache is git-ignored, a fresh checkout has none): refuse, leaving RESULTS.md as it is."""
    if not settings.report_only or any(o.status != NOT_RUN for o in outcomes):
        return
    raise ConfigError(
        f"--report-only found none of the {len(outcomes)} row(s) in the cache {settings.cache_dir} "
        f"(it is not committed); {settings.out_dir / 'RESULTS.md'} was left unchanged. Run without "
        "--report-only to measure the rows, or point --out at the directory that holds the cache."
    )
