"""Activation points (after LeakyReLU / PReLU, around adds and concatenations) and grid
alignment: the float model is unchanged, the points are calibrated and listed, untraceable
joins are reported, and an aligned quantizer changes nothing it receives."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gan_brevitas import QuantConfig, recipes
from gan_brevitas.quant.align import align_grids
from gan_brevitas.quant.convert import QuantActPoint, act_points, act_proxies, fold_for_quantization
from gan_brevitas.quant.points import FLOAT_NOTE, ActPoint, Requantized


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(8, 8, 3, padding=1)
        self.act = nn.PReLU()
        self.b = nn.Conv2d(8, 8, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.b(self.act(self.a(x)))


class SRNet(nn.Module):
    """conv + PReLU + residual blocks + skip add + concat + pixel shuffle (an SR generator)."""

    input_kind = "image"

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.LeakyReLU(0.1))
        self.blocks = nn.Sequential(Block(), Block())
        self.up = nn.Sequential(nn.Conv2d(16, 32, 3, padding=1), nn.PixelShuffle(2), nn.PReLU())
        self.tail = nn.Conv2d(8, 3, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.head(x)
        return self.tail(self.up(torch.cat([h, self.blocks(h) + h], dim=1)))


class DataDependent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)

    def forward(self, x: Tensor) -> Tensor:
        if x.mean() > 0:  # data-dependent control flow: torch.fx cannot trace this
            return x + self.conv(x)
        return self.conv(x)


def _images(n: int = 4, seed: int = 0) -> Tensor:
    return torch.rand(n, 3, 8, 8, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_points_leave_the_float_model_unchanged_and_keep_its_structure():
    torch.manual_seed(0)
    model = SRNet().eval()
    folded = fold_for_quantization(model)
    x = _images()
    assert torch.equal(folded(x), model(x))
    roles = sorted(m.role for m in folded.modules() if isinstance(m, ActPoint))
    assert roles == sorted(["LeakyReLU output", "PReLU output", "PReLU output", "PReLU output"]
                           + ["add input 0", "add input 1", "add output"] * 3
                           + ["cat input 0", "cat input 1", "cat output"])
    assert isinstance(folded.head[1], Requantized)
    assert type(folded.blocks[0]).__name__ == "Block"  # an fx GraphModule under its own class name
    assert folded.input_kind == "image"  # class attributes survive the root's rewrite
    assert type(model.blocks[0]) is Block  # the original is untouched


def test_points_are_quantized_calibrated_and_described():
    torch.manual_seed(0)
    model = SRNet().eval()
    qmodel = recipes.quantize(model, inputs=_images(8), num_samples=8, progress=False)
    points = dict(act_points(qmodel))
    assert len(points) == 4 + 9 + 3
    assert all(isinstance(p, QuantActPoint) for p in points.values())
    text = recipes.describe(qmodel)
    assert "PReLU output: u8" in text and "add input 1: u8" in text and "cat output: u8" in text
    skipped = recipes.quantize(model, inputs=_images(8), num_samples=8, progress=False,
                               config=QuantConfig(skip=("ActPoint",)))
    assert not list(act_points(skipped))
    assert "kept float (config.skip)" in recipes.describe(skipped)


def test_a_module_that_does_not_trace_keeps_its_add_float_and_says_so():
    model = nn.Sequential(nn.Conv2d(3, 3, 1), DataDependent()).eval()
    folded = fold_for_quantization(model)
    assert "not traceable by torch.fx" in getattr(folded[1], FLOAT_NOTE)
    qmodel = recipes.quantize(model, inputs=_images(4), num_samples=4, progress=False)
    assert "not traceable by torch.fx" in recipes.describe(qmodel)


def test_an_aligned_quantizer_returns_its_input_unchanged():
    torch.manual_seed(0)
    qmodel = recipes.quantize(SRNet().eval(), inputs=_images(8), num_samples=8, progress=False)
    aligned = align_grids(qmodel, _images(1, seed=3))
    assert aligned, "the residual add outputs feed convs and adds: some quantizer must align"
    names = {f"{name}.{side}": proxy for name, side, proxy in act_proxies(qmodel)}
    seen: dict[str, tuple[Tensor, Tensor]] = {}

    def record(target: str):
        def hook(module: nn.Module, args: tuple, out: Tensor) -> None:
            seen.setdefault(target, (args[0].clone(), getattr(out, "value", out).clone()))

        return hook

    handles = [names[target].register_forward_hook(record(target)) for target, _ in aligned]
    with torch.no_grad():
        qmodel(_images(2, seed=5))
    for handle in handles:
        handle.remove()
    for target, (given, returned) in seen.items():
        assert torch.equal(given, returned), target


def test_concatenation_inputs_share_the_output_grid():
    torch.manual_seed(0)
    qmodel = recipes.quantize(SRNet().eval(), inputs=_images(8), num_samples=8, progress=False)
    points = dict(act_points(qmodel))
    grids = {name: (float(p.act_quant.scale()), float(p.act_quant.zero_point())) for name, p in points.items()
             if p.role.startswith("cat")}
    assert len(grids) == 3 and len(set(grids.values())) == 1, grids
