"""The real-generator suite's loader: cache checks always; the models only where the cache exists."""

from pathlib import Path

import pytest
import torch

from benchmarks.suite import SOURCES, SuiteCacheError, load_suite, suite_available
from benchmarks.suite.registry import verified_path

SOURCE = SOURCES["dcgan_mnist"]


def test_missing_checkpoint_names_the_prepare_step(tmp_path: Path) -> None:
    with pytest.raises(SuiteCacheError, match="benchmarks.suite.prepare"):
        verified_path(SOURCE, tmp_path)


def test_wrong_sha256_is_refused(tmp_path: Path) -> None:
    (tmp_path / SOURCE.filename).write_bytes(b"not the checkpoint")
    with pytest.raises(SuiteCacheError, match=SOURCE.sha256):
        verified_path(SOURCE, tmp_path)


def test_unknown_name_lists_the_suite() -> None:
    with pytest.raises(KeyError, match="sketch_translator"):
        load_suite(["stylegan3"])


@pytest.mark.skipif(not suite_available(), reason="suite checkpoints not cached (python -m benchmarks.suite.prepare)")
def test_suite_loads_and_runs() -> None:
    entries = load_suite()
    assert [e.family for e in entries] == ["image-to-image", "super-resolution", "super-resolution", "noise-to-image"]
    for entry in entries:
        assert not entry.model.training
        assert entry.calib.shape[1:] == entry.test.shape[1:]
        assert not torch.equal(entry.calib[: len(entry.test)], entry.test)
        with torch.no_grad():
            out = entry.model(entry.test)
        low, high = entry.output_range
        assert torch.isfinite(out).all()
        assert out.shape[0] == entry.test.shape[0]
        assert out.min() >= low - 0.5 and out.max() <= high + 0.5
