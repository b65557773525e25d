"""The quantization-aware training methods MA-QAT and LSQ-QAT (`gan_brevitas.qat`).

`MAQAT` and `LSQQAT` have the fields of `gan_brevitas.qat.options.QATOptions` (except
``method``), each None by default: None takes the paper's value for the generator being
trained (Appendix A, per model; ``preset`` None detects the model). `resolve` gives the full
`QATOptions` for a model.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

from torch import nn

from gan_brevitas.inputs import InputSource
from gan_brevitas.methods.registry import register_method
from gan_brevitas.qat.options import QATOptions
from gan_brevitas.qat.train import train_qat
from gan_brevitas.quant.config import QuantConfig

#: Keyword arguments of `train_qat` that are Python objects, not options.
QAT_EXTRAS = ("discriminator", "eval_inputs", "on_epoch_end")


class _QATMethod:
    """What MAQAT and LSQQAT share: the QATOptions they stand for."""

    method: str

    def __post_init__(self) -> None:
        self.resolve()  # validates every field set

    def overrides(self) -> dict[str, Any]:
        """The fields set (not None), except ``preset``."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name != "preset" and getattr(self, f.name) is not None}

    def resolve(self, preset: Optional[str] = None) -> QATOptions:
        """The full options: the paper's defaults for ``self.preset`` (else ``preset``, else
        "generic"), replaced by the fields set."""
        return QATOptions.build(self.method, self.preset or preset or "generic", **self.overrides())


def _qat_config(name: str, method: str, doc: str) -> type:
    fields = [(f.name, f"Optional[{f.type}]", dataclasses.field(default=None))
              for f in dataclasses.fields(QATOptions) if f.name != "method"]
    cls = dataclasses.make_dataclass(name, fields, bases=(_QATMethod,), frozen=True,
                                     namespace={"method": method, "__doc__": doc, "__module__": __name__})
    return cls


MAQAT = _qat_config("MAQAT", "ma-qat", "MA-QAT options (fields of QATOptions; None = the paper's value).")
LSQQAT = _qat_config("LSQQAT", "lsq-qat", "LSQ-QAT options (fields of QATOptions; None = the paper's value).")


def _train(float_model: nn.Module, config: QuantConfig, inputs: InputSource, options: Any, **extras: Any) -> nn.Module:
    return train_qat(float_model, config, inputs, options.method, preset=options.preset,
                     **options.overrides(), **extras)


register_method("ma-qat", MAQAT, extras=QAT_EXTRAS)(_train)
register_method("lsq-qat", LSQQAT, extras=QAT_EXTRAS)(_train)
