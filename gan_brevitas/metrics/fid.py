"""FID and qFID through torch-fidelity, and the generator-sampling helper they share.

- FID compares two sets of images (generated vs real) in the feature space of an extractor.
- qFID (paper §4) is the FID between the outputs of a quantized generator and of its
  full-precision original for the SAME latents / input images: a reconstruction-quality measure
  that, unlike FID against real data, is 0 for a perfect quantization.

The Fréchet distance itself is computed by ``torch_fidelity.calculate_metrics``; this module
only turns generator outputs (float NCHW in [-1, 1]) into the uint8 images torch-fidelity
expects, picks the extractor (:func:`gan_brevitas.metrics.extractors.resolve_extractor`) and
labels every result with that extractor and its weights hash, so that numbers from different
extractors are never mixed.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import logging
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any, Union

import torch
import torch.nn as nn
import torch_fidelity
from torch.utils.data import Dataset
from tqdm import tqdm

from gan_brevitas.errors import MetricError
from gan_brevitas.inputs import InputSource, iter_batches
from gan_brevitas.metrics.extractors import ExtractorSpec, resolve_extractor

__all__ = ["Inputs", "Images", "MetricResult", "fid", "generate", "qfid", "to_uint8"]

logger = logging.getLogger(__name__)

# Images: one float tensor [N, 3, H, W] in [-1, 1], or an iterable of such batches.
Images = Union[torch.Tensor, Iterable[torch.Tensor]]
# Generator inputs (gan_brevitas.inputs.InputSource): a sampler ``sampler(batch_size) -> batch``, a
# tensor of all inputs, or an iterable of batches ((inputs, labels) pairs keep the inputs).
Inputs = InputSource

DEFAULT_BATCH_SIZE = 64
# A float image whose values reach this far outside [-1, 1] is not in the [-1, 1] convention
# (typically [0, 255] or [0, 1] data); small overshoots of an un-clamped generator are clamped.
_RANGE_LIMIT = 5.0


@dataclass(frozen=True)
class MetricResult:
    """One metric value and what it was measured with.

    Attributes:
        name: "fid" or "qfid".
        value: the metric (lower is better).
        extractor: label of the feature extractor (ExtractorSpec.label).
        weights_sha256: short sha256 of the extractor weights.
        n: number of images in the first set (generated / quantized).
        n_reference: number of images in the second set (real / full precision).
    """

    name: str
    value: float
    extractor: str
    weights_sha256: str
    n: int
    n_reference: int

    def __str__(self) -> str:
        return (
            f"{self.name} = {self.value:.4g}  "
            f"[{self.extractor}, sha256 {self.weights_sha256}, n={self.n}/{self.n_reference}]"
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON reports."""
        return asdict(self)


