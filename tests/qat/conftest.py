"""Shared pieces of the QAT tests: one thread, a tiny generator, small run options."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from tests.helpers import dcgan_generator


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """QAT tests run single-threaded: two threads on 2 shared cores run up to 7x slower under
    load. Module scope, so module-scoped fixtures (a finished run) get it too."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def generator() -> torch.nn.Module:
    """A DCGAN-style generator, latent 16 -> 3x16x16 (BatchNorm folded by quantize)."""
    return dcgan_generator(z_dim=16, width=16, seed=0)


@pytest.fixture(scope="module")
def latents() -> torch.Tensor:
    return torch.randn(96, 16, generator=torch.Generator().manual_seed(1))


def small_options(**changes: Any) -> dict[str, Any]:
    """A CPU-sized run: 64 distillation pairs, batch 8, 16 held-out samples, no progress bars."""
    options: dict[str, Any] = dict(
        epochs=2, batch_size=8, num_train=64, num_samples=32, eval_samples=16, loss="mse",
        lr_weights=1e-3, lr_quant=1e-4, progress=False,
    )
    options.update(changes)
    return options


@pytest.fixture(scope="session")
def vgg_file(tmp_path_factory):
    """Random VGG16 features in torchvision's full-model key layout ("features.N.weight")."""
    from gan_brevitas.qat.losses import vgg16_features

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        state = {f"features.{k}": v for k, v in vgg16_features().state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(2, 2)  # ignored, as in the real file
    path = tmp_path_factory.mktemp("vgg") / "vgg16-397923af.pth"
    torch.save(state, path)
    return path
