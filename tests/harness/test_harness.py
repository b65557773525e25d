"""The experiment harness: runs are measured once, cached, resumed; one writer for all results."""

from __future__ import annotations

import json
import math

import pytest
import torch

from gan_brevitas.errors import ConfigError
from gan_brevitas.harness import (
    CACHED,
    NOT_RUN,
    RAN,
    Report,
    ResultRow,
    Run,
    RunCache,
    sweep,
    sweep_together,
    write_report,
)

FORMAT = "test-run/1"


def _runs() -> list[Run[int]]:
    return [Run("sagan", "vanilla-ptq", f"W{bits}", {"weight_bits": bits}, spec=bits) for bits in (8, 6, 4)]


def _measure(calls: list[int], fail_at: int | None = None):
    def measure(run: Run[int], key: str):
        if run.spec == fail_at:
            raise KeyboardInterrupt
        calls.append(run.spec)
        row = ResultRow(run.model, run.method, run.label, {"qfid": 10.0 / run.spec}, 4, 0.5, {"bits": run.spec})
        return row, {"images": torch.full((2, 3, 4, 4), float(run.spec))}

    return measure


def test_an_interrupted_sweep_resumes_and_a_cached_run_is_not_measured_again(tmp_path):
    cache = RunCache(tmp_path, FORMAT)
    calls: list[int] = []
    with pytest.raises(KeyboardInterrupt):
        sweep(_runs(), _measure(calls, fail_at=4), cache, progress=False)
    assert calls == [8, 6]
    outcomes = sweep(_runs(), _measure(calls), cache, progress=False)
    assert calls == [8, 6, 4]  # only the run that had not finished
    assert [o.status for o in outcomes] == [CACHED, CACHED, RAN]
    assert [o.row.metrics["qfid"] for o in outcomes] == [1.25, 10 / 6, 2.5]
    assert outcomes[0].row == ResultRow("sagan", "vanilla-ptq", "W8", {"qfid": 1.25}, 4, 0.5, {"bits": 8})
    assert torch.equal(cache.samples(outcomes[1].key)["images"], torch.full((2, 3, 4, 4), 6.0))
    again = sweep(_runs(), _measure(calls), cache, progress=False)
    assert calls == [8, 6, 4] and all(o.status == CACHED for o in again)


def test_the_key_follows_config_and_context_and_other_formats_rerun(tmp_path):
    calls: list[int] = []
    cache = RunCache(tmp_path, FORMAT)
    sweep(_runs()[:1], _measure(calls), cache, progress=False)
    sweep(_runs()[:1], _measure(calls), cache, lambda run: {"extractor": "other"}, progress=False)
    sweep(_runs()[:1], _measure(calls), RunCache(tmp_path, "test-run/2"), progress=False)
    relabelled = [Run("sagan", "vanilla-ptq", "renamed", {"weight_bits": 8}, spec=8)]
    assert sweep(relabelled, _measure(calls), cache, progress=False)[0].status == CACHED  # labels are not the config
    assert calls == [8, 8, 8]


def test_a_fresh_row_equals_its_cached_copy_even_with_non_finite_numbers(tmp_path):
    def measure(run: Run[int], key: str):
        return ResultRow(run.model, run.method, run.label, {"psnr": math.inf, "pair": (1, 2)}, 4, 0.5), {}

    cache = RunCache(tmp_path, FORMAT)
    (fresh,) = sweep(_runs()[:1], measure, cache, progress=False)
    (cached,) = sweep(_runs()[:1], measure, cache, progress=False)
    assert fresh.status == RAN and cached.status == CACHED
    assert fresh.row == cached.row and fresh.row.metrics == {"psnr": None, "pair": [1, 2]}


def test_runs_that_cannot_run_are_reported_not_cached(tmp_path):
    cache = RunCache(tmp_path, FORMAT)
    outcomes = sweep(_runs(), _measure([]), cache, cannot_run=lambda run: "no" if run.spec == 6 else "",
                     progress=False)
    assert [(o.status, o.reason) for o in outcomes] == [(RAN, ""), (NOT_RUN, "no"), (RAN, "")]
    assert len(list(tmp_path.glob("*.json"))) == 2


