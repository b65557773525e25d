"""QAT training inputs of the suite: crops of the calibration photos only, reproducible."""

from __future__ import annotations

import torch

from benchmarks.suite import data


def test_crops_come_from_the_calibration_photos_at_the_model_size():
    crops = data.CalibrationCrops(12, factor=4)
    assert len(crops.photos) == len(data.CALIBRATION_PHOTOS)
    assert not set(data.CALIBRATION_PHOTOS) & set(data.TEST_PHOTOS)
    batch = crops(5)
    assert batch.shape == (5, 3, 12, 12) and 0.0 <= float(batch.min()) and float(batch.max()) <= 1.0
    assert not torch.equal(batch[0], batch[1])  # random crops, not one image repeated


def test_the_same_seed_gives_the_same_crops():
    assert torch.equal(data.CalibrationCrops(16, seed=3)(4), data.CalibrationCrops(16, seed=3)(4))
    assert not torch.equal(data.CalibrationCrops(16, seed=3)(4), data.CalibrationCrops(16, seed=4)(4))
