"""Extractor resolution (Inception vs the offline demo CNN) and the committed demo CNN."""

from __future__ import annotations

import hashlib
import json
import logging
import socket
import time
from pathlib import Path

import pytest
import torch
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from gan_brevitas.errors import MetricError
from gan_brevitas.metrics import extractors
from gan_brevitas.metrics.extractors import (
    DEMO_CNN_NAME,
    DEMO_CNN_WEIGHTS,
    INCEPTION_ENV_VAR,
    INCEPTION_NAME,
    DemoCNNFeatureExtractor,
    inception_cache_path,
    load_demo_cnn,
    resolve_extractor,
)
from tools.train_extractor import CLASS_NAMES, build_dataset, evaluate


def _fake_inception_file(path: Path) -> Path:
    """A tiny file with the keys of a torch-fidelity Inception state dict (resolution only checks them)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({key: torch.zeros(2) for key in extractors._INCEPTION_KEYS}, path)
    return path


def _sha12(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def test_default_is_demo_cnn_promptly_and_says_so(no_inception: Path, caplog: pytest.LogCaptureFixture) -> None:
    extractors._warned_offline = False
    started = time.perf_counter()
    with caplog.at_level(logging.WARNING, logger="gan_brevitas.metrics.extractors"):
        spec = resolve_extractor()
    assert time.perf_counter() - started < 2.0  # never waits on a network
    assert spec.name == DEMO_CNN_NAME and spec.feature_layer == "128"
    assert not spec.comparable_with_published
    assert "NOT comparable" in spec.label and DEMO_CNN_NAME in spec.label
    assert spec.weights_sha256 == _sha12(DEMO_CNN_WEIGHTS)
    assert "NOT comparable with published Inception FIDs" in caplog.text


def test_env_var_to_missing_file_is_a_clear_error(no_inception: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(INCEPTION_ENV_VAR, str(no_inception / "nope.pth"))
    with pytest.raises(MetricError, match=INCEPTION_ENV_VAR):
        resolve_extractor()


def test_explicit_missing_file_is_a_clear_error(no_inception: Path) -> None:
    with pytest.raises(MetricError, match="does not exist"):
        resolve_extractor(inception_weights=no_inception / "nope.pth")


def test_explicit_file_then_env_then_cache(no_inception: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cached = _fake_inception_file(inception_cache_path())
    assert str(cached).startswith(str(no_inception))
    spec = resolve_extractor()
    assert (spec.name, spec.feature_layer, spec.source) == (INCEPTION_NAME, "2048", str(cached))
    assert Path(spec.weights_path).read_bytes() == cached.read_bytes() and spec.weights_path != str(cached)
    assert spec.comparable_with_published and "NOT" not in spec.label

    from_env = _fake_inception_file(tmp_path / "env" / "inception.pth")
    monkeypatch.setenv(INCEPTION_ENV_VAR, str(from_env))
    assert resolve_extractor().source == str(from_env)

    explicit = tmp_path / "explicit.pth"
    torch.save({key: torch.ones(3) for key in extractors._INCEPTION_KEYS}, explicit)
    spec = resolve_extractor(inception_weights=explicit)
    assert spec.source == str(explicit) and spec.weights_sha256 == _sha12(explicit)


class _NotWeights:
    pass


def test_unsafe_or_wrong_inception_file_is_rejected(tmp_path: Path) -> None:
    pickled_object = tmp_path / "object.pth"
    torch.save({"fc.weight": _NotWeights()}, pickled_object)
    with pytest.raises(MetricError, match="weights_only=True"):
        resolve_extractor(inception_weights=pickled_object)
    other_model = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(1)}, other_model)
    with pytest.raises(MetricError, match="not a torch-fidelity Inception-v3"):
        resolve_extractor(inception_weights=other_model)


def test_allow_download_offline_falls_back_promptly(no_inception: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def hanging_connection(*args: object, **kwargs: object) -> socket.socket:
        time.sleep(30)  # what an unresolvable host can do on a machine without network
        raise OSError("unreachable")

    monkeypatch.setattr(extractors.socket, "create_connection", hanging_connection)
    started = time.perf_counter()
    spec = resolve_extractor(allow_download=True, download_timeout_s=0.5)
    assert time.perf_counter() - started < 3.0
    assert spec.name == DEMO_CNN_NAME
    assert not inception_cache_path().exists()


def test_demo_cnn_is_registered_with_torch_fidelity() -> None:
    assert FEATURE_EXTRACTORS_REGISTRY[DEMO_CNN_NAME] is DemoCNNFeatureExtractor


def test_demo_cnn_extractor_contract() -> None:
    extractor = DemoCNNFeatureExtractor(DEMO_CNN_NAME, ["128", "logits"])
    images = torch.randint(0, 256, (5, 3, 64, 64), dtype=torch.uint8)  # other sizes are resized to 32
    features, logits = extractor(images)
    assert features.shape == (5, 128) and logits.shape == (5, len(CLASS_NAMES))
    assert extractor.get_default_feature_layer_for_metric("fid") == "128"
    with pytest.raises(MetricError, match="uint8"):
        extractor(images.float())


def test_committed_weights_are_small_documented_and_accurate() -> None:
    assert DEMO_CNN_WEIGHTS.stat().st_size < 2 * 1024 * 1024
    note = json.loads(DEMO_CNN_WEIGHTS.with_suffix(".json").read_text())
    # Trained before the trainer moved out of the package to tools/.
    assert note["command"].startswith(("python -m tools.train_extractor", "python -m gan_brevitas.metrics.train_extractor"))
    assert note["weights_sha256"] == hashlib.sha256(DEMO_CNN_WEIGHTS.read_bytes()).hexdigest()

    model, class_names = load_demo_cnn()
    assert tuple(class_names) == CLASS_NAMES
    images, labels = build_dataset("heldout", seed=note["config"]["seed"], crops_per_source=200)
    accuracy = evaluate(model, images, labels)
    assert accuracy > 0.9
    digits = labels < 10
    assert evaluate(model, images[digits], labels[digits]) > 0.9
    assert evaluate(model, images[~digits], labels[~digits]) > 0.9
