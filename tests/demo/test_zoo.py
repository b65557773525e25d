"""The committed demo checkpoints: they load strictly, generate, score, stay small, and are trained."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from gan_brevitas.demo.zoo import (
    DEMO_MODELS,
    checkpoint_paths,
    demo_info,
    demo_inputs,
    demo_sampler,
    load_demo_discriminator,
    load_demo_generator,
    real_images,
)
from gan_brevitas.errors import CheckpointError, ConfigError
from gan_brevitas.metrics.extractors import demo_cnn_spec
from gan_brevitas.metrics.fid import fid, generate
from gan_brevitas.models import build_generator, load_generator

MAX_FILE_BYTES = 5 * 1024 * 1024
FID_SAMPLES = 200
# StyleGAN has no output Tanh: trained outputs overshoot [-1, 1] a little (display clamps them).
# StyleGAN has no output Tanh: the trained demo's black background sits below -1 (clipped when
# shown or measured); its outputs stay within a few units.
OVERSHOOT = {"stylegan": 5.0, "sagan": 0.0, "cyclegan": 0.0}


def _image(output: torch.Tensor | tuple[torch.Tensor, ...]) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output


@pytest.mark.parametrize("name", DEMO_MODELS)
def test_files_exist_and_are_small(name: str) -> None:
    for path in checkpoint_paths(name).values():
        assert path.is_file(), path
        assert path.stat().st_size <= MAX_FILE_BYTES, (path, path.stat().st_size)


@pytest.mark.parametrize("name", DEMO_MODELS)
def test_info_records_how_it_was_made(name: str) -> None:
    info = demo_info(name)
    assert info["model"] == name and info["generator"]["name"] == name
    # The packaged files were trained before the trainer moved out of the package to tools/.
    trainers = ("python -m tools.train_demo", "python -m gan_brevitas.demo.train")
    assert info["command"].startswith(trainers) and f"--model {name}" in info["command"]
    assert info["steps"] > 0 and info["wall_time_s"] > 0 and info["final_losses"]
    assert "demo-cnn" in info["fid"]["extractor"] and info["fid"]["n"] == 1000
    assert info["fid"]["value"] < info["fid_untrained"]["value"]
    if name == "stylegan":
        assert info["generator"]["kwargs"]["noise_mode"] == "const"


@pytest.mark.parametrize("name", DEMO_MODELS)
def test_generator_loads_strictly_and_generates(name: str) -> None:
    model = load_demo_generator(name)
    assert not model.training
    inputs = demo_inputs(name, 4)
    with torch.no_grad():
        images = _image(model(inputs))
        again = _image(model(inputs))
    assert images.shape == (4, 3, 32, 32)
    assert torch.isfinite(images).all()
    assert float(images.abs().max()) <= 1.0 + OVERSHOOT[name]
    # Deterministic (StyleGAN: constant noise). SAGAN's spectral norm runs one power iteration
    # per call, as in the reference, so its second call moves by ~1e-5.
    torch.testing.assert_close(images, again, atol=1e-4, rtol=1e-4)
    # The package's strict loader reads the same file (reference layout keys).
    kwargs = demo_info(name)["generator"]["kwargs"]
    loaded = load_generator(name, checkpoint_paths(name)["generator"], **kwargs)
    with torch.no_grad():
        torch.testing.assert_close(_image(loaded(inputs)), images)


@pytest.mark.parametrize("name", DEMO_MODELS)
def test_generator_file_has_exactly_the_model_keys(name: str) -> None:
    state = load_file(str(checkpoint_paths(name)["generator"]))
    spec = demo_info(name)["generator"]
    assert set(state) == set(build_generator(spec["name"], **spec["kwargs"]).state_dict())


@pytest.mark.parametrize("name", DEMO_MODELS)
def test_discriminator_loads_and_scores(name: str) -> None:
    discriminator = load_demo_discriminator(name)
    assert not discriminator.training
    with torch.no_grad():
        scores = discriminator(real_images(name, 4))
    assert len(scores) == 4 and torch.isfinite(scores).all()


@pytest.mark.parametrize("name", DEMO_MODELS)
def test_inputs_and_real_images(name: str) -> None:
    inputs = demo_inputs(name, 3, seed=1)
    torch.testing.assert_close(inputs, demo_inputs(name, 3, seed=1))
    assert not torch.equal(inputs, demo_inputs(name, 3, seed=2))
    sampler = demo_sampler(name, seed=0)
    first, second = sampler(2), sampler(2)
    assert first.shape[0] == 2 and not torch.equal(first, second)
    real = real_images(name, 5)
    assert real.shape == (5, 3, 32, 32) and float(real.min()) >= -1 and float(real.max()) <= 1


def test_cyclegan_inputs_are_held_out_gravel() -> None:
    from gan_brevitas.demo.data import translation_domains

    gravel, _ = translation_domains(32, 8, seed=0)
    assert not torch.equal(demo_inputs("cyclegan", 8), gravel)


@pytest.mark.parametrize("name", DEMO_MODELS)
def test_trained_generator_beats_a_fresh_one(name: str) -> None:
    """FID vs real data (demo CNN, n=200) of the demo generator is far below an untrained one's."""
    spec = demo_cnn_spec()
    inputs, real = demo_inputs(name, FID_SAMPLES), real_images(name, FID_SAMPLES)
    kwargs = demo_info(name)["generator"]["kwargs"]
    torch.manual_seed(0)
    fresh = build_generator(name, **kwargs)
    trained_fid = fid(generate(load_demo_generator(name), inputs, FID_SAMPLES, progress=False).clamp(-1, 1), real, spec)
    fresh_fid = fid(generate(fresh, inputs, FID_SAMPLES, progress=False).clamp(-1, 1), real, spec)
    assert trained_fid.value < 0.5 * fresh_fid.value, (trained_fid, fresh_fid)


def test_unknown_name_is_a_config_error() -> None:
    for function in (load_demo_generator, load_demo_discriminator, demo_info):
        with pytest.raises(ConfigError, match="stylegan"):
            function("biggan")
    with pytest.raises(ConfigError, match="choose one of"):
        demo_inputs("biggan", 2)


def test_missing_files_are_a_checkpoint_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="tools.train_demo --model sagan"):
        load_demo_generator("sagan", checkpoint_dir=tmp_path)
    source = checkpoint_paths("sagan")
    (tmp_path / source["info"].name).write_bytes(source["info"].read_bytes())
    with pytest.raises(CheckpointError, match="sagan_D.safetensors is missing"):
        load_demo_discriminator("sagan", checkpoint_dir=tmp_path)


def test_mismatched_json_is_a_checkpoint_error(tmp_path: Path) -> None:
    source = checkpoint_paths("sagan")
    for path in source.values():
        (tmp_path / path.name).write_bytes(path.read_bytes())
    info = json.loads(source["info"].read_text())
    info["generator"]["kwargs"]["conv_dim"] = 16
    (tmp_path / source["info"].name).write_text(json.dumps(info))
    with pytest.raises(CheckpointError, match="does not match"):
        load_demo_generator("sagan", checkpoint_dir=tmp_path)
