"""`fold_batch_norms`: a BatchNorm right after a conv is folded into it, in a Sequential or in a
forward that calls them one after the other; never where the conv output is read elsewhere."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gan_brevitas.quant.convert import fold_batch_norms


def _trained_bn(channels: int) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(channels)
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1), bn.running_var.uniform_(0.5, 2)
        bn.weight.uniform_(0.5, 1.5), bn.bias.uniform_(-0.5, 0.5)
    return bn.eval()


class Block(nn.Module):
    """SRResNet's residual block: x + bn2(conv2(act(bn1(conv1(x))))), called functionally."""

    def __init__(self, skip_reads_conv: bool = False) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(8, 8, 3, padding=1), _trained_bn(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, padding=1), _trained_bn(8)
        self.act = nn.SiLU()
        self.skip_reads_conv = skip_reads_conv

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(x)
        out = self.bn2(self.conv2(self.act(self.bn1(h))))
        return out + (h if self.skip_reads_conv else x)


class Branchy(nn.Module):
    """Data-dependent control flow: torch.fx cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(8, 8, 3, padding=1), _trained_bn(8)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(self.conv(x)) if x.sum() > -1e9 else x


def _fold(model: nn.Module) -> tuple[nn.Module, Tensor, Tensor]:
    torch.manual_seed(0)
    x = torch.randn(2, 8, 12, 12)
    model.eval()
    with torch.no_grad():
        before = model(x)
        fold_batch_norms(model)
        return model, before, model(x)


def test_functional_conv_bn_is_folded_exactly():
    model, before, after = _fold(Block())
    assert isinstance(model.bn1, nn.Identity) and isinstance(model.bn2, nn.Identity)
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-5)


def test_conv_output_read_by_the_skip_keeps_its_batch_norm():
    model, before, after = _fold(Block(skip_reads_conv=True))
    assert isinstance(model.bn1, nn.BatchNorm2d)  # folding it would change the skip
    assert isinstance(model.bn2, nn.Identity)
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-5)


def test_untraceable_model_keeps_its_batch_norm_and_its_output():
    model, before, after = _fold(Branchy())
    assert isinstance(model.bn, nn.BatchNorm2d)
    torch.testing.assert_close(after, before)


def test_sequential_conv_bn_is_folded():
    model, before, after = _fold(nn.Sequential(nn.Conv2d(8, 8, 3), _trained_bn(8), nn.ReLU()))
    assert isinstance(model[1], nn.Identity)
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-5)


class ReadsParameters(nn.Module):
    """The forward reads the conv's weight and the BatchNorm's buffer directly."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(8, 8, 3, padding=1), _trained_bn(8)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(self.conv(x)) * self.bn.running_var.mean() + self.conv.weight.sum()


class CalledTwice(nn.Module):
    """The Sequential's conv is also called on its own."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), _trained_bn(8))

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x) + self.body[0](x)


def test_modules_read_directly_or_called_twice_keep_their_batch_norm():
    for model in (ReadsParameters(), CalledTwice()):
        folded, before, after = _fold(model)
        assert any(isinstance(m, nn.BatchNorm2d) for m in folded.modules()), type(model).__name__
        torch.testing.assert_close(after, before)


def test_grouped_conv_transpose_keeps_its_batch_norm():
    model, before, after = _fold(nn.Sequential(nn.ConvTranspose2d(8, 8, 3, groups=4), _trained_bn(8)))
    assert isinstance(model[1], nn.BatchNorm2d)
    torch.testing.assert_close(after, before)
