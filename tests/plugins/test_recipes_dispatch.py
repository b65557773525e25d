"""recipes.save / recipes.export / the CLI on ModelOpt-quantized models."""

import pytest
import torch

pytest.importorskip("modelopt.torch.quantization", reason="nvidia-modelopt is not installed")

from gan_brevitas import cli, recipes  # noqa: E402
from gan_brevitas.errors import CheckpointError  # noqa: E402
from gan_brevitas.export.rules import check_tensorrt  # noqa: E402
from tests.helpers import dcgan_generator  # noqa: E402


def test_modelopt_model_exports_through_recipes_and_refuses_safetensors(tmp_path):
    torch.set_num_threads(1)
    z = torch.randn(16, 16)
    qmodel = recipes.quantize(dcgan_generator(), "modelopt-int8", inputs=z, num_samples=8)
    path = tmp_path / "g_mo.onnx"
    recipes.export(qmodel, path, target="tensorrt", inputs=z)
    assert path.exists()
    assert not check_tensorrt(str(path)).errors
    with pytest.raises(CheckpointError, match="modelopt.torch.opt.save"):
        recipes.save(qmodel, tmp_path / "q.safetensors")


def test_cli_refuses_modelopt_quantize(tmp_path, capsys):
    code = cli.main(["quantize", "--model", "sagan", "--checkpoint", "x.pth", "--method", "modelopt-int8",
                     "--out", str(tmp_path / "q.safetensors")])
    assert code == 2
    assert "Python API" in capsys.readouterr().err
