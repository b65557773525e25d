"""Tiny generators, quantized once per test session, shared by the export tests."""

from __future__ import annotations

import warnings

import pytest
import torch

from gan_brevitas import QuantConfig, recipes
from tests.helpers import ENGINE_WEIGHT_BITS, dcgan_generator, quiet_gan_brevitas_logs  # noqa: F401 (autouse fixture)

pytest.importorskip("onnxruntime")




warnings.filterwarnings("ignore", category=UserWarning, module="brevitas")

#: Reference architectures at tiny widths (fast), one per input kind and layer mix.
SMALL = {
    "stylegan": dict(size=16, channels=16, code_dim=32, n_mlp=2, noise_mode="const"),
    "sagan": dict(image_size=32, z_dim=32, conv_dim=8),
    "cyclegan": dict(ngf=8, n_blocks=1, image_size=16),
}


def inputs_for(model: torch.nn.Module, n: int = 16, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if getattr(model, "input_kind", "latent") == "image":
        side = model.image_size
        return torch.rand(n, model.in_channels, side, side, generator=g) * 2 - 1
    dim = getattr(model, "latent_dim", 16)
    return torch.randn(n, dim, generator=g)


def quantized(model: torch.nn.Module, x: torch.Tensor, **config) -> torch.nn.Module:
    """Vanilla PTQ with the paper's scheme (and ``config``), weights at `ENGINE_WEIGHT_BITS` unless given."""
    config = QuantConfig.paper(**{"weight_bits": ENGINE_WEIGHT_BITS, **config})
    return recipes.quantize(model, "vanilla-ptq", config=config, inputs=x, num_samples=len(x), progress=False)


@pytest.fixture(scope="session")
def dcgan():
    """(float DCGAN-style Sequential with three ConvTranspose, its latents)."""
    return dcgan_generator(z_dim=16, width=16), torch.randn(16, 16, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="session")
def small_generators():
    """name -> (float generator, inputs) for the three reference architectures."""
    out = {}
    for name, kwargs in SMALL.items():
        torch.manual_seed(0)
        model = recipes.build_generator(name, **kwargs).eval()
        out[name] = (model, inputs_for(model))
    return out


@pytest.fixture(scope="session")
def exported(small_generators, tmp_path_factory):
    """name -> (qmodel, inputs, report) for the ONNX Runtime export of each reference generator
    (the paper's scheme: asymmetric activations, per-tensor 8-bit weights)."""
    out = {}
    folder = tmp_path_factory.mktemp("ort")
    for name, (model, x) in small_generators.items():
        qmodel = quantized(model, x)
        out[name] = (qmodel, x, recipes.export(qmodel, folder / f"{name}.onnx", "onnxruntime"))
    return out
