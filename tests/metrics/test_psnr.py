"""PSNR between quantized and full-precision outputs."""

from __future__ import annotations

import math

import pytest
import torch

from gan_brevitas.errors import MetricError
from gan_brevitas.metrics.psnr import PSNR_CAP_DB, psnr


def _images(n: int = 4) -> torch.Tensor:
    return torch.rand(n, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 1.6 - 0.8


def test_identical_images_give_the_cap_not_inf() -> None:
    images = _images()
    assert psnr(images, images.clone()) == PSNR_CAP_DB


def test_known_perturbation() -> None:
    images = _images()
    # a constant offset of 0.1 on [-1, 1] data: MSE 0.01, PSNR = 10 log10(2^2 / 0.01) = 26.0206 dB
    assert psnr(images + 0.1, images) == pytest.approx(10 * math.log10(4 / 0.01), abs=1e-4)  # float32 inputs
    assert psnr(images * 255, (images + 0.1) * 255, data_range=510.0) == pytest.approx(26.0206, abs=1e-4)


def test_mean_over_images_with_one_identical_pair_stays_finite() -> None:
    images = _images(2)
    other = images.clone()
    other[1] += 0.2  # MSE 0.04 -> 20 dB; image 0 identical -> cap
    expected = (PSNR_CAP_DB + 10 * math.log10(4 / 0.04)) / 2
    assert psnr(other, images) == pytest.approx(expected, abs=1e-4)


def test_single_image_accepted() -> None:
    images = _images(1)
    assert psnr(images[0] + 0.1, images[0]) == pytest.approx(psnr(images + 0.1, images))


def test_bad_inputs_raise_metric_error() -> None:
    images = _images()
    with pytest.raises(MetricError, match="shapes differ"):
        psnr(images, images[:2])
    nan = images.clone()
    nan[0, 0, 0, 0] = float("nan")
    with pytest.raises(MetricError, match="NaN"):
        psnr(nan, images)
    with pytest.raises(MetricError, match="data_range"):
        psnr(images, images, data_range=0.0)
