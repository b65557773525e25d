"""Optional back ends that quantize generators with other toolkits than Brevitas.

`gan_brevitas.plugins.modelopt` quantizes through NVIDIA ModelOpt (``pip install -e
".[modelopt]"``). Importing this package never imports ModelOpt: the recipes table registers
the ModelOpt methods through `modelopt_method`, which loads the plugin only when such a method
runs, so gan_brevitas works without ModelOpt installed.
"""

from __future__ import annotations

import sys
from typing import Any, Callable

from torch import nn

#: What `recipes.quantize` calls: (folded float model, QuantConfig, inputs, **options) -> model.
Handler = Callable[..., nn.Module]

MODELOPT_INSTALL = 'pip install -e ".[modelopt]"'


def modelopt_method(preset: str) -> Handler:
    """A `recipes.METHODS` handler that quantizes with the ModelOpt preset ``preset``.

    The plugin (and ModelOpt) is imported when the handler runs, not when it is made.
    """

    def handler(float_model: nn.Module, config: Any, inputs: Any, **options: Any) -> nn.Module:
        from gan_brevitas.plugins.modelopt import modelopt_ptq

        return modelopt_ptq(float_model, config, inputs, preset=preset, **options)

    handler.__name__ = f"modelopt_{preset.replace('-', '_')}"
    handler.__doc__ = f"Quantize with ModelOpt's {preset!r} preset (gan_brevitas.plugins.modelopt)."
    return handler


def is_modelopt_model(model: nn.Module) -> bool:
    """True when ``model`` holds ModelOpt quantizers.

    Checked without importing ModelOpt: a model can only hold its quantizers if ModelOpt was
    imported already.
    """
    quant_nn = sys.modules.get("modelopt.torch.quantization.nn")
    if quant_nn is None:
        return False
    return any(isinstance(module, quant_nn.TensorQuantizer) for module in model.modules())


__all__ = ["MODELOPT_INSTALL", "Handler", "is_modelopt_model", "modelopt_method"]
