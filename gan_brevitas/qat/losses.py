"""The distillation objective of eq. (4): L = L_adv + beta * d(f_q(x), f(x)).

* L_adv: least-squares GAN loss (Mao et al.) with a discriminator trained alongside; its real
  samples are the full-precision outputs, its fake ones the quantized outputs of the same input.
* d: the perceptual loss of Johnson et al. on VGG16 features (content on relu2_2, style as Gram
  matrices on relu1_2, relu2_2, relu3_3, relu4_3), weighted 3 and 3e4 as the paper's grid
  search chose with adversarial weight 0.01; or pixel MSE (Appendix B); or the same content +
  style losses on the discriminator's feature maps, for machines without VGG16 weights.

VGG16 ImageNet weights are never downloaded: `resolve_vgg16_weights` looks for a local file
and refuses the perceptual loss with the alternatives spelled out when there is none.

Scales: content is the mean squared feature difference, style the sum over layers of the mean
squared difference of Gram matrices normalised by C*H*W (PyTorch's fast-neural-style
convention); the paper does not state its normalisation.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gan_brevitas.errors import CheckpointError, ConfigError
from gan_brevitas.qat.discriminator import discriminator_scores

log = logging.getLogger(__name__)

VGG_ENV_VAR = "GAN_BREVITAS_VGG16_WEIGHTS"
#: torchvision's file name of VGG16_Weights.IMAGENET1K_V1 in the torch hub cache.
VGG16_CACHE_NAME = "vgg16-397923af.pth"
#: Johnson et al.: content at relu2_2, style at relu1_2, relu2_2, relu3_3, relu4_3
#: (indices into torchvision's vgg16().features).
VGG_CONTENT_LAYERS: tuple[int, ...] = (8,)
VGG_STYLE_LAYERS: tuple[int, ...] = (3, 8, 15, 22)
VGG_LAST_LAYER = 22
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# --------------------------------------------------------------------------- LSGAN


def lsgan_discriminator_loss(real_scores: Tensor, fake_scores: Tensor) -> Tensor:
    """Discriminator side of LSGAN (a=0, b=1): 1/2 E[(D(real)-1)^2] + 1/2 E[D(fake)^2]."""
    return 0.5 * (real_scores - 1.0).square().mean() + 0.5 * fake_scores.square().mean()


def lsgan_generator_loss(fake_scores: Tensor) -> Tensor:
    """Generator side of LSGAN (c=1): 1/2 E[(D(fake)-1)^2]."""
    return 0.5 * (fake_scores - 1.0).square().mean()


# --------------------------------------------------------------------------- content / style


def gram_matrix(features: Tensor) -> Tensor:
    """[B, C, H, W] -> [B, C, C] Gram matrices normalised by C*H*W."""
    b, c, h, w = features.shape
    flat = features.reshape(b, c, h * w)
    return flat @ flat.transpose(1, 2) / (c * h * w)


def content_loss(fake: Sequence[Tensor], real: Sequence[Tensor]) -> Tensor:
    """Sum over layers of the mean squared feature difference."""
    return sum(F.mse_loss(f, r) for f, r in zip(fake, real))  # type: ignore[return-value]


def style_loss(fake: Sequence[Tensor], real: Sequence[Tensor]) -> Tensor:
    """Sum over layers of the mean squared difference of Gram matrices."""
    return sum(F.mse_loss(gram_matrix(f), gram_matrix(r)) for f, r in zip(fake, real))  # type: ignore[return-value]


# --------------------------------------------------------------------------- VGG16


def vgg16_cache_path() -> Path:
    """Where torchvision keeps VGG16 ImageNet weights once downloaded (torch hub cache)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / VGG16_CACHE_NAME


def perceptual_refusal(reason: str) -> ConfigError:
    """The error for a perceptual loss without VGG16 weights, naming every way forward."""
    return ConfigError(
        f"loss='perceptual' needs VGG16 ImageNet weights, but {reason}. They are never "
        "downloaded. Choose one: pass vgg_weights=PATH to a local torchvision VGG16 state dict "
        f"(vgg16-397923af.pth, or any file with its 'features.*' keys; or set {VGG_ENV_VAR}); "
        "or loss='mse' (pixel MSE, the paper's Appendix B alternative); or "
        "loss='perceptual-disc' (content + style losses on the discriminator's feature maps). "
        "CLI: --set vgg_weights=PATH, --set loss=mse or --set loss=perceptual-disc."
    )


