"""Feature extractors for FID / qFID, and which one a run uses.

FID is only meaningful with a fixed feature extractor, and numbers from different extractors
must never be compared. Published FIDs use torch-fidelity's Inception-v3 ("inception-v3-compat",
pool3 2048-d features), whose weights are downloaded from GitHub, which our machines cannot do.
So :func:`resolve_extractor` picks, in this order:

1. an explicit local Inception weights file (``inception_weights=`` / ``--inception-weights``);
2. the file named by the environment variable ``GAN_BREVITAS_INCEPTION_WEIGHTS``;
3. torch-fidelity's Inception weights already in the torch hub cache;
4. only if ``allow_download=True``: a download by torch hub into that cache, with a short timeout;
5. the offline demo CNN shipped in this package (``gan-brevitas-demo-cnn``): a small classifier
   trained on the demo data (MNIST digits + scikit-image textures/photos) whose 128-d penultimate
   features play Inception's role, the usual practice for MNIST FID. Values computed with it are
   NOT comparable with published Inception FIDs.

The chosen extractor is described by an :class:`ExtractorSpec` that every metric result carries
(label + weights hash). Resolution never touches the network unless ``allow_download=True``.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import os
import secrets
import shutil
import socket
import tempfile
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlparse

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch_fidelity
from safetensors import safe_open
from safetensors.torch import load_file
from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from gan_brevitas.atomic_files import atomic_write
from gan_brevitas.errors import ConfigError, MetricError

__all__ = [
    "DEMO_CNN_NAME",
    "DEMO_CNN_WEIGHTS",
    "INCEPTION_ENV_VAR",
    "INCEPTION_NAME",
    "DemoCNN",
    "DemoCNNFeatureExtractor",
    "ExtractorSpec",
    "choose_extractor",
    "demo_cnn_spec",
    "inception_cache_path",
    "inception_spec",
    "load_demo_cnn",
    "resolve_extractor",
    "weights_sha256",
]

logger = logging.getLogger(__name__)

INCEPTION_ENV_VAR = "GAN_BREVITAS_INCEPTION_WEIGHTS"
INCEPTION_NAME = "inception-v3-compat"  # torch-fidelity's registered name
INCEPTION_FEATURE_LAYER = "2048"
DEMO_CNN_NAME = "gan-brevitas-demo-cnn"
DEMO_CNN_FEATURE_LAYER = "128"
DEMO_CNN_WEIGHTS = Path(__file__).resolve().parent / "weights" / "demo_cnn.safetensors"
DEMO_CNN_INPUT_SIZE = 32
SHORT_HASH_CHARS = 12
TRAIN_COMMAND = "python -m tools.train_extractor"

# Keys that any torch-fidelity Inception-v3 state dict has (first conv, last block, classifier).
_INCEPTION_KEYS = ("Conv2d_1a_3x3.conv.weight", "Mixed_7c.branch_pool.conv.weight", "fc.weight")


@dataclass(frozen=True)
class ExtractorSpec:
    """Which feature extractor a metric used: enough to tell whether two numbers are comparable.

    Attributes:
        name: the torch-fidelity registry name (``feature_extractor=`` of calculate_metrics).
        feature_layer: the feature name used for FID (``feature_layer_fid=``).
        weights_path: the weights file loaded (``feature_extractor_weights_path=``); for Inception,
            a private checked copy of ``source``.
        weights_sha256: first 12 hex digits of the weights file's sha256.
        label: human-readable name printed next to every number.
        comparable_with_published: True only for torch-fidelity's Inception-v3.
        source: the file the user named (equal to ``weights_path`` for the demo CNN).
    """

    name: str
    feature_layer: str
    weights_path: str
    weights_sha256: str
    label: str
    comparable_with_published: bool
    source: str = ""


# --------------------------------------------------------------------------------------------
# The offline demo CNN
# --------------------------------------------------------------------------------------------


class DemoCNN(nn.Module):
    """Small classifier of 32x32 demo images; its 128-d penultimate activations are FID features.

    Four 3x3 conv blocks (32-64-128-128 channels, BatchNorm, ReLU, 2x2 max-pool after the first
    three) -> global average pool -> Linear(128, 128) + ReLU (the features) -> Linear(128, classes).
    About 0.3 M parameters, so the committed weights stay well under 2 MB.

    Input: float [N, 3, 32, 32] in [-1, 1].
    """

    def __init__(self, num_classes: int, feature_dim: int = 128) -> None:
        super().__init__()
        widths = (3, 32, 64, 128, 128)
        blocks: list[nn.Module] = []
        for index, (c_in, c_out) in enumerate(zip(widths[:-1], widths[1:])):
            blocks += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
            if index < 3:
                blocks.append(nn.MaxPool2d(2))  # 32 -> 16 -> 8 -> 4
        self.body = nn.Sequential(*blocks)
        self.embed = nn.Linear(widths[-1], feature_dim)
        self.classifier = nn.Linear(feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """[N, 3, 32, 32] in [-1, 1] -> [N, feature_dim] penultimate activations (post-ReLU)."""
        x = self.body(x).mean(dim=(2, 3))
        return F.relu(self.embed(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[N, 3, 32, 32] in [-1, 1] -> [N, num_classes] logits."""
        return self.classifier(self.features(x))


