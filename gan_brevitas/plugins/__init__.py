"""Optional back ends that quantize generators with other toolkits than Brevitas.

`gan_brevitas.plugins.modelopt` quantizes through NVIDIA ModelOpt (``pip install -e
".[modelopt]"``). Importing this package never imports ModelOpt: the ModelOpt methods
(`gan_brevitas.methods.modelopt`) load the plugin only when one runs, so gan_brevitas works
without ModelOpt installed.
"""

from __future__ import annotations

import sys

from torch import nn

MODELOPT_INSTALL = 'pip install -e ".[modelopt]"'


def is_modelopt_model(model: nn.Module) -> bool:
    """True when ``model`` holds ModelOpt quantizers.

    Checked without importing ModelOpt: a model can only hold its quantizers if ModelOpt was
    imported already.
    """
    quant_nn = sys.modules.get("modelopt.torch.quantization.nn")
    if quant_nn is None:
        return False
    return any(isinstance(module, quant_nn.TensorQuantizer) for module in model.modules())


__all__ = ["MODELOPT_INSTALL", "is_modelopt_model"]
