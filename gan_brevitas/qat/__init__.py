"""Quantization-aware training of generators (§3.6): MA-QAT and LSQ-QAT with GAN distillation.

* `train_qat` (the methods "ma-qat" and "lsq-qat" of `gan_brevitas.methods.qat`): quantile-PTQ
  initialisation, then training on eq. (4) with a discriminator.
* `QATOptions` / `PAPER_DEFAULTS`: every option, with the paper's values per model.
* Modules: `options`, `losses` (LSGAN, perceptual, MSE), `distill` (distillation shards),
  `ranges` (moving-average ranges), `checkpoint` (run directory), `distributed` (torchrun),
  `discriminator` (fresh critic, shape check), `train` (the loop).
"""

from gan_brevitas.qat.options import PAPER_DEFAULTS, ModelDefaults, QATOptions
from gan_brevitas.qat.train import EpochRecord, train_qat

__all__ = ["PAPER_DEFAULTS", "EpochRecord", "ModelDefaults", "QATOptions", "train_qat"]
