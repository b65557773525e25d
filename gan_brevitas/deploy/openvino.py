"""OpenVINO runner: runs an exported ONNX file or OpenVINO IR (.xml) on the CPU with the same
interface as the ONNX Runtime runner (`run`, ``__call__``, `generate`). Compilation settings
(fp32 float parts, latency hint) are those of `gan_brevitas.export.openvino.compile_model`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from gan_brevitas.export.openvino import compile_model
from gan_brevitas.inputs import InputSource, iter_batches


class OpenVinoGenerator:
    """Runs an exported generator (ONNX or IR) in OpenVINO on the CPU.

    ``gen(x)`` returns the first output (the image) as a numpy array; `generate` runs many
    inputs in batches and returns a float tensor.
    """

    engine = "openvino"

    def __init__(self, path: str | os.PathLike, threads: Optional[int] = None,
                 shape: Optional[Sequence[int]] = None) -> None:
        self.path = Path(path)
        self.compiled = compile_model(self.path, threads, shape)
        self.request = self.compiled.create_infer_request()
        self.input_name = self.compiled.inputs[0].get_any_name()
        self.output_names = [o.get_any_name() for o in self.compiled.outputs]

    def run(self, x: Tensor | np.ndarray) -> list[np.ndarray]:
        """All outputs for one input batch (copies: the request reuses its buffers)."""
        array = x.detach().cpu().float().numpy() if isinstance(x, Tensor) else np.asarray(x, dtype=np.float32)
        result = self.request.infer({0: np.ascontiguousarray(array)})
        return [np.array(result[output]) for output in self.compiled.outputs]

    def __call__(self, x: Tensor | np.ndarray) -> np.ndarray:
        return self.run(x)[0]

    def generate(self, inputs: InputSource, n: int, batch_size: int = 8) -> Tensor:
        """Images [n, C, H, W] (float32, CPU) for ``n`` inputs read in batches."""
        return torch.cat([torch.from_numpy(self(batch)) for batch in iter_batches(inputs, n, batch_size)])