def load_demo_cnn(weights_path: str | os.PathLike[str] | None = None) -> tuple[DemoCNN, list[str]]:
    """Load the demo CNN (eval mode) and its class names from a safetensors file."""
    path = Path(weights_path) if weights_path is not None else DEMO_CNN_WEIGHTS
    if not path.is_file():
        raise MetricError(
            f"Demo CNN weights not found at {path}. They ship inside the package; if they are missing, "
            f"recreate them with `{TRAIN_COMMAND}` (a few minutes on CPU)."
        )
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
    state = load_file(str(path))
    class_names = metadata.get("class_names", "").split(",") if metadata.get("class_names") else []
    num_classes, feature_dim = state["classifier.weight"].shape
    model = DemoCNN(num_classes=num_classes, feature_dim=feature_dim)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise MetricError(
            f"{path} does not match the DemoCNN architecture ({exc}). Retrain it with `{TRAIN_COMMAND}`."
        ) from exc
    model.eval()
    return model, class_names


class DemoCNNFeatureExtractor(torch_fidelity.FeatureExtractorBase):
    """torch-fidelity wrapper of :class:`DemoCNN`: uint8 [N, 3, H, W] in, features out.

    Follows torch-fidelity's extractor contract (like its Inception-v3): images are uint8 RGB of
    any size; they are resized to 32x32 (antialiased bilinear) and mapped to [-1, 1] here.
    Provided features: "128" (penultimate, the FID default) and "logits".
    """

    def __init__(
        self,
        name: str,
        features_list: list[str],
        feature_extractor_weights_path: str | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(name, features_list)
        self.net, self.class_names = load_demo_cnn(feature_extractor_weights_path)
        self.requires_grad_(False)
        self.eval()

    @staticmethod
    def get_provided_features_list() -> tuple[str, ...]:
        return (DEMO_CNN_FEATURE_LAYER, "logits")

    @staticmethod
    def get_default_feature_layer_for_metric(metric: str) -> str:
        return {"isc": "logits"}.get(metric, DEMO_CNN_FEATURE_LAYER)

    @staticmethod
    def can_be_compiled() -> bool:
        return False

    @staticmethod
    def get_dummy_input_for_compile() -> torch.Tensor:
        return torch.zeros(1, 3, DEMO_CNN_INPUT_SIZE, DEMO_CNN_INPUT_SIZE, dtype=torch.uint8)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if not (torch.is_tensor(x) and x.dtype == torch.uint8 and x.dim() == 4 and x.shape[1] == 3):
            raise MetricError(
                f"{DEMO_CNN_NAME} expects uint8 images [N, 3, H, W], got "
                f"{tuple(x.shape) if torch.is_tensor(x) else type(x).__name__} "
                f"{x.dtype if torch.is_tensor(x) else ''}; convert with gan_brevitas.metrics.fid.to_uint8."
            )
        images = x.to(torch.float32) / 127.5 - 1.0
        if images.shape[-2:] != (DEMO_CNN_INPUT_SIZE, DEMO_CNN_INPUT_SIZE):
            images = F.interpolate(
                images, size=(DEMO_CNN_INPUT_SIZE,) * 2, mode="bilinear", align_corners=False, antialias=True
            )
        features = self.net.features(images)
        provided = {DEMO_CNN_FEATURE_LAYER: features, "logits": self.net.classifier(features)}
        return tuple(provided[name] for name in self.features_list)


def _register_demo_cnn() -> None:
    """Register the demo CNN with torch-fidelity once per process (its registry rejects duplicates)."""
    if DEMO_CNN_NAME not in FEATURE_EXTRACTORS_REGISTRY:
        torch_fidelity.register_feature_extractor(DEMO_CNN_NAME, DemoCNNFeatureExtractor)


_register_demo_cnn()


# --------------------------------------------------------------------------------------------
# Specs and resolution
# --------------------------------------------------------------------------------------------


@lru_cache(maxsize=16)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def weights_sha256(path: str | os.PathLike[str], short: bool = True) -> str:
    """sha256 of a weights file (first 12 hex digits if short); cached per (path, size, mtime)."""
    stat = os.stat(path)
    full = _sha256_cached(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)
    return full[:SHORT_HASH_CHARS] if short else full


def demo_cnn_spec(weights_path: str | os.PathLike[str] | None = None) -> ExtractorSpec:
    """Spec of the offline demo CNN (the packaged weights unless a path is given)."""
    path = Path(weights_path) if weights_path is not None else DEMO_CNN_WEIGHTS
    if not path.is_file():
        raise MetricError(
            f"Demo CNN weights not found at {path}. Recreate them with `{TRAIN_COMMAND}`, "
            f"or pass real Inception weights (inception_weights= / ${INCEPTION_ENV_VAR})."
        )
    return ExtractorSpec(
        name=DEMO_CNN_NAME,
        feature_layer=DEMO_CNN_FEATURE_LAYER,
        weights_path=str(path),
        weights_sha256=weights_sha256(path),
        label=f"{DEMO_CNN_NAME}/{DEMO_CNN_FEATURE_LAYER} (offline demo CNN, NOT comparable with Inception FID)",
        comparable_with_published=False,
        source=str(path),
    )


_private_root: str | None = None
_checked_copies: dict[str, Path] = {}  # sha256 of the bytes -> private copy that passed the check


def _private_dir() -> Path:
    """A directory only this user can write (0700), removed at exit, for checked weight copies."""
    global _private_root
    if _private_root is None:
        _private_root = tempfile.mkdtemp(prefix="gan-brevitas-weights-")
        atexit.register(shutil.rmtree, _private_root, ignore_errors=True)
    return Path(_private_root)


def _private_copy(path: Path) -> tuple[Path, str]:
    """Copy ``path`` into the private directory once (a new name, mode 0600, written atomically);
    returns (copy, sha256 of the copied bytes)."""
    digest = hashlib.sha256()

    def copy(temporary: str) -> None:
        with open(path, "rb") as source, open(temporary, "wb") as target:
            for chunk in iter(lambda: source.read(1 << 20), b""):
                digest.update(chunk)
                target.write(chunk)

    copied = atomic_write(_private_dir() / f"inception-{secrets.token_hex(8)}.pth", copy, mode=0o600,
                          what="private copy of the Inception weights")
    return copied, digest.hexdigest()


def inception_spec(weights_path: str | os.PathLike[str], origin: str = "argument") -> ExtractorSpec:
    """Spec of torch-fidelity's Inception-v3 with a local weights file, after checking that file.

    torch-fidelity loads its weights file with ``torch.load(weights_only=False)``, possibly minutes
    later. So it never sees the user's file: the bytes are copied once into a private directory
    (mode 0700, removed at exit), that copy is loaded with ``weights_only=True`` (a file that
    would run code when unpickled is rejected), and the spec points torch-fidelity at the copy.
    Replacing the user's file afterwards changes nothing that is loaded.
    """
    path = Path(weights_path).expanduser()
    if not path.is_file():
        raise MetricError(
            f"Inception weights file {str(path)!r} (from {origin}) does not exist. Point it at torch-fidelity's "
            f"weights-inception-2015-12-05-6726825d.pth (from {URL_INCEPTION_V3}), or choose the offline demo CNN "
            f"explicitly (extractor='demo-cnn'; CLI: --extractor demo-cnn), whose numbers are not comparable with "
            f"published FIDs."
        )
    copy, sha256 = _private_copy(path)
    if sha256 in _checked_copies:
        copy.unlink()
        return _inception(_checked_copies[sha256], sha256, path)
    try:
        _check_inception_state(copy, path, origin)
    except BaseException:
        copy.unlink(missing_ok=True)
        raise
    _checked_copies[sha256] = copy
    logger.info("Inception weights %s checked and copied to %s", path, copy)
    return _inception(copy, sha256, path)


def _check_inception_state(copy: Path, path: Path, origin: str) -> None:
    try:
        state = torch.load(copy, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors have many types; all mean "not usable"
        raise MetricError(
            f"Inception weights file {path} (from {origin}) cannot be loaded as a plain state dict "
            f"with weights_only=True ({type(exc).__name__}: {exc}). Use torch-fidelity's "
            f"weights-inception-2015-12-05-6726825d.pth."
        ) from exc
    missing = [key for key in _INCEPTION_KEYS if not (isinstance(state, dict) and key in state)]
    if missing:
        raise MetricError(
            f"{path} (from {origin}) is not a torch-fidelity Inception-v3 state dict (missing {missing}). "
            f"Use torch-fidelity's weights-inception-2015-12-05-6726825d.pth."
        )


def _inception(copy: Path, sha256: str, source: Path) -> ExtractorSpec:
    return ExtractorSpec(
        name=INCEPTION_NAME,
        feature_layer=INCEPTION_FEATURE_LAYER,
        weights_path=str(copy),
        weights_sha256=sha256[:SHORT_HASH_CHARS],
        label=f"{INCEPTION_NAME}/{INCEPTION_FEATURE_LAYER} (Inception-v3, torch-fidelity)",
        comparable_with_published=True,
        source=str(source),
    )


def inception_cache_path() -> Path:
    """Where torch hub (hence torch-fidelity) keeps the downloaded Inception-v3 weights."""
    filename = os.path.basename(urlparse(URL_INCEPTION_V3).path)
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def _host_reachable(host: str, port: int, timeout_s: float) -> bool:
    """True if a TCP connection to host:port opens within timeout_s.

    Runs in a daemon thread joined with a timeout because name resolution (getaddrinfo) ignores
    socket timeouts and can block for a long time on a machine without network.
    """
    outcome: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout_s):
                outcome.append(True)
        except OSError:
            outcome.append(False)

    thread = threading.Thread(target=probe, name="gan-brevitas-net-probe", daemon=True)
    thread.start()
    thread.join(timeout_s + 0.5)
    return bool(outcome and outcome[0])


def _download_inception(timeout_s: float, url: str = URL_INCEPTION_V3) -> Path | None:
    """Download torch-fidelity's Inception weights into the torch hub cache; None if offline."""
    parsed = urlparse(url)
    host, port = parsed.hostname or "", parsed.port or (443 if parsed.scheme == "https" else 80)
    if not _host_reachable(host, port, timeout_s):
        logger.warning("Cannot reach %s within %.1f s: not downloading the Inception-v3 weights.", host, timeout_s)
        return None
    destination = inception_cache_path()
    destination.parent.mkdir(parents=True, exist_ok=True)
    match = torch.hub.HASH_REGEX.search(destination.name)
    previous_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout_s)  # a stalled read fails instead of hanging; restored below
    try:
        logger.info("Downloading Inception-v3 weights from %s to %s", url, destination)
        torch.hub.download_url_to_file(url, str(destination), hash_prefix=match.group(1) if match else None)
    except Exception as exc:  # network errors come as URLError, TimeoutError, RuntimeError (hash)...
        logger.warning("Downloading the Inception-v3 weights failed (%s: %s).", type(exc).__name__, exc)
        return None
    finally:
        socket.setdefaulttimeout(previous_timeout)
    return destination


