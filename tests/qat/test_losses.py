"""The objective of eq. (4): LSGAN terms, Gram/perceptual losses, VGG16 from local files only,
the refusal when none exists, and the discriminator-feature alternative."""

import pytest
import torch
from torch import nn

from gan_brevitas.errors import CheckpointError, ConfigError
from gan_brevitas.qat import losses
from gan_brevitas.qat.discriminator import check_discriminator, fresh_discriminator
from gan_brevitas.qat.losses import (
    DistillationObjective,
    gram_matrix,
    load_vgg16_features,
    lsgan_discriminator_loss,
    lsgan_generator_loss,
    resolve_vgg16_weights,
)


@pytest.fixture
def no_vgg_anywhere(monkeypatch, tmp_path):
    """No env variable and an empty torch hub cache, whatever this machine has."""
    monkeypatch.delenv(losses.VGG_ENV_VAR, raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))


def test_lsgan_terms():
    ones, zeros = torch.ones(4), torch.zeros(4)
    assert float(lsgan_discriminator_loss(ones, zeros)) == 0.0  # perfect critic
    assert float(lsgan_discriminator_loss(zeros, ones)) == pytest.approx(1.0)
    assert float(lsgan_generator_loss(ones)) == 0.0
    assert float(lsgan_generator_loss(zeros)) == pytest.approx(0.5)


def test_gram_matrix_normalised_by_chw():
    x = torch.randn(2, 3, 4, 5)
    flat = x.reshape(2, 3, 20)
    expected = torch.einsum("bcn,bdn->bcd", flat, flat) / 60
    torch.testing.assert_close(gram_matrix(x), expected)


def test_perceptual_loss_is_refused_without_vgg_weights(no_vgg_anywhere):
    with pytest.raises(ConfigError) as info:
        resolve_vgg16_weights()
    message = str(info.value)
    for option in ("vgg_weights=PATH", "loss='mse'", "loss='perceptual-disc'", losses.VGG_ENV_VAR):
        assert option in message
    with pytest.raises(ConfigError, match="is not a file"):
        resolve_vgg16_weights("/nonexistent/vgg16.pth")


def test_vgg_weights_found_in_env_and_torchvision_cache(no_vgg_anywhere, monkeypatch, vgg_file, tmp_path):
    monkeypatch.setenv(losses.VGG_ENV_VAR, str(vgg_file))
    assert resolve_vgg16_weights() == vgg_file
    monkeypatch.delenv(losses.VGG_ENV_VAR)
    cache = losses.vgg16_cache_path()
    cache.parent.mkdir(parents=True)
    cache.symlink_to(vgg_file)
    assert resolve_vgg16_weights() == cache


def test_perceptual_loss_on_local_vgg(vgg_file, tmp_path):
    vgg = load_vgg16_features(vgg_file)
    assert not any(p.requires_grad for p in vgg.parameters())
    objective = DistillationObjective("perceptual", 0.0, 3.0, 3e4, 1.0, vgg=vgg)
    real = torch.rand(2, 3, 16, 16) * 2 - 1
    same = objective(real.clone(), real)
    assert float(same.total) == 0.0 and same.content is not None and same.style is not None
    fake = (real + 0.3 * torch.randn_like(real)).requires_grad_(True)
    terms = objective(fake, real)
    assert float(terms.content.detach()) > 0 and float(terms.style.detach()) > 0
    values = terms.scalars()
    assert values["total"] == pytest.approx(3.0 * values["content"] + 3e4 * values["style"], rel=1e-5)
    terms.total.backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0
    # A features-only safetensors file works too; a wrong file is a CheckpointError.
    from safetensors.torch import save_file

    short = tmp_path / "features.safetensors"
    save_file({k: v.contiguous() for k, v in vgg.state_dict().items()}, str(short))
    torch.testing.assert_close(load_vgg16_features(short)[0].weight, vgg[0].weight)
    bad = tmp_path / "bad.pth"
    torch.save({"0.weight": torch.zeros(1)}, bad)
    with pytest.raises(CheckpointError, match="not a VGG16 state dict"):
        load_vgg16_features(bad)


def test_mse_and_adversarial_objective():
    disc = fresh_discriminator(3, 16)
    objective = DistillationObjective("mse", 0.01, 3.0, 3e4, 2.0, discriminator=disc)
    real = torch.rand(4, 3, 16, 16) * 2 - 1
    fake = real + 0.1
    values = objective(fake, real, disc).scalars()
    assert values["mse"] == pytest.approx(0.01, rel=1e-4)
    with torch.no_grad():
        expected = 2.0 * values["mse"] + 0.01 * float(lsgan_generator_loss(disc(fake)))
    assert values["total"] == pytest.approx(expected, rel=1e-5)


def test_perceptual_disc_uses_discriminator_features():
    disc = fresh_discriminator(3, 32)
    objective = DistillationObjective("perceptual-disc", 0.0, 3.0, 3e4, 1.0, discriminator=disc)
    real = torch.rand(2, 3, 32, 32) * 2 - 1
    assert objective(real.clone(), real, disc).scalars()["total"] == 0.0
    assert objective(real + 0.2, real, disc).scalars()["total"] > 0.0
    with pytest.raises(ConfigError, match="Conv2d"):
        DistillationObjective("perceptual-disc", 0.0, 3.0, 3e4, 1.0, discriminator=nn.Linear(3, 1))


def test_discriminator_shape_check():
    sample = torch.zeros(2, 3, 16, 16)
    check_discriminator(fresh_discriminator(3, 16), sample)
    linear_head = nn.Sequential(nn.Conv2d(3, 4, 4, 2, 1), nn.Flatten(), nn.Linear(4 * 16 * 16, 1))  # 32 px
    with pytest.raises(ConfigError, match=r"does not accept the generator's output shape \[B, 3, 16, 16\]"):
        check_discriminator(linear_head, sample)
    declared = fresh_discriminator(3, 16)
    declared.image_size = 32
    with pytest.raises(ConfigError, match="takes 32x32 images"):
        check_discriminator(declared, sample)
    with pytest.raises(ConfigError, match="takes 1-channel images"):
        declared.image_size, declared.in_channels = 16, 1
        check_discriminator(declared, sample)


def test_fresh_discriminator_depends_on_its_seed_only():
    a = fresh_discriminator(3, 16, seed=1)
    torch.randn(10)  # the global RNG state does not matter
    b = fresh_discriminator(3, 16, seed=1)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(fresh_discriminator(3, 16, seed=2)[0].weight, a[0].weight)