def to_uint8(images: torch.Tensor, what: str = "images") -> torch.Tensor:
    """Float [N, C, H, W] in [-1, 1] -> uint8 [N, 3, H, W] in [0, 255] (torch-fidelity's input).

    One-channel images are replicated to 3 channels. uint8 input is returned unchanged (after the
    shape check). Values slightly outside [-1, 1] are clamped; NaN / inf or a clearly different
    range ([0, 255]) is an error, because the FID of such images would be meaningless.
    """
    if not torch.is_tensor(images) or images.dim() != 4:
        shape = tuple(images.shape) if torch.is_tensor(images) else type(images).__name__
        raise MetricError(f"{what} must be a tensor [N, C, H, W], got {shape}.")
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    if images.shape[1] != 3:
        raise MetricError(f"{what} must have 1 or 3 channels, got shape {tuple(images.shape)}.")
    if images.dtype == torch.uint8:
        return images.to("cpu").contiguous()
    images = images.detach().to("cpu", torch.float32)
    if not torch.isfinite(images).all():
        bad = int((~torch.isfinite(images)).flatten(1).any(dim=1).sum())
        raise MetricError(
            f"{what} contain NaN or inf ({bad} of {len(images)} images). The generator diverged or its "
            f"quantization overflowed; check the model before computing metrics."
        )
    peak = float(images.abs().max()) if images.numel() else 0.0
    if peak > _RANGE_LIMIT:
        raise MetricError(
            f"{what} reach |value| = {peak:.3g}; images must be floats in [-1, 1] "
            f"(convert [0, 255] data with x / 127.5 - 1)."
        )
    return ((images.clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8)


def _collect_uint8(images: Images, what: str) -> torch.Tensor:
    """A tensor or an iterable of batches -> one uint8 tensor [N, 3, H, W]."""
    if torch.is_tensor(images):
        return to_uint8(images, what)
    batches = [to_uint8(batch, what) for batch in images]
    if not batches:
        raise MetricError(f"{what} is empty; pass at least 2 images.")
    shapes = {tuple(batch.shape[1:]) for batch in batches}
    if len(shapes) > 1:
        raise MetricError(f"The batches of {what} have different image shapes {sorted(shapes)}.")
    return torch.cat(batches)


class _UInt8Images(Dataset):
    """A uint8 image tensor as the torch Dataset torch-fidelity consumes (one image per item)."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.images[index]


def _check_pair(images_a: torch.Tensor, images_b: torch.Tensor) -> None:
    for what, images in (("images_a", images_a), ("images_b", images_b)):
        if len(images) <= 1:
            raise MetricError(f"FID needs at least 2 images per set (a covariance), but {what} has {len(images)}.")
    if images_a.shape[1:] != images_b.shape[1:]:
        raise MetricError(
            f"The two image sets have different shapes {tuple(images_a.shape[1:])} and "
            f"{tuple(images_b.shape[1:])}; resize one set so both are compared at the same resolution."
        )


_stats_cache_root: str | None = None


def _stats_cache() -> str:
    """A private directory for torch-fidelity's per-set feature statistics, removed at exit.

    A demo or reproduce run compares many quantized sets with the same full-precision and real
    sets; caching their statistics (under content hashes) extracts each set's features once per
    process instead of once per row. Nothing is written into the user's ~/.cache.
    """
    global _stats_cache_root
    if _stats_cache_root is None:
        _stats_cache_root = tempfile.mkdtemp(prefix="gan-brevitas-fid-stats-")
        atexit.register(shutil.rmtree, _stats_cache_root, ignore_errors=True)
    return _stats_cache_root


def _cache_name(images: torch.Tensor, spec: ExtractorSpec) -> str:
    """Names a set by its exact content and the extractor's weights (a stale hit is impossible)."""
    digest = hashlib.sha256(images.contiguous().numpy().tobytes()).hexdigest()[:24]
    return f"set-{digest}-{len(images)}-{spec.weights_sha256}"


def _fid_uint8(
    images_a: torch.Tensor,
    images_b: torch.Tensor,
    spec: ExtractorSpec,
    batch_size: int,
    cuda: bool | None,
    name: str,
) -> MetricResult:
    """Run torch-fidelity's FID on two uint8 image tensors with the extractor of spec."""
    _check_pair(images_a, images_b)
    smallest = min(len(images_a), len(images_b))
    feature_dim = int(spec.feature_layer) if spec.feature_layer.isdigit() else 0
    if smallest <= feature_dim:
        logger.warning(
            "%s from %d images with %s-d features: the covariance is singular and the value strongly "
            "biased (upwards); compare only values computed with the same number of images.",
            name, smallest, spec.feature_layer,
        )  # fmt: skip
    try:
        metrics = _calculate(images_a, images_b, spec, batch_size, cuda)
    except RuntimeError as err:  # torch-fidelity reports a bad extractor file as a RuntimeError
        raise MetricError(
            f"torch-fidelity could not compute {name} with {spec.label} (weights {spec.source or spec.weights_path}): "
            f"{str(err).splitlines()[0]}. Use torch-fidelity's own weights file for this extractor."
        ) from err
    # FID is a squared distance; torch-fidelity can return -1e-6 for identical sets (rounding).
    value = max(0.0, float(metrics[torch_fidelity.KEY_METRIC_FID]))
    result = MetricResult(name, value, spec.label, spec.weights_sha256, len(images_a), len(images_b))
    logger.info("%s", result)
    return result


def _calculate(
    images_a: torch.Tensor, images_b: torch.Tensor, spec: ExtractorSpec, batch_size: int, cuda: bool | None
) -> dict[str, float]:
    return torch_fidelity.calculate_metrics(
        input1=_UInt8Images(images_a),
        input2=_UInt8Images(images_b),
        fid=True,
        feature_extractor=spec.name,
        feature_layer_fid=spec.feature_layer,
        feature_extractor_weights_path=spec.weights_path,
        batch_size=batch_size,
        cuda=torch.cuda.is_available() if cuda is None else cuda,
        cache=True,
        cache_root=_stats_cache(),
        input1_cache_name=_cache_name(images_a, spec),
        input2_cache_name=_cache_name(images_b, spec),
        save_cpu_ram=True,  # no DataLoader worker processes: the data is already in memory
        verbose=False,
    )


def fid(
    images_a: Images,
    images_b: Images,
    extractor: ExtractorSpec | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    *,
    cuda: bool | None = None,
    name: str = "fid",
) -> MetricResult:
    """FID between two image sets (e.g. generated vs real), computed by torch-fidelity.

    Args:
        images_a, images_b: float tensors [N, 3, H, W] in [-1, 1] (or iterables of such batches;
            uint8 tensors are taken as already converted). N may differ between the sets; the
            image shapes may not.
        extractor: the feature extractor; None resolves it (Inception if available, else the
            offline demo CNN, with a warning).
        batch_size: feature-extraction batch size.
        cuda: run the extractor on the GPU; None means "if one is available".
        name: the name recorded in the result (``qfid`` when comparing quantized vs full precision).
    """
    spec = extractor if extractor is not None else resolve_extractor()
    return _fid_uint8(
        _collect_uint8(images_a, "images_a"), _collect_uint8(images_b, "images_b"), spec, batch_size, cuda, name
    )


# --------------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _evaluation_mode(*models: nn.Module) -> Iterator[None]:
    """Put models in eval mode, restoring every submodule's train/eval flag afterwards."""
    flags = [(module, module.training) for model in models for module in model.modules()]
    try:
        for model in models:
            model.eval()
        yield
    finally:
        for module, training in flags:
            module.training = training


def _device_of(model: nn.Module) -> torch.device:
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def _input_batches(inputs: InputSource, n: int, batch_size: int) -> Iterator[torch.Tensor]:
    """Input batches holding n samples in all, each drawn once (the project-wide reader of inputs).

    ``gan_brevitas.inputs.iter_batches`` makes samplers, tensors and iterables behave as in
    calibration; it warns and stops early if the inputs run out (the result then records the
    smaller n). FID needs a covariance, hence n >= 2.
    """
    if not isinstance(n, int) or n <= 1:
        raise MetricError(f"n (number of samples) must be an int >= 2 for FID, got {n!r}.")
    return iter_batches(inputs, n, batch_size)


def _run(model: nn.Module, batch: torch.Tensor, what: str) -> torch.Tensor:
    """One generator call; keeps the image when the model returns a tuple (SAGAN: image, attn1, attn2)."""
    device = _device_of(model)
    output = model(batch.to(device))
    if isinstance(output, (tuple, list)):
        output = output[0]
    if not torch.is_tensor(output) or output.dim() != 4:
        shape = tuple(output.shape) if torch.is_tensor(output) else type(output).__name__
        raise MetricError(f"{what} must return images [N, C, H, W] (or a tuple starting with them), got {shape}.")
    return output.detach().to("cpu", torch.float32)


def generate(
    model: nn.Module,
    inputs: Inputs,
    n: int,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool = True,
) -> torch.Tensor:
    """Run a generator over n inputs; returns float images [n, C, H, W] on the CPU, clamped to
    the image range [-1, 1] (fewer, with a warning, if finite inputs run out first).

    Clamping is what turns a generator output into an image: StyleGAN has no output Tanh and
    its samples are clipped the same way when written as 8-bit pictures. FID, qFID and PSNR
    are all measured on these images.

    Runs in eval mode under ``torch.no_grad`` (not ``torch.inference_mode``, which breaks Brevitas
    quantized inference); the model's train/eval flags are restored afterwards. Inputs go to the
    model's device.

    Args:
        model: the generator; if it returns a tuple, its first element is the image.
        inputs: ``sampler(batch_size) -> batch``, a tensor of all inputs, or an iterable of batches
            (see ``gan_brevitas.inputs``).
        n: number of images (>= 2).
        batch_size: generator batch size.
        progress: show a tqdm progress bar.
    """
    outputs = []
    bar = tqdm(total=n, desc="generating", unit="img", disable=not progress)
    with _evaluation_mode(model), torch.no_grad(), bar:
        for batch in _input_batches(inputs, n, batch_size):
            outputs.append(_run(model, batch, "the model").clamp(-1.0, 1.0))
            bar.update(len(batch))
    return torch.cat(outputs)


def qfid(
    qmodel: nn.Module,
    model: nn.Module,
    inputs: Inputs,
    n: int,
    batch_size: int = DEFAULT_BATCH_SIZE,
    extractor: ExtractorSpec | None = None,
    progress: bool = True,
    *,
    cuda: bool | None = None,
) -> MetricResult:
    """qFID (paper §4): FID between a quantized generator's and its full-precision original's
    outputs for the SAME inputs (each input batch is drawn once and fed to both models).

    Generated images are kept as uint8 only, so large n stays affordable in memory. To get
    PSNR from the same outputs as well, generate both sets once with :func:`generate` (with a
    tensor of inputs) and call ``fid(q_images, fp_images, name="qfid")`` and ``psnr``.

    Args mirror :func:`generate` and :func:`fid`; the result's ``n`` counts image pairs.
    """
    spec = extractor if extractor is not None else resolve_extractor()
    quantized, full_precision = [], []
    with _evaluation_mode(qmodel, model), torch.no_grad(), tqdm(
        total=n, desc="generating (quantized + full precision)", unit="img", disable=not progress
    ) as bar:
        for batch in _input_batches(inputs, n, batch_size):
            quantized.append(to_uint8(_run(qmodel, batch, "the quantized model"), "quantized model outputs"))
            full_precision.append(
                to_uint8(_run(model, batch, "the full-precision model"), "full-precision model outputs")
            )
            bar.update(len(batch))
    quantized_images, full_precision_images = torch.cat(quantized), torch.cat(full_precision)
    if quantized_images.shape != full_precision_images.shape:
        raise MetricError(
            f"The quantized and full-precision models output different shapes {tuple(quantized_images.shape)} and "
            f"{tuple(full_precision_images.shape)}; qFID compares the two models' outputs for the same inputs."
        )
    return _fid_uint8(quantized_images, full_precision_images, spec, batch_size, cuda, "qfid")
