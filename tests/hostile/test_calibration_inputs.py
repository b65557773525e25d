"""Point 4: calibration data that is empty or of the wrong shape is refused up front, with the
expected shape in the message; nothing loops forever."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from gan_brevitas import recipes
from gan_brevitas.errors import CalibrationError
from gan_brevitas.inputs import MAX_EMPTY_BATCHES, iter_batches
from tests.hostile.conftest import SAGAN


def _sagan():
    return recipes.build_generator("sagan", **SAGAN)


def test_sampler_returning_empty_batches_is_refused() -> None:
    with pytest.raises(CalibrationError, match=r"the sampler returned an empty batch \(shape \(0, 32\)\) for batch_size=\d+"):
        recipes.quantize(_sagan(), "vanilla-ptq", inputs=lambda n: torch.zeros(0, 32), num_samples=4, progress=False)


def test_endless_iterable_of_empty_batches_is_refused() -> None:
    endless = (torch.zeros(0, 32) for _ in itertools.count())
    with pytest.raises(CalibrationError, match=f"gave {MAX_EMPTY_BATCHES} empty batches in a row"):
        list(iter_batches(endless, 10, 2))


def test_a_few_empty_batches_in_a_finite_iterable_are_skipped() -> None:
    batches = [torch.zeros(0, 32), torch.ones(3, 32), torch.zeros(0, 32), torch.ones(2, 32)]
    assert sum(len(b) for b in iter_batches(batches, 5, 4)) == 5


@pytest.mark.parametrize(
    "inputs",
    [torch.randn(8, 64), lambda n: torch.randn(n, 64), [torch.randn(4, 64)], [(torch.randn(4, 64), torch.zeros(4))]],
    ids=["tensor", "sampler", "batches", "pairs"],
)
def test_wrong_latent_size_names_the_expected_shape(inputs) -> None:
    with pytest.raises(CalibrationError, match=r"has shape \(\d+, 64\), but this generator expects latents of shape \[N, 32\]"):
        recipes.quantize(_sagan(), "vanilla-ptq", inputs=inputs, num_samples=4, progress=False)


def test_wrong_channel_count_of_images() -> None:
    model = recipes.build_generator("cyclegan", ngf=4, n_blocks=1, image_size=16)
    with pytest.raises(CalibrationError, match=r"has shape \(4, 1, 16, 16\), but this generator expects images of shape \[N, 3, H, W\]"):
        recipes.quantize(model, "vanilla-ptq", inputs=torch.rand(4, 1, 16, 16), num_samples=4, progress=False)


def test_images_given_to_a_latent_generator() -> None:
    with pytest.raises(CalibrationError, match=r"expects latents of shape \[N, 32\]"):
        recipes.quantize(_sagan(), "vanilla-ptq", inputs=torch.rand(4, 3, 32, 32), num_samples=4, progress=False)


@pytest.mark.parametrize("value", [float("inf"), float("nan")])
def test_a_generator_with_non_finite_weights_is_refused_naming_the_tensor(value) -> None:
    from gan_brevitas.errors import CheckpointError

    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 3, 3, padding=1))
    with torch.no_grad():
        model[2].weight[0, 0, 0, 0] = value
    with pytest.raises(CheckpointError, match=r"2\.weight holds 1 NaN/Inf value"):
        recipes.quantize(model, inputs=torch.rand(4, 3, 8, 8), num_samples=4, progress=False)