_warned_offline = False


def _warn_offline(spec: ExtractorSpec) -> None:
    """Say loudly (once per process, then at INFO) that the offline extractor is in use."""
    global _warned_offline
    level = logging.INFO if _warned_offline else logging.WARNING
    _warned_offline = True
    logger.log(
        level,
        "No Inception-v3 weights found: FID/qFID use the offline demo CNN %s (weights sha256 %s). "
        "These values are NOT comparable with published Inception FIDs. For Inception, pass "
        "inception_weights= / --inception-weights, or set $%s to torch-fidelity's %s.",
        spec.name,
        spec.weights_sha256,
        INCEPTION_ENV_VAR,
        inception_cache_path().name,
    )


def resolve_extractor(
    inception_weights: str | os.PathLike[str] | None = None,
    allow_download: bool = False,
    download_timeout_s: float = 10.0,
) -> ExtractorSpec:
    """Choose the FID feature extractor (see the module docstring for the order).

    An explicit argument or environment variable that names a missing / invalid file is an
    error (the user asked for Inception), never a silent fallback. Without ``allow_download`` no
    network access is attempted, so this returns promptly on an offline machine.
    """
    if inception_weights is not None:
        spec = inception_spec(inception_weights, origin="the inception_weights argument")
    elif os.environ.get(INCEPTION_ENV_VAR):
        spec = inception_spec(os.environ[INCEPTION_ENV_VAR], origin=f"${INCEPTION_ENV_VAR}")
    elif inception_cache_path().is_file():
        spec = inception_spec(inception_cache_path(), origin="the torch hub cache")
    else:
        downloaded = _download_inception(download_timeout_s) if allow_download else None
        if downloaded is not None:
            spec = inception_spec(downloaded, origin="a download")
        else:
            spec = demo_cnn_spec()
            _warn_offline(spec)
            return spec
    logger.info("FID feature extractor: %s, weights %s (sha256 %s)", spec.label, spec.source, spec.weights_sha256)
    return spec


