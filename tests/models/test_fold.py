"""fold_generator: exact, plain torch layers, input untouched, RNG untouched."""

import copy

import pytest
import torch
from torch import nn

from gan_brevitas.models import (
    ResnetGenerator,
    SAGANGenerator,
    StyledGenerator,
    float_parts,
    fold_generator,
)
from gan_brevitas.models.sagan import SpectralNorm
from gan_brevitas.models.stylegan import (
    Blur,
    EqualLRConv2d,
    EqualLRLinear,
    EqualLRNoiseInjection,
    FusedUpsample,
    NoiseInjection,
)

CUSTOM_WEIGHT_MODULES = (EqualLRConv2d, EqualLRLinear, EqualLRNoiseInjection, FusedUpsample, SpectralNorm)


def randomize_state(model: nn.Module) -> None:
    """Make every parameter and BN statistic matter (zero noise weights, gamma 0 hide bugs)."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(("noise1.weight_orig", "noise2.weight_orig", "gamma")):
                param.uniform_(0.5, 1.0)
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.5, 0.5)


def first_output(output):
    return output[0] if isinstance(output, tuple) else output


CASES = {
    "stylegan_fused_128": (
        lambda: StyledGenerator(code_dim=16, n_mlp=2, size=128, channels=8, noise_mode="const"),
        (2, 16),
    ),
    "stylegan_unfused_64": (
        lambda: StyledGenerator(code_dim=16, n_mlp=2, size=64, channels=8, fused=False, noise_mode="const"),
        (2, 16),
    ),
    "sagan": (lambda: SAGANGenerator(image_size=32, z_dim=16, conv_dim=8), (2, 16)),
    "sagan_upsample_conv": (
        lambda: SAGANGenerator(image_size=32, z_dim=16, conv_dim=8, upsample="upsample_conv"),
        (2, 16),
    ),
    "cyclegan": (lambda: ResnetGenerator(ngf=8, n_blocks=2, image_size=32), (2, 3, 32, 32)),
    "cyclegan_batch": (
        lambda: ResnetGenerator(ngf=8, n_blocks=2, norm="batch", image_size=32),
        (2, 3, 32, 32),
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_fold_is_exact(case):
    build, input_shape = CASES[case]
    torch.manual_seed(0)
    model = build().eval()
    randomize_state(model)
    x = torch.randn(*input_shape)
    before = copy.deepcopy(model.state_dict())
    rng = torch.get_rng_state()

    folded = fold_generator(model)

    assert torch.equal(torch.get_rng_state(), rng)
    for key, value in model.state_dict().items():  # input untouched, SN vectors did not advance
        assert torch.equal(value, before[key]), key
    assert not any(isinstance(m, CUSTOM_WEIGHT_MODULES) for m in folded.modules())
    assert not folded.training
    with torch.no_grad():
        expected = first_output(model(x))  # the original's next call uses the folded u, v
        got = first_output(folded(x))
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
        torch.testing.assert_close(first_output(folded(x)), got, rtol=0, atol=0)  # deterministic


def test_folded_stylegan_layers():
    torch.manual_seed(0)
    folded = fold_generator(StyledGenerator(code_dim=16, n_mlp=2, size=128, channels=8))
    modules = dict(folded.named_modules())
    assert isinstance(modules["style.1"], nn.Linear)
    assert isinstance(modules["generator.progression.1.conv1.1"], nn.Conv2d)
    assert isinstance(modules["generator.progression.1.conv1.2"], Blur)
    upsample = modules["generator.progression.5.conv1.0"]
    assert isinstance(upsample, nn.ConvTranspose2d)
    assert upsample.kernel_size == (4, 4) and upsample.stride == (2, 2) and upsample.padding == (1, 1)
    assert isinstance(modules["generator.progression.5.adain1.style"], nn.Linear)
    assert isinstance(modules["generator.progression.5.conv2"], nn.Conv2d)
    assert isinstance(modules["generator.progression.5.noise1"], NoiseInjection)
    assert isinstance(modules["generator.to_rgb.5"], nn.Conv2d)
    assert all(p.requires_grad for p in folded.parameters())


def test_folded_sagan_layers():
    model = SAGANGenerator(image_size=32, z_dim=16, conv_dim=8, upsample="upsample_conv")
    folded = fold_generator(model)
    assert isinstance(folded.l1[0], nn.ConvTranspose2d) and folded.l1[0].kernel_size == (2, 2)
    assert isinstance(folded.l2[1], nn.Conv2d) and isinstance(folded.l2[2], nn.BatchNorm2d)
    assert set(folded.l2[1].state_dict()) == {"weight", "bias"}


def test_float_parts():
    style = dict(float_parts(StyledGenerator(code_dim=16, n_mlp=2, size=16, channels=8)))
    assert "style.0" in style and "PixelNorm" in style["style.0"]
    assert "AdaIN" in style["generator.progression.1.adain1"]
    assert "noise" in style["generator.progression.1.noise2"]
    assert "Blur" in style["generator.progression.1.conv1.2"]
    assert not any(name.endswith(".norm") for name in style)  # covered by the AdaIN entry
    sagan = dict(float_parts(SAGANGenerator(image_size=32, z_dim=16, conv_dim=8)))
    assert set(sagan) == {"attn1", "attn2", "last.1"}
    cycle = dict(float_parts(ResnetGenerator(ngf=8, n_blocks=1)))
    assert "model.2" in cycle and "model.10.conv_block.6" in cycle and "model.19" in cycle  # Tanh: 10 + 1 block + 8
    folded = fold_generator(StyledGenerator(code_dim=16, n_mlp=2, size=16, channels=8))
    assert dict(float_parts(folded)).keys() == style.keys()
