"""Vanilla PTQ (§3.5, §4.1): weights from their quantiles, activations from the moving
average of per-sample quantiles of the full-precision model (or the other range estimators of
`QuantConfig`; weight_range="auto" chooses one per layer first). Nothing is trained."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from gan_brevitas.errors import ConfigError
from gan_brevitas.option_checks import check_flags
from gan_brevitas.inputs import InputSource
from gan_brevitas.ptq.calibrate import calibrate_activations
from gan_brevitas.ptq.layer_choice import choose_weight_ranges
from gan_brevitas.quant.config import QuantConfig
from gan_brevitas.quant.convert import initialise_weight_scales, quantize_model


@dataclass(frozen=True)
class VanillaPtqOptions:
    """Options of vanilla PTQ (the keyword options of ``recipes.quantize(..., "vanilla-ptq")``).

    Attributes:
        num_samples: inputs fed one at a time while the activation quantiles are averaged
            (the paper: 500).
        progress: tqdm progress bar.
    """

    num_samples: int = 500
    progress: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.num_samples, bool) or not isinstance(self.num_samples, int) or self.num_samples < 1:
            raise ConfigError(f"num_samples must be a positive integer (the paper: 500), got {self.num_samples!r}.")
        check_flags(self, "progress")


def vanilla_ptq(
    float_model: nn.Module,
    config: QuantConfig,
    inputs: InputSource,
    num_samples: int = 500,
    progress: bool = True,
) -> nn.Module:
    """Convert ``float_model`` (already folded) and calibrate it; returns the quantized copy."""
    options = VanillaPtqOptions(num_samples=num_samples, progress=progress)
    resolved = choose_weight_ranges(float_model, config, inputs) if config.weight_range == "auto" else config
    qmodel = quantize_model(float_model, resolved)
    calibrate_activations(qmodel, float_model, inputs, resolved, num_samples=options.num_samples,
                          progress=options.progress)
    if resolved.weight_scaling == "learned":
        initialise_weight_scales(qmodel)  # also those of layers that never ran
    if resolved is not config:
        qmodel.resolved_quant_config = resolved  # recorded by recipes.quantize
    return qmodel.eval()
