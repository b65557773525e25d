"""CycleGAN ResNet generator: reference indices, parameter count, shapes."""

import pytest
import torch
from torch import nn

from gan_brevitas.models import ResnetGenerator


@pytest.fixture(scope="module")
def reference() -> ResnetGenerator:
    with torch.device("meta"):
        return ResnetGenerator()


def test_reference_indices(reference):
    layers = reference.model
    assert len(layers) == 28
    assert isinstance(layers[0], nn.ReflectionPad2d) and isinstance(layers[25], nn.ReflectionPad2d)
    assert isinstance(layers[27], nn.Tanh)
    assert layers[1].kernel_size == (7, 7) and layers[26].kernel_size == (7, 7)
    assert layers[4].stride == (2, 2) and layers[7].out_channels == 256
    for index in (19, 22):
        assert isinstance(layers[index], nn.ConvTranspose2d)
        assert layers[index].output_padding == (1, 1) and layers[index].stride == (2, 2)
    norm = layers[2]
    assert isinstance(norm, nn.InstanceNorm2d) and not norm.affine and not norm.track_running_stats


def test_reference_keys_and_shapes(reference):
    state = reference.state_dict()
    assert list(state["model.10.conv_block.1.weight"].shape) == [256, 256, 3, 3]
    assert list(state["model.18.conv_block.5.bias"].shape) == [256]
    assert list(state["model.19.weight"].shape) == [256, 128, 3, 3]
    assert list(state["model.26.weight"].shape) == [3, 64, 7, 7]
    convs = [m for m in reference.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    assert len(convs) == 2 * 9 + 6 and all(conv.bias is not None for conv in convs)


def test_parameter_count(reference):
    count = sum(p.numel() for p in reference.parameters())
    assert count == pytest.approx(11.38e6, rel=1e-3)


def test_output_shape_and_input_kind():
    torch.manual_seed(0)
    model = ResnetGenerator(ngf=8, n_blocks=2, image_size=32).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, 32, 32) * 2 - 1)
    assert out.shape == (2, 3, 32, 32)
    assert model.input_kind == "image" and model.in_channels == 3 and model.image_size == 32


def test_batch_norm_variant_has_no_conv_bias():
    model = ResnetGenerator(ngf=8, n_blocks=1, norm="batch")
    assert isinstance(model.model[2], nn.BatchNorm2d)
    assert model.model[1].bias is None and model.model[10].conv_block[1].bias is None
    assert model.model[-2].bias is not None  # the output conv keeps its bias
