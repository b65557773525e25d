"""Shared fixtures of the metrics tests: an isolated "no Inception anywhere" environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from gan_brevitas.metrics.extractors import INCEPTION_ENV_VAR


@pytest.fixture
def no_inception(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No Inception weights: env var unset and an empty torch hub cache. Returns the TORCH_HOME."""
    monkeypatch.delenv(INCEPTION_ENV_VAR, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    return tmp_path / "torch_home"
