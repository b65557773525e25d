"""ModelOpt post-training quantization as a method (NVIDIA ModelOpt, imported only when it runs)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

from torch import nn

from gan_brevitas.backends.modelopt_presets import PRESETS, ModelOptPreset, resolve_preset
from gan_brevitas.errors import ConfigError
from gan_brevitas.option_checks import check_positive_ints, check_flags
from gan_brevitas.inputs import InputSource
from gan_brevitas.methods.registry import register_method
from gan_brevitas.quant.config import QuantConfig


@dataclass(frozen=True)
class ModelOptPTQ:
    """Options of ModelOpt PTQ (``recipes.quantize(gen, ModelOptPTQ(preset="w4a8"), ...)``).

    Attributes:
        preset: a `PRESETS` name ("int8", "int8-percentile", "w4a8") or a ModelOptPreset.
        num_samples: calibration inputs.
        batch_size: inputs per calibration forward.
        progress: tqdm progress bar.
        quantize_attention / quantize_blur / quantize_outputs: override the preset's choice.
    """

    preset: Union[str, ModelOptPreset] = "int8"
    num_samples: int = 500
    batch_size: int = 32
    progress: bool = True
    quantize_attention: Optional[bool] = None
    quantize_blur: Optional[bool] = None
    quantize_outputs: Optional[bool] = None

    def __post_init__(self) -> None:
        resolve_preset(self.preset)
        check_positive_ints(self, "num_samples", "batch_size")
        optional = ("quantize_attention", "quantize_blur", "quantize_outputs")
        check_flags(self, "progress", *optional, optional=optional)


@register_method("modelopt", ModelOptPTQ,
                 aliases={f"modelopt-{name}": {"preset": name} for name in PRESETS})
def run_modelopt(float_model: nn.Module, config: QuantConfig, inputs: InputSource,
                 options: ModelOptPTQ) -> nn.Module:
    """Quantize with ModelOpt's preset (`gan_brevitas.backends.modelopt.modelopt_ptq`)."""
    from gan_brevitas.backends.modelopt import modelopt_ptq

    return modelopt_ptq(float_model, config, inputs, preset=options.preset, num_samples=options.num_samples,
                        batch_size=options.batch_size, progress=options.progress,
                        quantize_attention=options.quantize_attention, quantize_blur=options.quantize_blur,
                        quantize_outputs=options.quantize_outputs)
