"""One way to run an exported generator on either CPU engine.

    runner = open_runner("g_int8.onnx", engine="openvino", threads=2)
    image = runner(x)                 # first output, numpy
    images = runner.generate(inputs, n=64)

Both runners (`OrtGenerator`, `OpenVinoGenerator`) have ``engine``, ``path``, ``input_name``,
``run(x) -> list of outputs``, ``__call__(x) -> first output`` and ``generate(inputs, n)``.
`EngineModule` wraps a runner as a torch module, so code written for generators (metrics,
``recipes.evaluate``) measures the deployed file itself.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional, Protocol, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from gan_brevitas.errors import ExportError
from gan_brevitas.inputs import InputSource

ENGINES = ("onnxruntime", "openvino")


class Runner(Protocol):
    engine: str
    path: Path
    input_name: str

    def run(self, x: Tensor | np.ndarray) -> list[np.ndarray]: ...

    def __call__(self, x: Tensor | np.ndarray) -> np.ndarray: ...

    def generate(self, inputs: InputSource, n: int, batch_size: int = 8) -> Tensor: ...


def check_engine(engine: str) -> str:
    if engine not in ENGINES:
        raise ExportError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}.")
    return engine


def open_runner(path: str | os.PathLike, engine: str = "onnxruntime", threads: Optional[int] = None,
                shape: Optional[Sequence[int]] = None) -> Runner:
    """A runner for ``path`` on ``engine`` ("onnxruntime" or "openvino") with ``threads``
    intra-op threads (None: the engine's default). ``shape`` fixes OpenVINO's input shape
    (ONNX Runtime plans per shape itself). OpenVINO IR (.xml) runs on OpenVINO only."""
    check_engine(engine)
    if engine == "openvino":
        from gan_brevitas.deploy.openvino import OpenVinoGenerator

        return OpenVinoGenerator(path, threads, shape)
    if Path(path).suffix == ".xml":
        raise ExportError(f"{path} is OpenVINO IR: run it with engine='openvino', or export an .onnx file.")
    from gan_brevitas.export.ort import OrtGenerator

    return OrtGenerator(path, threads)


def input_shape(path: str | os.PathLike, batch: int) -> tuple[str, tuple[int, ...]]:
    """(input name, concrete shape with batch ``batch``) of an exported model (.onnx or .xml)."""
    if Path(path).suffix != ".xml":
        from gan_brevitas.export.ort import input_shape as onnx_input_shape

        return onnx_input_shape(path, batch)
    from gan_brevitas.export.openvino import _openvino, _read

    model = _read(_openvino().Core(), path)
    first = model.inputs[0]
    dims = list(first.get_partial_shape())
    if any(d.is_dynamic for d in dims[1:]):
        raise ExportError(f"input {first.get_any_name()!r} of {path} has dynamic non-batch dimensions.")
    return first.get_any_name(), (batch, *[d.get_length() for d in dims[1:]])


class EngineModule(nn.Module):
    """A deployed generator as a torch module: ``forward`` runs the runner on CPU numpy and
    returns a float tensor on the input's device. Attributes the generator had (input kind,
    image size, latent size) are read from the export metadata when present."""

    def __init__(self, runner: Runner) -> None:
        super().__init__()
        self.runner = runner
        metadata: dict[str, Any] = getattr(runner, "metadata", {}) or {}
        kind = metadata.get("gan_brevitas.input_kind")
        if kind in ("image", "latent"):
            self.input_kind = kind

    def forward(self, x: Tensor) -> Tensor:
        with torch.no_grad():
            return torch.from_numpy(self.runner(x)).to(x.device)
