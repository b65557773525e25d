"""FID / qFID through torch-fidelity with the offline demo CNN, and the generation helper."""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from gan_brevitas.demo.data import mnist_digits, texture_crops
from gan_brevitas.errors import GanBrevitasError, MetricError
from gan_brevitas.metrics import MetricResult, fid, generate, qfid, resolve_extractor
from gan_brevitas.metrics.extractors import ExtractorSpec, demo_cnn_spec


@pytest.fixture(scope="module")
def spec() -> ExtractorSpec:
    return demo_cnn_spec()


@pytest.fixture(scope="module")
def real() -> torch.Tensor:
    """400 demo images: 200 digits, 200 texture/photo crops, interleaved so halves are alike."""
    digits, _ = mnist_digits()
    digits = digits[torch.randperm(len(digits), generator=torch.Generator().manual_seed(0))[:200]]
    crops = torch.cat([texture_crops(name, 50, seed=7) for name in ("grass", "gravel", "brick", "coffee")])
    crops = crops[torch.randperm(200, generator=torch.Generator().manual_seed(1))]
    return torch.stack([digits, crops], dim=1).flatten(0, 1)


class TinyGenerator(nn.Module):
    """z [N, 16] -> images [N, 3, 16, 16] in [-1, 1]; optionally SAGAN-like (image, attention) output."""

    def __init__(self, returns_tuple: bool = False) -> None:
        super().__init__()
        self.returns_tuple = returns_tuple
        self.net = nn.Sequential(nn.Linear(16, 3 * 16 * 16), nn.BatchNorm1d(3 * 16 * 16), nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        images = self.net(z).view(-1, 3, 16, 16)
        return (images, torch.zeros(len(z), 4)) if self.returns_tuple else images


def _generator() -> TinyGenerator:
    torch.manual_seed(0)
    generator = TinyGenerator()
    generator.net[1].running_var.fill_(0.25)  # eval-mode BN spreads the outputs over [-1, 1]
    return generator


def _sampler(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    return lambda batch_size: torch.randn(batch_size, 16, generator=generator)


def test_fid_of_a_set_with_itself_is_zero(real: torch.Tensor, spec: ExtractorSpec) -> None:
    result = fid(real[:200], real[:200].clone(), extractor=spec)
    assert result.value == pytest.approx(0.0, abs=1e-3)


def test_fid_grows_with_noise(real: torch.Tensor, spec: ExtractorSpec) -> None:
    reference, others = real[:200], real[200:]
    noise = torch.randn(others.shape, generator=torch.Generator().manual_seed(2))
    sigmas = (0.0, 0.1, 0.25, 0.5)
    values = [fid((others + sigma * noise).clamp(-1, 1), reference, extractor=spec).value for sigma in sigmas]
    assert values[0] > 0  # two different samples of the same data
    assert values == sorted(values) and values[-1] > 2 * values[0], values


def test_every_result_names_its_extractor_and_hash(real: torch.Tensor, spec: ExtractorSpec) -> None:
    result = fid(real[:64], real[64:128], extractor=spec, batch_size=32)
    assert isinstance(result, MetricResult)
    assert (result.name, result.n, result.n_reference) == ("fid", 64, 64)
    assert result.extractor == spec.label and result.weights_sha256 == spec.weights_sha256
    assert spec.label in str(result) and spec.weights_sha256 in str(result)
    assert result.to_dict()["weights_sha256"] == spec.weights_sha256


def test_default_extractor_is_the_offline_cnn_and_label_says_so(real: torch.Tensor, no_inception: Path) -> None:
    result = fid(real[:64], real[64:128])
    assert result.extractor == resolve_extractor().label
    assert "gan-brevitas-demo-cnn" in result.extractor and "NOT comparable" in result.extractor


def test_fid_accepts_batches_uint8_and_one_channel(real: torch.Tensor, spec: ExtractorSpec) -> None:
    as_tensor = fid(real[:64], real[64:128], extractor=spec).value
    as_batches = fid(list(real[:64].split(20)), iter(real[64:128].split(16)), extractor=spec).value
    assert as_batches == pytest.approx(as_tensor, rel=1e-6)
    grey = real[:64, :1]
    assert fid(grey, real[64:128, :1], extractor=spec).value == pytest.approx(
        fid(grey.expand(-1, 3, -1, -1), real[64:128, :1].expand(-1, 3, -1, -1), extractor=spec).value, rel=1e-6
    )


def test_fid_rejects_bad_images(real: torch.Tensor, spec: ExtractorSpec) -> None:
    nan = real[:8].clone()
    nan[3, 0, 0, 0] = float("nan")
    with pytest.raises(MetricError, match="NaN"):
        fid(nan, real[8:16], extractor=spec)
    with pytest.raises(MetricError, match="at least 2"):
        fid(real[:1], real[8:16], extractor=spec)
    with pytest.raises(MetricError, match="different shapes"):
        fid(real[:8], real[8:16, :, :16, :16], extractor=spec)
    with pytest.raises(MetricError, match=r"\[-1, 1\]"):
        fid((real[:8] + 1) * 127.5, real[8:16], extractor=spec)
    with pytest.raises(GanBrevitasError):
        fid(real[:8, :2], real[8:16, :2], extractor=spec)


def test_qfid_of_a_model_against_itself_is_zero(spec: ExtractorSpec) -> None:
    model = _generator()
    # the sampler is random and called once per batch: qfid must feed the SAME batch to both models
    result = qfid(copy.deepcopy(model), model, _sampler(), n=128, batch_size=48, extractor=spec, progress=False)
    assert result.name == "qfid" and (result.n, result.n_reference) == (128, 128)
    assert result.value == pytest.approx(0.0, abs=1e-3)
    assert result.extractor == spec.label and result.weights_sha256 == spec.weights_sha256


def test_qfid_sees_a_perturbed_model(spec: ExtractorSpec) -> None:
    model = _generator()
    perturbed = copy.deepcopy(model)
    with torch.no_grad():
        perturbed.net[0].weight.add_(0.3 * torch.randn_like(perturbed.net[0].weight))
    latents = torch.randn(128, 16, generator=torch.Generator().manual_seed(3))
    assert qfid(perturbed, model, latents, n=128, extractor=spec, progress=False).value > 0.1


def test_generate_inputs_tuple_outputs_and_modes() -> None:
    model = TinyGenerator(returns_tuple=True)
    model.train()
    latents = torch.randn(50, 16, generator=torch.Generator().manual_seed(4))
    from_tensor = generate(model, latents, n=40, batch_size=16, progress=False)
    assert from_tensor.shape == (40, 3, 16, 16) and not from_tensor.requires_grad
    assert model.training and model.net[1].training  # train/eval flags restored
    from_batches = generate(model, iter(latents.split(7)), n=40, batch_size=16, progress=False)
    # eval-mode BN: independent of batching up to float summation order (train-mode BN differs by O(1))
    assert torch.allclose(from_batches, from_tensor, atol=1e-5)
    from_sampler = generate(model, _sampler(5), n=33, batch_size=16, progress=False)
    assert from_sampler.shape == (33, 3, 16, 16)
    assert torch.equal(from_sampler, generate(model, _sampler(5), n=33, batch_size=16, progress=False))


def test_generate_bad_requests(caplog: pytest.LogCaptureFixture) -> None:
    model = TinyGenerator()
    with pytest.raises(MetricError, match="n"):
        generate(model, _sampler(), n=1, progress=False)
    with caplog.at_level(logging.WARNING):
        assert len(generate(model, [torch.randn(10, 16)], n=20, progress=False)) == 10
    assert "10 of the 20" in caplog.text  # short inputs: fewer samples, said loudly (gan_brevitas.inputs)
    with pytest.raises(GanBrevitasError, match="NaN"):
        generate(model, torch.full((4, 16), float("nan")), n=4, progress=False)
    with pytest.raises(MetricError, match="must return images"):
        generate(nn.Flatten(), torch.randn(4, 16), n=4, progress=False)


@pytest.fixture(scope="module")
def random_inception_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A torch-fidelity Inception-v3 state dict with random weights (the real ones cannot be downloaded here)."""
    import torch_fidelity.feature_extractor_inceptionv3 as inception_module

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(inception_module, "load_state_dict_from_url", lambda *args, **kwargs: {})
        patch.setattr(inception_module.FeatureExtractorInceptionV3, "load_state_dict", lambda self, state: None)
        torch.manual_seed(0)
        network = inception_module.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    path = tmp_path_factory.mktemp("inception") / "random-inception.pth"
    torch.save(network.state_dict(), path)
    return path


def test_fid_runs_with_a_local_inception_file(real: torch.Tensor, random_inception_weights: Path) -> None:
    spec = resolve_extractor(inception_weights=random_inception_weights)
    result = fid(real[:3], real[3:6], extractor=spec)  # Inception at 299 px is slow on CPU
    assert result.extractor == spec.label and "inception-v3-compat/2048" in result.extractor
    assert result.weights_sha256 == spec.weights_sha256 and result.value >= 0.0
