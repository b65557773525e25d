"""benchmarks/quality_findings.py measures each recipe through the harness: a recipe shared by
two findings is measured once, a repeated run measures nothing, an interrupted one resumes, a
failing recipe is a row with its error, and the verdicts follow the paired differences. The
quantizers are fakes."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from benchmarks import quality_findings
from benchmarks.suite import SOURCES, SuiteEntry
from gan_brevitas.harness import RunCache


class Interrupt(BaseException):
    """Stands for Ctrl-C in the middle of a run."""


def _entry() -> SuiteEntry:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), nn.Tanh()).eval()
    return SuiteEntry("tiny", "translator", model, torch.rand(2, 3, 8, 8) * 2 - 1, torch.rand(4, 3, 8, 8) * 2 - 1,
                      8, (-1.0, 1.0), SOURCES["sketch_translator"])


def _noise(config) -> float:
    """Fake output noise of a recipe (smaller: higher PSNR): min-max and per-channel win."""
    return (0.01 if config.weight_range == "minmax" else 0.02) * (0.5 if config.per_channel else 1.0)


class FakeRecipes:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[str] = []
        self.stop_at = ""
        self.fail = ""
        monkeypatch.setattr(quality_findings, "_output", self._output)

    def _output(self, entry: SuiteEntry, variant) -> torch.Tensor:
        if variant.label == self.stop_at:
            raise Interrupt
        self.calls.append(f"{variant.label} {variant.config.weight_bits}")
        if variant.label == self.fail:
            raise RuntimeError("fake failure")
        reference = quality_findings._run_torch(entry.model, entry.test)
        return reference + _noise(variant.config) * torch.linspace(-1, 1, reference.numel()).view_as(reference)


def test_recipes_are_measured_once_and_cached(monkeypatch, tmp_path):
    fake = FakeRecipes(monkeypatch)
    cache = RunCache(tmp_path / "cache", quality_findings.CACHE_FORMAT)
    rows = quality_findings.measure(_entry(), 0, cache=cache)
    # 4 findings x 2 recipes, but W8 per-tensor min-max and W4 per-channel min-max serve two
    # findings each (under two names): 6 recipes measured
    assert sorted(fake.calls) == sorted(["quantile 8", "min-max 8", "quantile 4", "min-max 4",
                                         "per-channel 8", "per-tensor 4"])
    assert [(r["a"], r["b"]) for r in rows] == [("quantile", "min-max")] * 2 + [("per-channel", "per-tensor")] * 2
    assert [r["verdict"] for r in rows] == ["reversed", "reversed", "holds", "holds"]
    assert all(r["n"] == 4 and r["noise_db"] >= 0 for r in rows)
    fake.calls.clear()
    again = quality_findings.measure(_entry(), 0, cache=cache)
    assert fake.calls == [] and again == [{**r, "seconds": r2["seconds"]} for r, r2 in zip(rows, again)]
    quality_findings.measure(_entry(), 0, cache=cache, fresh=True)
    assert len(fake.calls) == 6


def test_an_interrupted_run_resumes_with_the_recipes_left(monkeypatch, tmp_path):
    fake = FakeRecipes(monkeypatch)
    cache = RunCache(tmp_path / "cache", quality_findings.CACHE_FORMAT)
    fake.stop_at = "per-channel"
    with pytest.raises(Interrupt):
        quality_findings.measure(_entry(), 0, cache=cache)
    done = list(fake.calls)
    fake.calls.clear()
    fake.stop_at = ""
    quality_findings.measure(_entry(), 0, cache=cache)
    assert not set(done) & set(fake.calls) and len(done) + len(fake.calls) == 6


def test_a_failing_recipe_is_a_row_with_its_error(monkeypatch, tmp_path):
    fake = FakeRecipes(monkeypatch)
    fake.fail = "quantile"
    rows = quality_findings.measure(_entry(), 0, cache=RunCache(tmp_path / "cache", quality_findings.CACHE_FORMAT))
    assert [r.get("error", "") for r in rows[:2]] == ["RuntimeError: fake failure"] * 2
    assert all("verdict" in r for r in rows[2:])
    assert "error: RuntimeError" in "\n".join(quality_findings.markdown({"command": "c", "processor": "p", "threads": 1,
                                                                        "load_start": "0", "wall_s": 1, "rows": rows}))


def test_qat_trains_a_photo_model_on_crops_of_its_calibration_photos(monkeypatch):
    """A photo model's QAT pair trains on random crops of the calibration photos (the photo
    settings), a noise-to-image model's on fresh latents; never on the test inputs."""
    entry = _entry()
    runs = quality_findings.variant_runs(entry, 0, 4)
    qat = next(run.spec for run in runs if run.method == "lsq-qat")
    assert dict(qat.options)["num_train"] == dict(quality_findings.PHOTO_QAT_OPTIONS)["num_train"]
    seen = {}

    def fake_quantize(model, method, config, inputs, **options):
        seen["batch"] = inputs(3)
        return model

    monkeypatch.setattr(quality_findings.recipes, "quantize", fake_quantize)
    quality_findings._qat(entry, qat)
    assert seen["batch"].shape == (3, 3, 8, 8)
    assert not any(torch.equal(crop, test) for crop in seen["batch"] for test in entry.test)
    noise = dataclasses.replace(entry, family="noise-to-image")
    latent_qat = next(run.spec for run in quality_findings.variant_runs(noise, 0, 4) if run.method == "lsq-qat")
    assert dict(latent_qat.options)["num_train"] == dict(quality_findings.QAT_OPTIONS)["num_train"]
