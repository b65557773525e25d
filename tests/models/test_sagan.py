"""SAGAN generator: reference layout, shapes, spectral norm, the upsample+conv variant."""

import pytest
import torch

from gan_brevitas.errors import ConfigError
from gan_brevitas.models import SAGANGenerator


@pytest.fixture(scope="module")
def reference_state() -> dict[str, torch.Size]:
    with torch.device("meta"):
        model = SAGANGenerator()
    return {key: value.shape for key, value in model.state_dict().items()}


@pytest.mark.parametrize(
    ("key", "shape"),
    [
        ("l1.0.module.weight_bar", [128, 512, 4, 4]),
        ("l1.0.module.weight_u", [128]),
        ("l1.0.module.weight_v", [512 * 16]),
        ("l1.0.module.bias", [512]),
        ("l1.1.running_var", [512]),
        ("l2.0.module.weight_bar", [512, 256, 4, 4]),
        ("l4.0.module.weight_bar", [128, 64, 4, 4]),
        ("l4.1.num_batches_tracked", []),
        ("last.0.weight", [64, 3, 4, 4]),
        ("attn1.query_conv.weight", [16, 128, 1, 1]),
        ("attn1.key_conv.bias", [16]),
        ("attn1.value_conv.weight", [128, 128, 1, 1]),
        ("attn1.gamma", [1]),
        ("attn2.query_conv.weight", [8, 64, 1, 1]),
    ],
)
def test_reference_keys_and_shapes(reference_state, key, shape):
    assert list(reference_state[key]) == shape


def test_reference_key_count(reference_state):
    # 4 SN layers x (bias, u, v, bar) + 4 BN x 5 + last x 2 + 2 attention x 7
    assert len(reference_state) == 16 + 20 + 2 + 14


def small(**kwargs) -> SAGANGenerator:
    torch.manual_seed(0)
    return SAGANGenerator(image_size=32, z_dim=16, conv_dim=8, **kwargs).eval()


@pytest.mark.parametrize("upsample", ["convtranspose", "upsample_conv"])
def test_output_shapes(upsample):
    model = small(upsample=upsample)
    with torch.no_grad():
        image, attention1, attention2 = model(torch.randn(2, 16))
    assert image.shape == (2, 3, 32, 32)
    assert attention1.shape == (2, 64, 64)  # 8x8 positions
    assert attention2.shape == (2, 256, 256)  # 16x16 positions
    assert image.abs().max() <= 1
    torch.testing.assert_close(attention1.sum(-1), torch.ones(2, 64))
    assert model.input_kind == "latent" and model.latent_dim == 16 and model.image_size == 32


def test_upsample_conv_keys():
    keys = set(small(upsample="upsample_conv").state_dict())
    assert {"l1.0.module.weight_bar", "l2.1.module.weight_bar", "l2.2.running_mean", "last.1.weight"} <= keys
    assert "l2.0.module.weight_bar" not in keys and "last.0.weight" not in keys


def test_attention_gamma_starts_at_zero():
    model = small()
    assert model.attn1.gamma.item() == 0.0 and model.attn2.gamma.item() == 0.0


def test_spectral_norm_iterates_every_forward_and_converges():
    model = small()
    layer = model.l2[0]
    u_before = layer.module.weight_u.clone()
    with torch.no_grad():
        model(torch.randn(1, 16))  # eval mode too
        assert not torch.equal(u_before, layer.module.weight_u)
        tiny = torch.zeros(1, layer.module.in_channels, 1, 1)
        for _ in range(100):
            layer(tiny)
    weight = layer.module.weight_bar.detach()
    sigma_true = torch.linalg.matrix_norm(weight.reshape(weight.shape[0], -1), ord=2)
    u, v = layer.next_u_v()
    normalized = layer.normalized_weight(u, v).detach()
    torch.testing.assert_close(normalized, weight / sigma_true, rtol=1e-3, atol=1e-4)


def test_bad_arguments():
    with pytest.raises(ConfigError, match="multiple of 16"):
        SAGANGenerator(image_size=40, conv_dim=8)
    with pytest.raises(ConfigError, match="upsample"):
        SAGANGenerator(image_size=32, conv_dim=8, upsample="pixelshuffle")
    with pytest.raises(ConfigError, match="conv_dim"):
        SAGANGenerator(image_size=32, conv_dim=4)
