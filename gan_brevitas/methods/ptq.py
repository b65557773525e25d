"""The post-training methods: vanilla PTQ, mixed precision, STE-BRECQ, AR-BRECQ, bound
distillation and GPTQ / Qronos (configs from `gan_brevitas.ptq`)."""

from __future__ import annotations

import dataclasses

from torch import nn

from gan_brevitas.inputs import InputSource
from gan_brevitas.methods.registry import register_method
from gan_brevitas.ptq.bound_distill import BoundDistillOptions, bound_distill
from gan_brevitas.ptq.brecq import ArBrecqOptions, SteBrecqOptions, block_reconstruction
from gan_brevitas.ptq.gptq import GptqOptions, gptq
from gan_brevitas.ptq.mixed_precision import MixedPrecisionOptions, mixed_precision
from gan_brevitas.ptq.vanilla import VanillaPtqOptions, vanilla_ptq
from gan_brevitas.quant.config import QuantConfig

#: The typed names of the configs, for ``recipes.quantize(gen, VanillaPTQ(num_samples=64), ...)``.
VanillaPTQ = VanillaPtqOptions
SteBRECQ = SteBrecqOptions
ArBRECQ = ArBrecqOptions
MixedPrecision = MixedPrecisionOptions
BoundDistill = BoundDistillOptions
GPTQ = GptqOptions


#: What ``recipes.quantize(gen, inputs=x)`` and ``gan-brevitas quantize`` run when no method is
#: named: GPTQ rounding on the default scheme, the best W8A8 recipe on the real-generator suite
#: (PSNR vs vanilla PTQ: +0.30 / +0.82 / +1.35 / +0.31 dB on the translator / SRGAN x4 /
#: Real-ESRGAN compact / DCGAN, for 3-20x its time).
DEFAULT_METHOD = "gptq"
#: ... and what they run with the paper's preset (``config="paper"``, ``--paper``): its vanilla PTQ.
PAPER_METHOD = "vanilla-ptq"


@register_method("vanilla-ptq", VanillaPtqOptions)
def run_vanilla_ptq(float_model: nn.Module, config: QuantConfig, inputs: InputSource,
                    options: VanillaPtqOptions) -> nn.Module:
    """Vanilla PTQ: quantile weights, moving-average activation quantiles (`ptq.vanilla`)."""
    return vanilla_ptq(float_model, config, inputs, **dataclasses.asdict(options))


@register_method("mixed-precision", MixedPrecisionOptions)
def run_mixed_precision(float_model: nn.Module, config: QuantConfig, inputs: InputSource,
                        options: MixedPrecisionOptions) -> nn.Module:
    """Per-layer weight bits under a budget, by sensitivity, then vanilla PTQ or ``refine`` (`ptq.mixed_precision`)."""
    return mixed_precision(float_model, config, inputs, options)


@register_method("ste-brecq", SteBrecqOptions)
def run_ste_brecq(float_model: nn.Module, config: QuantConfig, inputs: InputSource,
                  options: SteBrecqOptions) -> nn.Module:
    """STE-BRECQ: block reconstruction training weights and quantizers (`ptq.brecq`)."""
    return block_reconstruction(float_model, config, inputs, options, "ste-brecq")


@register_method("ar-brecq", ArBrecqOptions)
def run_ar_brecq(float_model: nn.Module, config: QuantConfig, inputs: InputSource,
                 options: ArBrecqOptions) -> nn.Module:
    """AR-BRECQ: block reconstruction with AdaRound on fixed weight grids (`ptq.brecq`)."""
    return block_reconstruction(float_model, config, inputs, options, "ar-brecq")


@register_method("bound-distill", BoundDistillOptions)
def run_bound_distill(float_model: nn.Module, config: QuantConfig, inputs: InputSource,
                      options: BoundDistillOptions) -> nn.Module:
    """Bound distillation: PTQ, then only the quantizers trained against the float model (`ptq.bound_distill`)."""
    return bound_distill(float_model, config, inputs, options)


@register_method("gptq", GptqOptions, aliases={"qronos": {"algorithm": "qronos"}})
def run_gptq(float_model: nn.Module, config: QuantConfig, inputs: InputSource, options: GptqOptions) -> nn.Module:
    """GPTQ / Qronos: PTQ, then weights rounded column by column against the layer inputs (`ptq.gptq`)."""
    return gptq(float_model, config, inputs, options)
