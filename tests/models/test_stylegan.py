"""StyleGAN generator: reference layout, output shapes, deterministic noise."""

import pytest
import torch

from gan_brevitas.errors import ConfigError
from gan_brevitas.models import StyledGenerator
from gan_brevitas.models.stylegan import fused_upsample_kernel


@pytest.fixture(scope="module")
def reference_state() -> dict[str, torch.Size]:
    """Shapes of the full default generator (built on the meta device: no memory, no init)."""
    with torch.device("meta"):
        model = StyledGenerator()
    return {key: value.shape for key, value in model.state_dict().items()}


@pytest.mark.parametrize(
    ("key", "shape"),
    [
        ("style.1.linear.weight_orig", [512, 512]),
        ("style.15.linear.bias", [512]),
        ("generator.progression.0.conv1.input", [1, 512, 4, 4]),
        ("generator.progression.1.conv1.1.conv.weight_orig", [512, 512, 3, 3]),
        ("generator.progression.4.conv1.1.conv.weight_orig", [256, 512, 3, 3]),
        ("generator.progression.4.conv1.2.weight", [256, 1, 3, 3]),
        ("generator.progression.4.conv1.2.weight_flip", [256, 1, 3, 3]),
        ("generator.progression.5.conv1.0.weight", [256, 128, 3, 3]),
        ("generator.progression.5.conv1.0.bias", [128]),
        ("generator.progression.5.conv1.1.weight", [128, 1, 3, 3]),
        ("generator.progression.5.noise1.weight_orig", [1, 128, 1, 1]),
        ("generator.progression.5.adain2.style.linear.weight_orig", [256, 512]),
        ("generator.progression.5.conv2.conv.weight_orig", [128, 128, 3, 3]),
        ("generator.progression.8.conv1.0.weight", [32, 16, 3, 3]),
        ("generator.to_rgb.5.conv.weight_orig", [3, 128, 1, 1]),
        ("generator.to_rgb.8.conv.bias", [3]),
    ],
)
def test_reference_keys_and_shapes(reference_state, key, shape):
    assert list(reference_state[key]) == shape


def test_reference_key_set(reference_state):
    assert sum(key.startswith("style.") for key in reference_state) == 16
    assert {k.split(".")[2] for k in reference_state if k.startswith("generator.progression.")} == {
        str(i) for i in range(9)
    }
    assert not any("noise_const" in key for key in reference_state)  # const noise is not saved


def small(**kwargs) -> StyledGenerator:
    torch.manual_seed(0)
    return StyledGenerator(code_dim=16, n_mlp=2, channels=8, **kwargs).eval()


@pytest.mark.parametrize("size", [4, 16, 32])
def test_output_shape(size):
    model = small(size=size)
    with torch.no_grad():
        assert model(torch.randn(3, 16)).shape == (3, 3, size, size)
    assert model.input_kind == "latent" and model.latent_dim == 16 and model.image_size == size


def test_const_noise_is_deterministic_and_random_is_not():
    model = small(size=32, noise_mode="const")
    with torch.no_grad():
        for block in model.generator.progression:  # make the noise matter
            block.noise1.weight_orig.fill_(1.0)
            block.noise2.weight_orig.fill_(1.0)
        z = torch.randn(2, 16)
        first, second = model(z), model(z)
        torch.testing.assert_close(first, second, rtol=0, atol=0)
        # a second model with the same seed has the same maps, whatever the global RNG did
        torch.manual_seed(123)
        other = StyledGenerator(code_dim=16, n_mlp=2, channels=8, size=32, noise_mode="const")
        for i in range(model.step + 1):
            assert torch.equal(getattr(model, f"noise_const_{i}"), getattr(other, f"noise_const_{i}"))
        model.noise_mode = "random"
        assert not torch.equal(model(z), first)


def test_const_noise_forward_does_not_touch_global_rng():
    model = small(size=16, noise_mode="const")
    state = torch.get_rng_state()
    with torch.no_grad():
        model(torch.zeros(1, 16))
    assert torch.equal(torch.get_rng_state(), state)


def test_const_noise_broadcasts_over_batch():
    model = small(size=16, noise_mode="const")
    with torch.no_grad():
        z = torch.randn(3, 16)
        batch = model(z)
        single = model(z[1:2])
    torch.testing.assert_close(batch[1:2], single, rtol=1e-5, atol=1e-5)


def test_explicit_noise_and_step_alpha():
    model = small(size=32)
    z = torch.randn(2, 16)
    noise = [torch.randn(2, 1, 4 * 2**i, 4 * 2**i) for i in range(3)]
    with torch.no_grad():
        torch.testing.assert_close(model(z, noise=noise, step=2), model(z, noise=noise, step=2))
        assert model(z, noise=noise, step=2, alpha=0.5).shape == (2, 3, 16, 16)


def test_truncation_and_mixing():
    model = small(size=16, noise_mode="const")
    mean = model.mean_style(n=300, batch=128)
    assert mean.shape == (1, 16)
    torch.testing.assert_close(mean, model.mean_style(n=300, batch=128))
    z = torch.randn(2, 16)
    with torch.no_grad():
        at_mean = model(z, mean_style=mean, style_weight=0.0)
        torch.testing.assert_close(at_mean[0], at_mean[1])  # every latent maps to the mean style
        mixed = model([z, torch.randn(2, 16)], mixing_range=(0, 1))
    assert mixed.shape == (2, 3, 16, 16)
    with pytest.raises(ConfigError, match="mixing_range"):
        model([z, z])


def test_bad_arguments():
    with pytest.raises(ConfigError, match="power of two"):
        StyledGenerator(size=100, channels=4)
    with pytest.raises(ConfigError, match="channels"):
        StyledGenerator(channels=[8, 8])
    with pytest.raises(ConfigError, match="noise_mode"):
        small(noise_mode="fixed")
    model = small(size=16, noise_mode="const")
    with pytest.raises(ConfigError, match="size=32"):
        model(torch.randn(1, 16), step=3)


def test_fused_upsample_kernel_is_box_filtered():
    weight = torch.zeros(1, 1, 3, 3)
    weight[0, 0, 1, 1] = 1.0
    kernel = fused_upsample_kernel(weight, 1.0)
    assert kernel.shape == (1, 1, 4, 4)
    expected = torch.zeros(4, 4)
    expected[1:3, 1:3] = 0.25
    torch.testing.assert_close(kernel[0, 0], expected)
