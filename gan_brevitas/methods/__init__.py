"""Quantization methods: one frozen config dataclass per method, registered with its handler.

    from gan_brevitas.methods import LSQQAT, VanillaPTQ, method_config
    recipes.quantize(gen, LSQQAT(epochs=4), config=QuantConfig(), inputs=sampler)
    recipes.quantize(gen, "lsq-qat", epochs=4, config=QuantConfig(), inputs=sampler)  # the same

`registry` holds the table (`register_method`, `method_config`, `method_names`); `ptq`, `qat`
and `modelopt` register the built-in methods when this package is imported.
"""

from gan_brevitas.methods.registry import (
    MethodSpec,
    check_option_names,
    method_config,
    method_names,
    method_spec,
    register_method,
    resolve_method,
)
from gan_brevitas.methods.ptq import DEFAULT_METHOD, GPTQ, PAPER_METHOD, ArBRECQ, BoundDistill, MixedPrecision, SteBRECQ, VanillaPTQ
from gan_brevitas.methods.qat import LSQQAT, MAQAT
from gan_brevitas.methods.modelopt import ModelOptPTQ

__all__ = [
    "DEFAULT_METHOD",
    "LSQQAT",
    "MAQAT",
    "ArBRECQ",
    "BoundDistill",
    "GPTQ",
    "PAPER_METHOD",
    "MethodSpec",
    "MixedPrecision",
    "ModelOptPTQ",
    "SteBRECQ",
    "VanillaPTQ",
    "check_option_names",
    "method_config",
    "method_names",
    "method_spec",
    "register_method",
    "resolve_method",
]
