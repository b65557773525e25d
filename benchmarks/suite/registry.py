"""Where each suite checkpoint comes from, and where it lives on this machine.

Every checkpoint was committed to a public GitHub repository; it is copied out of a snapshot
of that repository (``python -m benchmarks.suite.prepare``) into a cache folder that git
ignores, and checked against the sha256 recorded here before any model is built from it.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

#: Default cache folder (ignored by git); ``GAN_BREVITAS_SUITE_CACHE`` overrides it.
DEFAULT_CACHE = Path(__file__).resolve().parent / ".cache"


class SuiteCacheError(FileNotFoundError):
    """A suite checkpoint is missing from the cache or does not match its recorded sha256."""


@dataclass(frozen=True)
class Source:
    """One public checkpoint: repository, commit, path, git blob, sha256, licence."""

    name: str
    family: str
    repository: str
    commit: str
    path: str
    blob: str
    sha256: str
    licence: str
    description: str

    @property
    def filename(self) -> str:
        return f"{self.name}.pth"


SOURCES: dict[str, Source] = {
    s.name: s
    for s in (
        Source(
            name="sketch_translator",
            family="image-to-image",
            repository="Jee-371/Image-to-Sketch-CycleGAN-",
            commit="b9fdc39dd24186b981ffb639da6df0ceb89724ee",
            path="generator.pth",
            blob="09cfa9bc2b7e435ef110bf295820ae7bd79fe1f7",
            sha256="7f9f6e57e7bcae606d93a8d0caac60c9f524f82bc079e42a7ede5165d0a9ae08",
            licence="none stated in the repository (used here for measurement only)",
            description="photo -> sketch encoder-decoder: Conv 7x7, two stride-2 Conv, two "
            "ConvTranspose, Conv 7x7; InstanceNorm + ReLU; tanh output",
        ),
        Source(
            name="srgan_x4",
            family="super-resolution",
            repository="weichen283/srgan-pytorch",
            commit="73a3cfdb12a33102dfd1c18fd4545bcfe2c4628d",
            path="netG.pth",
            blob="6cffc5fb4e9ae387388789d03695253ccf7ed592",
            sha256="a413175128d79957a62115a72de8266b81f6a881a6365b67370d51d3ca945e1a",
            licence="none stated in the repository (used here for measurement only)",
            description="SRGAN x4 (flowers): Conv 9x9 + PReLU, 5 residual blocks "
            "(Conv-BN-SiLU-Conv-BN), long skip add, 2 x (Conv + PixelShuffle + SiLU), Conv 9x9",
        ),
        Source(
            name="srvgg_x4",
            family="super-resolution",
            repository="Sourabh-lincode/MSL-Bonnet-Inspection",
            commit="f20cb8fdb146c2cc2ae8e152c6be5a4f5302e916",
            path="weights/realesr-animevideov3.pth",
            blob="40473f31d1fb83c5be2ee3e56e4cee0af0d97f35",
            sha256="4e1e09ba96d08bd4b8455e8897c3242a3501e3766f359941ea894122e158a932",
            licence="BSD-3-Clause (Real-ESRGAN's realesr-animevideov3 release, re-committed here)",
            description="Real-ESRGAN compact x4 (anime video): 17 x (Conv 3x3 + PReLU), Conv to "
            "48 channels, PixelShuffle x4, plus nearest-upsampled input",
        ),
        Source(
            name="dcgan_mnist",
            family="noise-to-image",
            repository="dennisjooo/DCGAN-on-MNIST",
            commit="afc740a1b0e6aefa900080288938de7db2291682",
            path="models/generator.pth",
            blob="8d62e613f9b3c5af2513a4b11293c005891d7918",
            sha256="2555347abe384eb3839c9873f343c17866fead25484be226fe1c15674b22ff4c",
            licence="none stated in the repository (used here for measurement only)",
            description="DCGAN on MNIST: 100-d latent, 4 x ConvTranspose (BatchNorm + "
            "LeakyReLU 0.2 between), tanh, 28x28 grey",
        ),
    )
}


def cache_dir() -> Path:
    """The cache folder: ``GAN_BREVITAS_SUITE_CACHE`` if set, else benchmarks/suite/.cache."""
    override = os.environ.get("GAN_BREVITAS_SUITE_CACHE")
    return Path(override) if override else DEFAULT_CACHE


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verified_path(source: Source, cache: Path | None = None) -> Path:
    """The cached checkpoint of ``source``, after checking its sha256; SuiteCacheError if not."""
    path = (cache or cache_dir()) / source.filename
    if not path.is_file():
        raise SuiteCacheError(
            f"{path} is missing: the suite's checkpoints are not in git. Copy them in with "
            "`python -m benchmarks.suite.prepare --mirror-root DIR` (see benchmarks/suite/README.md)."
        )
    actual = sha256_of(path)
    if actual != source.sha256:
        raise SuiteCacheError(
            f"{path} has sha256 {actual}, expected {source.sha256} ({source.repository}@"
            f"{source.commit[:10]}:{source.path}); delete it and run the prepare step again."
        )
    return path
