"""gan-brevitas: quantization of GAN generators with Brevitas (Andreev et al., 2021)."""

import logging

# torch.utils.cpp_extension (imported by Brevitas) warns "No CUDA runtime is found" on every
# CPU-only import; it says nothing about gan-brevitas and would open every CLI run.
logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)

from gan_brevitas.quant.config import QuantConfig  # noqa: E402

__all__ = ["QuantConfig", "recipes"]
__version__ = "0.1.0"


def __getattr__(name: str):
    # `from gan_brevitas import recipes` without importing torch-heavy modules at package import.
    if name == "recipes":
        import importlib

        return importlib.import_module("gan_brevitas.recipes")
    raise AttributeError(name)
