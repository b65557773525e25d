"""Shared pieces of the hostile-input tests: a malicious pickle, a small quantized generator."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gan_brevitas import QuantConfig, recipes
from tests.metrics.conftest import no_inception  # noqa: F401 (fixture)


class WritesMarker:
    """Unpickling this (torch.load with weights_only=False) writes a marker file: code execution."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def write_malicious_pickle(path: Path, marker: Path) -> Path:
    torch.save({"Conv2d_1a_3x3.conv.weight": WritesMarker(marker)}, path)
    return path


SAGAN = dict(image_size=32, z_dim=32, conv_dim=8)


@pytest.fixture(scope="session")
def quantized_sagan():
    """A small quantized SAGAN and the latents it was calibrated on."""
    model = recipes.build_generator("sagan", **SAGAN)
    z = torch.randn(8, 32, generator=torch.Generator().manual_seed(0))
    config = QuantConfig(weight_bits=4, per_channel=True)
    return recipes.quantize(model, "vanilla-ptq", config=config, inputs=z, num_samples=8, progress=False), z


def leftovers(directory: Path) -> list[str]:
    """Temporary or staging files that a writer left behind."""
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp") or p.name.startswith(".gan-brevitas"))
