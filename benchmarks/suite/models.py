"""The suite's generator architectures, written from their checkpoints' key names and shapes.

Module names and indices follow the checkpoints' keys so that ``load_state_dict(strict=True)``
accepts them unchanged; nothing else is shared with the original code.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F


def _norm_relu(channels: int) -> list[nn.Module]:
    return [nn.InstanceNorm2d(channels), nn.ReLU()]


class SketchTranslator(nn.Module):
    """Photo -> sketch: an encoder-decoder without residual blocks, images in [-1, 1].

    Conv 7x7 (64), Conv 3x3 s2 (128), Conv 3x3 s2 (256), ConvTranspose s2 (128, 64),
    Conv 7x7 (3); InstanceNorm (no affine) + ReLU after each but the last, tanh output.
    """

    input_kind = "image"

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        w = width
        self.main = nn.Sequential(
            nn.Conv2d(3, w, 7, padding=3), *_norm_relu(w),
            nn.Conv2d(w, 2 * w, 3, stride=2, padding=1), *_norm_relu(2 * w),
            nn.Conv2d(2 * w, 4 * w, 3, stride=2, padding=1), *_norm_relu(4 * w),
            nn.ConvTranspose2d(4 * w, 2 * w, 3, stride=2, padding=1, output_padding=1), *_norm_relu(2 * w),
            nn.ConvTranspose2d(2 * w, w, 3, stride=2, padding=1, output_padding=1), *_norm_relu(w),
            nn.Conv2d(w, 3, 7, padding=3), nn.Tanh(),
        )  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        return self.main(x)


class _SrganResidual(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(channels)
        self.act = nn.SiLU()
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.bn2(self.conv2(self.act(self.bn1(self.conv1(x)))))


class _SubPixelUp(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, 4 * channels, 3, padding=1)
        self.shuffle = nn.PixelShuffle(2)
        self.act = nn.SiLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.shuffle(self.conv(x)))


class SrganX4(nn.Module):
    """SRGAN-style x4 super-resolution, images in [0, 1] in and out.

    Head Conv 9x9 + PReLU; five residual blocks (Conv-BN-SiLU-Conv-BN, identity add); Conv-BN;
    a long skip from the head; two Conv + PixelShuffle(2) + SiLU stages; Conv 9x9; (tanh + 1) / 2.
    """

    input_kind = "image"

    def __init__(self, channels: int = 64, blocks: int = 5) -> None:
        super().__init__()
        c = channels
        self.block1 = nn.Sequential(nn.Conv2d(3, c, 9, padding=4), nn.PReLU())
        for index in range(blocks):
            self.add_module(f"block{index + 2}", _SrganResidual(c))
        self.blocks = blocks
        self.add_module(f"block{blocks + 2}", nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c)))
        self.add_module(
            f"block{blocks + 3}",
            nn.Sequential(_SubPixelUp(c), _SubPixelUp(c), nn.Conv2d(c, 3, 9, padding=4)),
        )

    def forward(self, x: Tensor) -> Tensor:
        head = self.block1(x)
        body = head
        for index in range(self.blocks + 1):
            body = getattr(self, f"block{index + 2}")(body)
        out = getattr(self, f"block{self.blocks + 3}")(head + body)
        return (torch.tanh(out) + 1) / 2


class SrvggX4(nn.Module):
    """Real-ESRGAN's compact x4 network, images in [0, 1].

    ``body``: Conv 3x3 (3 -> 64) + PReLU, 16 x (Conv 3x3 + PReLU), Conv 3x3 (64 -> 48);
    PixelShuffle(4) of the body plus the nearest-neighbour x4 upsampled input.
    """

    input_kind = "image"

    def __init__(self, channels: int = 64, convs: int = 16, scale: int = 4) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, channels, 3, padding=1), nn.PReLU(channels)]
        for _ in range(convs):
            layers += [nn.Conv2d(channels, channels, 3, padding=1), nn.PReLU(channels)]
        layers.append(nn.Conv2d(channels, 3 * scale * scale, 3, padding=1))
        self.body = nn.Sequential(*layers)
        self.shuffle = nn.PixelShuffle(scale)
        self.scale = scale

    def forward(self, x: Tensor) -> Tensor:
        base = F.interpolate(x, scale_factor=self.scale, mode="nearest")
        return self.shuffle(self.body(x)) + base


class DcganMnist(nn.Module):
    """DCGAN generator for 28x28 MNIST digits in [-1, 1] from (N, 100) normal latents.

    ConvTranspose 4x4 s1 (128), 3x3 s2 (64), 4x4 s2 (32), 4x4 s2 (1), no biases; BatchNorm +
    LeakyReLU(0.2) between; tanh output.
    """

    input_kind = "latent"
    latent_dim = 100

    def __init__(self, latent_dim: int = 100, width: int = 32) -> None:
        super().__init__()
        w = width
        self.layer_stack = nn.Sequential(
            nn.Unflatten(1, (latent_dim, 1, 1)),
            nn.ConvTranspose2d(latent_dim, 4 * w, 4, 1, 0, bias=False), nn.BatchNorm2d(4 * w), nn.LeakyReLU(0.2),
            nn.ConvTranspose2d(4 * w, 2 * w, 3, 2, 1, bias=False), nn.BatchNorm2d(2 * w), nn.LeakyReLU(0.2),
            nn.ConvTranspose2d(2 * w, w, 4, 2, 1, bias=False), nn.BatchNorm2d(w), nn.LeakyReLU(0.2),
            nn.ConvTranspose2d(w, 1, 4, 2, 1, bias=False), nn.Tanh(),
        )  # fmt: skip

    def forward(self, z: Tensor) -> Tensor:
        return self.layer_stack(z)


ARCHITECTURES: dict[str, type[nn.Module]] = {
    "sketch_translator": SketchTranslator,
    "srgan_x4": SrganX4,
    "srvgg_x4": SrvggX4,
    "dcgan_mnist": DcganMnist,
}


def build(name: str, path: str) -> nn.Module:
    """The float model ``name`` with the checkpoint at ``path`` (weights_only, strict), in eval."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "params" in state:  # BasicSR nests its weights under "params"
        state = state["params"]
    model = ARCHITECTURES[name]()
    model.load_state_dict(state, strict=True)
    return model.eval()