def test_an_unreadable_record_runs_again(tmp_path):
    cache = RunCache(tmp_path, FORMAT)
    (first,) = sweep(_runs()[:1], _measure([]), cache, progress=False)
    (tmp_path / f"{first.key}.json").write_text("{ torn")
    calls: list[int] = []
    assert sweep(_runs()[:1], _measure(calls), cache, progress=False)[0].status == RAN and calls == [8]


def test_the_writer_writes_strict_json_markdown_and_plot(tmp_path):
    def plot():
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots()
        ax.plot([0, 1], [1, 0])
        return fig

    row = ResultRow("sagan", "-", "full precision", {"psnr": math.inf, "qfid": 0.0}, 8, 1.0, {"bits": None})
    report = Report.at(tmp_path, "bench", {"rows": [row.flat()], "path": tmp_path, "pair": (1, 2)},
                       ["# bench", "", "| a |"], plot)
    written = write_report(report)
    assert [p.name for p in written] == ["bench.png", "bench.json", "bench.md"]
    data = json.loads((tmp_path / "bench.json").read_text(), parse_constant=lambda c: pytest.fail(c))
    assert data == {"rows": [{"model": "sagan", "label": "full precision", "method": "-", "bits": None,
                              "psnr": None, "qfid": 0.0, "seconds": 1.0, "n": 8}],
                    "path": str(tmp_path), "pair": [1, 2]}
    assert (tmp_path / "bench.md").read_text() == "# bench\n\n| a |\n"
    assert (tmp_path / "bench.png").read_bytes()[:4] == b"\x89PNG"


def test_a_config_that_is_not_json_data_is_refused_when_the_run_is_made():
    with pytest.raises(ConfigError, match="config must be JSON data .* put objects in `spec`"):
        Run("sagan", "ma-qat", "MA-QAT", {"discriminator": torch.nn.Linear(2, 2)})
    with pytest.raises(ConfigError, match="config must be JSON data"):
        Run("sagan", "vanilla-ptq", "x", {"quantile": math.nan})


def test_fresh_measures_every_run_again_and_replaces_the_cached_rows(tmp_path):
    cache = RunCache(tmp_path, FORMAT)
    calls: list[int] = []
    sweep(_runs(), _measure(calls), cache, progress=False)
    again = sweep(_runs(), _measure(calls), cache, progress=False, fresh=True)
    assert calls == [8, 6, 4, 8, 6, 4] and all(o.status == RAN for o in again)
    assert all(o.status == CACHED for o in sweep(_runs(), _measure(calls), cache, progress=False))


def test_a_repeated_run_is_measured_once(tmp_path):
    calls: list[int] = []
    outcomes = sweep(_runs() + _runs()[:1], _measure(calls), RunCache(tmp_path, FORMAT), progress=False)
    assert calls == [8, 6, 4] and [o.status for o in outcomes] == [RAN, RAN, RAN, CACHED]
    assert outcomes[3].row == outcomes[0].row


def test_runs_measured_together_resume_a_group_at_a_time(tmp_path):
    runs = [Run(model, "timing", f"{model} b{batch}", {"batch": batch}, spec=batch)
            for model in ("a", "b") for batch in (1, 8)]
    groups: list[list[str]] = []

    def measure_together(pending, keys, stop_at=None):
        if pending[0].model == stop_at:
            raise KeyboardInterrupt
        groups.append([run.label for run in pending])
        return [(ResultRow(run.model, run.method, run.label, {"ms": 2.0 * run.spec}, 3, 1.0), {}) for run in pending]

    cache = RunCache(tmp_path, FORMAT)
    with pytest.raises(KeyboardInterrupt):
        sweep_together(runs, lambda p, k: measure_together(p, k, stop_at="b"), cache, group=lambda run: run.model,
                       progress=False)
    assert groups == [["a b1", "a b8"]]  # group a stored, group b not started
    outcomes = sweep_together(runs + [Run("a", "timing", "a b2", {"batch": 2}, spec=2)], measure_together, cache,
                              group=lambda run: run.model, progress=False)
    assert groups == [["a b1", "a b8"], ["b b1", "b b8"], ["a b2"]]  # only the runs not cached, by group
    assert [o.status for o in outcomes] == [CACHED, CACHED, RAN, RAN, RAN]
    assert [o.row.metrics["ms"] for o in outcomes] == [2.0, 16.0, 2.0, 16.0, 4.0]
    with pytest.raises(ConfigError, match="one per run"):
        sweep_together(runs, lambda p, k: [], cache, group=lambda run: run.model, progress=False, fresh=True)
