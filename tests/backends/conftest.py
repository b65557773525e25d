"""The ModelOpt plugin tests run where nvidia-modelopt imports; elsewhere they skip, saying why.

Tiny generators (the three reference architectures and a DCGAN-style Sequential) and the three
trained demo generators are quantized once per session and shared by the tests.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from gan_brevitas import recipes
from gan_brevitas.demo import zoo
from tests.helpers import dcgan_generator, quiet_gan_brevitas_logs  # noqa: F401 (autouse fixture)

pytest.importorskip(
    "modelopt.torch.quantization",
    reason='nvidia-modelopt is not importable: pip install -e ".[modelopt]" to run the ModelOpt plugin tests',
)

torch.set_num_threads(1)



warnings.filterwarnings("ignore", category=UserWarning)
warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("ignore", category=FutureWarning)

#: Reference architectures at tiny widths. CycleGAN stays shallow (one block, 16 px): deeper
#: random-weight InstanceNorm stacks spread single rounding flips (see ModelOptParity).
SMALL = {
    "stylegan": dict(size=16, channels=16, code_dim=32, n_mlp=2, noise_mode="const"),
    "sagan": dict(image_size=32, z_dim=32, conv_dim=8),
    "cyclegan": dict(ngf=8, n_blocks=1, image_size=16),
}
NAMES = ("dcgan", *SMALL)
#: The packaged trained demo generators (gan_brevitas/demo/checkpoints).
DEMO_NAMES = tuple(f"demo-{name}" for name in zoo.DEMO_MODELS)


def inputs_for(model: torch.nn.Module, n: int = 16, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if getattr(model, "input_kind", "latent") == "image":
        side = model.image_size
        return torch.rand(n, model.in_channels, side, side, generator=g) * 2 - 1
    return torch.randn(n, getattr(model, "latent_dim", 16), generator=g)


@pytest.fixture(scope="session")
def float_generators() -> dict[str, tuple[torch.nn.Module, torch.Tensor]]:
    """name -> (float generator, its calibration inputs)."""
    latents = torch.randn(16, 16, generator=torch.Generator().manual_seed(1))
    out = {"dcgan": (dcgan_generator(z_dim=16, width=16), latents)}
    for name, kwargs in SMALL.items():
        torch.manual_seed(0)
        model = recipes.build_generator(name, **kwargs).eval()
        out[name] = (model, inputs_for(model))
    for name in zoo.DEMO_MODELS:
        out[f"demo-{name}"] = (zoo.load_demo_generator(name), zoo.demo_inputs(name, 16, seed=1))
    return out


@pytest.fixture(scope="session")
def int8_models(float_generators) -> dict[str, torch.nn.Module]:
    """name -> the generator quantized with "modelopt-int8"."""
    return {
        name: recipes.quantize(model, "modelopt-int8", inputs=x, num_samples=len(x), progress=False)
        for name, (model, x) in float_generators.items()
    }
