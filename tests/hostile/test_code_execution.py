"""Point 1: a weights file swapped after its check must never run code (torch-fidelity loads
weights with weights_only=False; it only ever sees a private copy of checked bytes)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch_fidelity

from gan_brevitas.errors import MetricError
from gan_brevitas.metrics import extractors
from gan_brevitas.metrics.fid import fid
from gan_brevitas.metrics.extractors import resolve_extractor
from tests.hostile.conftest import write_malicious_pickle


def _fake_inception(path: Path) -> Path:
    torch.save({key: torch.zeros(2) for key in extractors._INCEPTION_KEYS}, path)
    return path


def test_the_pickle_is_really_malicious(tmp_path: Path) -> None:
    """Control: unpickled without weights_only, the file does write the marker."""
    marker = tmp_path / "marker"
    evil = write_malicious_pickle(tmp_path / "evil.pth", marker)
    torch.load(evil, weights_only=False)
    assert marker.read_text() == "pwned"


def test_malicious_file_is_refused_before_anything_loads_it(no_inception, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    evil = write_malicious_pickle(tmp_path / "inception.pth", marker)
    with pytest.raises(MetricError, match="cannot be loaded as a plain state dict with weights_only=True"):
        resolve_extractor(inception_weights=evil)
    assert not marker.exists()


def test_file_swapped_between_check_and_load_runs_no_code(no_inception, tmp_path: Path, monkeypatch) -> None:
    marker = tmp_path / "marker"
    weights = _fake_inception(tmp_path / "inception.pth")
    spec = resolve_extractor(inception_weights=weights)
    assert spec.source == str(weights) and spec.weights_path != str(weights)
    real_calculate = torch_fidelity.calculate_metrics

    def swap_then_calculate(**kwargs):
        write_malicious_pickle(weights, marker)  # the attacker replaces the user's file mid-run
        assert kwargs["feature_extractor_weights_path"] == spec.weights_path
        return real_calculate(**kwargs)

    monkeypatch.setattr(torch_fidelity, "calculate_metrics", swap_then_calculate)
    images = torch.rand(4, 3, 16, 16) * 2 - 1
    # torch-fidelity loads the private copy (the checked fake dict), which lacks Inception's
    # layers: a clear MetricError, and the swapped-in pickle is never unpickled.
    with pytest.raises(MetricError, match="torch-fidelity could not compute fid"):
        fid(images, images.flip(0), extractor=spec)
    assert not marker.exists()
    assert torch.load(spec.weights_path, weights_only=True).keys() == set(extractors._INCEPTION_KEYS)


def test_private_copy_is_private_and_content_addressed(no_inception, tmp_path: Path) -> None:
    weights = _fake_inception(tmp_path / "inception.pth")
    first = resolve_extractor(inception_weights=weights)
    again = resolve_extractor(inception_weights=weights)
    assert first.weights_path == again.weights_path  # checked once, same bytes -> same copy
    assert (Path(first.weights_path).parent.stat().st_mode & 0o077) == 0  # 0700 directory
