"""Quantization-aware training of generators (§3.6): MA-QAT and LSQ-QAT with GAN distillation.

* ``ma_qat`` / ``lsq_qat`` (registered in `gan_brevitas.recipes.METHODS` as "ma-qat" and
  "lsq-qat"): quantile-PTQ initialisation, then training on eq. (4) with a discriminator.
* `QATOptions` / `PAPER_DEFAULTS`: every option, with the paper's values per model.
* Modules: `options`, `losses` (LSGAN, perceptual, MSE), `distill` (distillation shards),
  `ranges` (moving-average ranges), `checkpoint` (run directory), `distributed` (torchrun),
  `discriminator` (fresh critic, shape check), `train` (the loop).
"""

from gan_brevitas.qat.options import PAPER_DEFAULTS, ModelDefaults, QATOptions
from gan_brevitas.qat.train import EpochRecord, lsq_qat, ma_qat, train_qat

__all__ = ["PAPER_DEFAULTS", "EpochRecord", "ModelDefaults", "QATOptions", "lsq_qat", "ma_qat", "train_qat"]