EXTRACTOR_CHOICES = ("inception", "demo-cnn")


def choose_extractor(
    extractor: str | None = None,
    inception_weights: str | os.PathLike[str] | None = None,
    demo_data: bool = False,
) -> ExtractorSpec:
    """The extractor a user's evaluation runs with: never a silent fallback on their images.

    ``extractor="demo-cnn"`` picks the offline demo CNN by name. Otherwise Inception-v3 is used when
    its weights are found (:func:`resolve_extractor`); without them only the demo data
    (``demo_data=True``, the CNN was trained on it) falls back to the demo CNN, and anything else
    is refused with the two ways out.
    """
    if extractor is not None and extractor not in EXTRACTOR_CHOICES:
        raise ConfigError(f"unknown extractor {extractor!r}: choose one of {', '.join(EXTRACTOR_CHOICES)}.")
    if extractor == "demo-cnn":
        return demo_cnn_spec()
    spec = resolve_extractor(inception_weights)
    if spec.name == INCEPTION_NAME or (demo_data and extractor is None):
        return spec
    raise ConfigError(
        "FID / qFID on your images need Inception-v3 weights, which are not on this machine: give the "
        "local file torch-fidelity uses (weights-inception-2015-12-05-6726825d.pth) as inception_weights=FILE "
        f"(CLI: --inception-weights FILE) or in ${INCEPTION_ENV_VAR}; or choose extractor=\"demo-cnn\" "
        "(CLI: --extractor demo-cnn), the small CNN trained on the demo digits and textures, whose "
        "numbers mean little on other images."
    )