def resolve_vgg16_weights(path: Optional[str | os.PathLike] = None) -> Path:
    """The VGG16 weights file to use: ``path``, else $GAN_BREVITAS_VGG16_WEIGHTS, else the
    torchvision cache. Raises ConfigError (never downloads) when none exists."""
    if path is not None:
        if not Path(path).is_file():
            raise perceptual_refusal(f"vgg_weights={str(path)!r} is not a file")
        return Path(path)
    env = os.environ.get(VGG_ENV_VAR)
    if env:
        if not Path(env).is_file():
            raise perceptual_refusal(f"{VGG_ENV_VAR}={env!r} is not a file")
        return Path(env)
    cached = vgg16_cache_path()
    if cached.is_file():
        return cached
    raise perceptual_refusal(f"no vgg_weights was given, {VGG_ENV_VAR} is unset and {cached} does not exist")


def vgg16_features(last_layer: int = VGG_LAST_LAYER) -> nn.Sequential:
    """torchvision's VGG16 ``features`` up to ``last_layer`` (random init; load weights next)."""
    from torchvision.models.vgg import cfgs, make_layers

    return make_layers(cfgs["D"])[: last_layer + 1]


def load_vgg16_features(path: str | os.PathLike, last_layer: int = VGG_LAST_LAYER) -> nn.Sequential:
    """VGG16 features up to ``last_layer`` with weights from a local file, frozen, eval mode.

    Accepts a full torchvision VGG16 state dict ("features.N.weight", classifier keys are
    ignored) or a features-only one ("N.weight"); safetensors or torch files (weights_only).
    """
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file gets the same clear error
        raise CheckpointError(f"cannot read VGG16 weights from {path}: {err}") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} does not hold a state dict (found {type(state).__name__}).")
    features = vgg16_features(last_layer)
    wanted = set(features.state_dict())
    picked = {}
    for key, value in state.items():
        short = key[len("features."):] if key.startswith("features.") else key
        if short in wanted:
            picked[short] = value
    missing = sorted(wanted - set(picked))
    if missing:
        raise CheckpointError(
            f"{path} is not a VGG16 state dict: missing {missing[:4]} ({len(missing)} keys); "
            "use torchvision's vgg16-397923af.pth or a file with its 'features.*' keys."
        )
    try:
        features.load_state_dict(picked, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"{path} does not fit VGG16's layers: {err}") from None
    features.requires_grad_(False)
    return features.eval()


class FeatureTaps:
    """Forward hooks that keep the outputs of chosen submodules during one call."""

    def __init__(self, modules: Sequence[nn.Module]) -> None:
        self.outputs: list[Optional[Tensor]] = [None] * len(modules)
        self._handles = [m.register_forward_hook(self._hook(i)) for i, m in enumerate(modules)]

    def _hook(self, index: int):
        def keep(module: nn.Module, args: tuple, output: Tensor) -> None:
            self.outputs[index] = output

        return keep

    def take(self) -> list[Tensor]:
        outputs = [o for o in self.outputs if o is not None]
        self.outputs = [None] * len(self.outputs)
        return outputs

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


def _vgg_input(images: Tensor) -> Tensor:
    """[-1, 1] images (1 or 3 channels) -> ImageNet-normalised 3-channel VGG input."""
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    mean = images.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = images.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return ((images + 1.0) * 0.5 - mean) / std


# --------------------------------------------------------------------------- the objective


@dataclass
class LossTerms:
    """The terms of one generator step (tensors with autograd; `total` is what is minimised)."""

    total: Tensor
    distill: Tensor
    adversarial: Optional[Tensor] = None
    content: Optional[Tensor] = None
    style: Optional[Tensor] = None
    mse: Optional[Tensor] = None

    def scalars(self) -> dict[str, float]:
        return {k: float(v.detach()) for k, v in vars(self).items() if v is not None}


