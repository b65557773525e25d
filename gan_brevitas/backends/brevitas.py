"""The Brevitas backend: the package's own quantized generators (`gan_brevitas.quant`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

from torch import Tensor, nn

from gan_brevitas.export.qcdq import ExportOptions, ExportReport, export_model
from gan_brevitas.inputs import InputSource
from gan_brevitas.ptq.vanilla import vanilla_ptq
from gan_brevitas.quant.config import QuantConfig
from gan_brevitas.quant.describe import LayerRow, describe_rows
from gan_brevitas.quant.serialize import load_quantized, save_quantized


class BrevitasBackend:
    """`gan_brevitas.backends.Backend` for models converted by `gan_brevitas.quant.convert`."""

    name = "brevitas"

    def quantize(self, float_model: nn.Module, config: QuantConfig, inputs: InputSource, **options: Any) -> nn.Module:
        return vanilla_ptq(float_model, config, inputs, **options)

    def describe_rows(self, model: nn.Module) -> list[LayerRow]:
        return describe_rows(model)

    def save(self, model: nn.Module, path: str | os.PathLike) -> Path:
        return save_quantized(model, path)

    def load(self, path: str | os.PathLike, model: Optional[nn.Module] = None) -> nn.Module:
        return load_quantized(path, model)

    def export(self, model: nn.Module, path: str | os.PathLike, options: ExportOptions, *,
               inputs: Optional[InputSource] = None, example_input: Optional[Tensor] = None) -> ExportReport:
        return export_model(model, path, options, example_input=example_input, inputs=inputs)

    def parity(self, model: nn.Module, path: str | os.PathLike, inputs: InputSource, **options: Any) -> Any:
        from gan_brevitas.deploy.parity import parity

        return parity(model, path, inputs, **options)


BACKEND = BrevitasBackend()
