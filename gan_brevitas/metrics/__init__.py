"""Quality metrics of (quantized) generators: FID, qFID (paper §4) and PSNR.

FID / qFID run through torch-fidelity with Inception-v3 when its weights are available, else
with an offline demo CNN shipped in the package (see :mod:`gan_brevitas.metrics.extractors`);
every result names its extractor and weights hash.
"""

from gan_brevitas.metrics.extractors import ExtractorSpec, resolve_extractor
from gan_brevitas.metrics.fid import MetricResult, fid, generate, qfid, to_uint8
from gan_brevitas.metrics.psnr import psnr

__all__ = ["ExtractorSpec", "MetricResult", "fid", "generate", "psnr", "qfid", "resolve_extractor", "to_uint8"]