class DistillationObjective(nn.Module):
    """Eq. (4) for the generator: adv_weight * L_adv + d(fake, real).

    ``discriminator`` is needed when adv_weight > 0 or loss="perceptual-disc"; ``vgg`` (the
    frozen output of `load_vgg16_features`) when loss="perceptual".
    """

    def __init__(
        self,
        loss: str,
        adv_weight: float,
        content_weight: float,
        style_weight: float,
        mse_weight: float,
        discriminator: Optional[nn.Module] = None,
        vgg: Optional[nn.Sequential] = None,
    ) -> None:
        super().__init__()
        self.loss = loss
        self.adv_weight = adv_weight
        self.content_weight = content_weight
        self.style_weight = style_weight
        self.mse_weight = mse_weight
        self.vgg = vgg
        if loss == "perceptual" and vgg is None:
            raise perceptual_refusal("no VGG16 features were given")
        self._vgg_taps: Optional[FeatureTaps] = None
        if vgg is not None:
            self._vgg_taps = FeatureTaps([vgg[i] for i in VGG_STYLE_LAYERS])
        self._disc_taps: Optional[FeatureTaps] = None
        if loss == "perceptual-disc":
            if discriminator is None:
                raise ConfigError("loss='perceptual-disc' needs a discriminator.")
            self._disc_taps = FeatureTaps(discriminator_feature_layers(discriminator))

    @property
    def needs_discriminator(self) -> bool:
        return self.adv_weight > 0 or self.loss == "perceptual-disc"

    def _perceptual(self, fake_feats: list[Tensor], real_feats: list[Tensor], content_index: Sequence[int]) -> tuple[Tensor, Tensor]:
        real_feats = [r.detach() for r in real_feats]
        content = content_loss([fake_feats[i] for i in content_index], [real_feats[i] for i in content_index])
        style = style_loss(fake_feats, real_feats)
        return content, style

    def forward(self, fake: Tensor, real: Tensor, discriminator: Optional[nn.Module] = None) -> LossTerms:
        """Generator loss for quantized outputs ``fake`` and full-precision targets ``real``.

        ``discriminator`` is the module to call (the DDP wrapper under torchrun).
        """
        terms: dict[str, Tensor] = {}
        distill: Tensor
        scores_fake: Optional[Tensor] = None
        if self.needs_discriminator:
            if discriminator is None:
                raise ConfigError("this objective needs the discriminator at every step.")
            if self.loss == "perceptual-disc":
                # One call on [fake; real]: the adversarial score and both feature stacks.
                scores = discriminator_scores(discriminator(torch.cat([fake, real.detach()])))
                feats = self._disc_taps.take()  # type: ignore[union-attr]
                n = fake.shape[0]
                scores_fake = scores[:n]
                # Content on the middle feature map, style on all of them.
                content, style = self._perceptual(
                    [f[:n] for f in feats], [f[n:] for f in feats], (len(feats) // 2,)
                )
                terms["content"], terms["style"] = content, style
            else:
                scores_fake = discriminator_scores(discriminator(fake))
        if self.loss == "mse":
            terms["mse"] = F.mse_loss(fake, real)
            distill = self.mse_weight * terms["mse"]
        elif self.loss == "perceptual":
            assert self.vgg is not None and self._vgg_taps is not None
            n = fake.shape[0]
            self.vgg(_vgg_input(torch.cat([fake, real.detach()])))
            feats = self._vgg_taps.take()
            content_index = [VGG_STYLE_LAYERS.index(i) for i in VGG_CONTENT_LAYERS]
            content, style = self._perceptual([f[:n] for f in feats], [f[n:] for f in feats], content_index)
            terms["content"], terms["style"] = content, style
            distill = self.content_weight * content + self.style_weight * style
        else:
            distill = self.content_weight * terms["content"] + self.style_weight * terms["style"]
        total = distill
        if self.adv_weight > 0:
            assert scores_fake is not None
            terms["adversarial"] = lsgan_generator_loss(scores_fake)
            total = total + self.adv_weight * terms["adversarial"]
        return LossTerms(total=total, distill=distill, **terms)


def discriminator_feature_layers(discriminator: nn.Module) -> list[nn.Module]:
    """The Conv2d layers of a discriminator whose outputs are its features: all but the last
    (the last one makes the score). ConfigError when fewer than two exist."""
    convs = [m for m in discriminator.modules() if isinstance(m, nn.Conv2d)]
    if len(convs) < 2:
        raise ConfigError(
            "loss='perceptual-disc' takes feature maps from the discriminator's Conv2d layers "
            f"(all but the last), but it has {len(convs)} Conv2d layer(s); use loss='mse' instead."
        )
    return convs[:-1]
