"""Small generators shared by the tests (built here; no download, no committed weights), and the
log-quieting fixture of the export and plugin test packages."""

import logging

import pytest
import torch
from torch import nn

from gan_brevitas import QuantConfig
from gan_brevitas.cpu_features import SATURATION_FREE_WEIGHT_BITS, int8_pairs_saturate

#: Weight bits that ONNX Runtime and OpenVINO compute exactly on this CPU: 7 where their int8
#: product pairs saturate in 16 bits (AVX2 without VNNI, `gan_brevitas.cpu_features`), else 8.
#: The engine-parity tests quantize with them, so on every CPU they test our graphs, not the
#: processor's saturation.
ENGINE_WEIGHT_BITS = SATURATION_FREE_WEIGHT_BITS if int8_pairs_saturate() else 8


#: For ONNX Runtime parity tests of ModelOpt's graphs, which carry 8-bit weights only (its
#: ONNX export refuses 7): where the CPU saturates, ONNX Runtime's fused run cannot match and
#: the test must fail (strict); with VNNI or AMX it must pass.
SATURATING_CPU_XFAIL = pytest.mark.xfail(
    int8_pairs_saturate(), strict=True,
    reason="this CPU's int8 kernels add product pairs in 16 bits and saturate on 8-bit weights",
)


def engine_exact_config(**fields) -> QuantConfig:
    """The default QuantConfig (with ``fields``) at `ENGINE_WEIGHT_BITS`."""
    return QuantConfig(**{"weight_bits": ENGINE_WEIGHT_BITS, **fields})


@pytest.fixture(autouse=True)
def quiet_gan_brevitas_logs():
    """Only errors from gan_brevitas in these tests; the level is restored afterwards so other
    test modules still see warnings (some assert on them). Autouse where a conftest imports it."""
    logger = logging.getLogger("gan_brevitas")
    previous = logger.level
    logger.setLevel(logging.ERROR)
    yield
    logger.setLevel(previous)


def dcgan_generator(z_dim: int = 16, width: int = 16, seed: int = 0) -> nn.Sequential:
    """A DCGAN-style user generator: ConvT + BatchNorm + ReLU/LeakyReLU, Tanh; 16x16 output."""
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Unflatten(1, (z_dim, 1, 1)),
        nn.ConvTranspose2d(z_dim, width * 2, 4, 1, 0, bias=False),
        nn.BatchNorm2d(width * 2),
        nn.ReLU(),
        nn.ConvTranspose2d(width * 2, width, 4, 2, 1, bias=False),
        nn.BatchNorm2d(width),
        nn.LeakyReLU(0.2),
        nn.ConvTranspose2d(width, 3, 4, 2, 1),
        nn.Tanh(),
    )
    # Non-trivial BatchNorm statistics so that folding is really exercised.
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.2)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.normal_(0, 0.1)
    return model.eval()


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())
