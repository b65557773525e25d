import subprocess
import sys

import pytest
import torch

from gan_brevitas import QuantConfig, recipes
from gan_brevitas.errors import CheckpointError, OutputPathError
from tests.helpers import dcgan_generator

SAGAN = dict(image_size=32, z_dim=32, conv_dim=8)


def _quantized_sagan():
    model = recipes.build_generator("sagan", **SAGAN)
    z = torch.randn(16, 32, generator=torch.Generator().manual_seed(0))
    config = QuantConfig.paper(weight_bits=4, per_channel=True, act_quantiles=(0.01, 0.99))
    return recipes.quantize(model, "vanilla-ptq", config=config, inputs=z, num_samples=8, progress=False), z


def test_save_then_load_in_a_new_process_gives_identical_outputs(tmp_path):
    qmodel, z = _quantized_sagan()
    path = tmp_path / "q.safetensors"
    recipes.save(qmodel, path)
    torch.save(z, tmp_path / "z.pt")
    with torch.no_grad():
        torch.save(qmodel(z)[0], tmp_path / "expected.pt")
    script = (
        "import torch\n"
        "from gan_brevitas import recipes\n"
        f"q = recipes.load({str(path)!r})\n"
        f"z = torch.load({str(tmp_path / 'z.pt')!r}, weights_only=True)\n"
        f"expected = torch.load({str(tmp_path / 'expected.pt')!r}, weights_only=True)\n"
        "with torch.no_grad():\n"
        "    out = q(z)[0]\n"
        "assert torch.equal(out, expected), (out - expected).abs().max()\n"
        "assert q.gan_brevitas.config.weight_bits == 4 and q.gan_brevitas.method == 'vanilla-ptq'\n"
        "print('IDENTICAL')\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "IDENTICAL" in result.stdout


def test_user_generator_round_trip_needs_its_architecture(tmp_path):
    model = dcgan_generator()
    z = torch.randn(8, 16)
    qmodel = recipes.quantize(model, "vanilla-ptq", inputs=z, num_samples=8, progress=False)
    path = tmp_path / "user.safetensors"
    recipes.save(qmodel, path)
    with pytest.raises(CheckpointError, match="model=MyGenerator"):
        recipes.load(path)
    loaded = recipes.load(path, model=dcgan_generator(seed=123))
    with torch.no_grad():
        assert torch.equal(loaded(z), qmodel(z))


def test_bad_files_and_paths(tmp_path):
    qmodel, _ = _quantized_sagan()
    with pytest.raises(OutputPathError, match="does not exist"):
        recipes.save(qmodel, tmp_path / "missing_dir" / "q.safetensors")
    assert not (tmp_path / "missing_dir").exists()
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        recipes.load(junk)
    with pytest.raises(CheckpointError, match="quantization record"):
        recipes.save(dcgan_generator(), tmp_path / "float.safetensors")


def test_loading_into_the_wrong_architecture_lists_keys(tmp_path):
    qmodel = recipes.quantize(dcgan_generator(), "vanilla-ptq", inputs=torch.randn(4, 16), num_samples=4, progress=False)
    path = tmp_path / "user.safetensors"
    recipes.save(qmodel, path)
    with pytest.raises(CheckpointError, match=r"wrong shapes \['1.bias"):
        recipes.load(path, model=dcgan_generator(width=8))
