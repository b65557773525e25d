"""What every backend module shares: the `Backend` protocol, the ModelOpt install line, the
sniff that tells a ModelOpt model without importing ModelOpt, and reading a file's metadata."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Optional, Protocol

from torch import nn

from gan_brevitas.errors import CheckpointError

MODELOPT_INSTALL = 'pip install -e ".[modelopt]"'
#: The ``format`` metadata of files saved by the ModelOpt backend (the Brevitas ones differ).
MODELOPT_FILE_FORMAT = "gan-brevitas/modelopt-generator/1"


class Backend(Protocol):
    """What the package needs from a quantization toolkit."""

    name: str

    def quantize(self, float_model: nn.Module, config: Any, inputs: Any, **options: Any) -> nn.Module:
        """The backend's basic PTQ of a folded float model (converted and calibrated)."""

    def describe_rows(self, model: nn.Module) -> list[Any]:
        """The `describe` rows (`gan_brevitas.quant.describe.LayerRow`) of a quantized model."""

    def save(self, model: nn.Module, path: str | os.PathLike) -> Path:
        """Write the quantized model to one safetensors file."""

    def load(self, path: str | os.PathLike, model: Optional[nn.Module] = None) -> nn.Module:
        """Rebuild a model written by `save` (``model``: the float architecture of a user generator)."""

    def export(self, model: nn.Module, path: str | os.PathLike, options: Any, *, inputs: Any = None,
               example_input: Any = None) -> Any:
        """Write a Q/DQ ONNX file (`gan_brevitas.export.qcdq.ExportOptions`); an ExportReport."""

    def parity(self, model: nn.Module, path: str | os.PathLike, inputs: Any, **options: Any) -> Any:
        """ONNX Runtime against the PyTorch model on the same inputs."""


def is_modelopt_model(model: nn.Module) -> bool:
    """True when ``model`` holds ModelOpt quantizers (checked without importing ModelOpt)."""
    quant_nn = sys.modules.get("modelopt.torch.quantization.nn")
    if quant_nn is None:
        return False
    return any(isinstance(module, quant_nn.TensorQuantizer) for module in model.modules())


def read_file_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The metadata of a safetensors file (no tensor is read); CheckpointError if unreadable."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return dict(handle.metadata() or {})
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path} is not a readable safetensors file: {err}") from None
