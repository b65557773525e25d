"""recipes.save / recipes.load / recipes.export / describe on ModelOpt-quantized models go
through the ModelOpt backend: a saved file loads back to the same outputs, export options
reach it."""

import pytest
import torch

pytest.importorskip("modelopt.torch.quantization", reason="nvidia-modelopt is not installed")

from gan_brevitas import recipes  # noqa: E402
from gan_brevitas.backends import backend_for, backend_for_file  # noqa: E402
from gan_brevitas.errors import CheckpointError, ExportError  # noqa: E402
from gan_brevitas.export.rules import check_tensorrt  # noqa: E402
from tests.helpers import dcgan_generator  # noqa: E402


def test_modelopt_model_saves_loads_and_exports_through_recipes(tmp_path):
    torch.set_num_threads(1)
    z = torch.randn(16, 16)
    qmodel = recipes.quantize(dcgan_generator(), "modelopt-w4a8", inputs=z, num_samples=8, progress=False)
    assert backend_for(qmodel).name == "modelopt"
    path = tmp_path / "q.safetensors"
    recipes.save(qmodel, path)
    assert backend_for_file(path).name == "modelopt"
    with pytest.raises(CheckpointError, match="user generator"):
        recipes.load(path)
    loaded = recipes.load(path, model=dcgan_generator(seed=5))  # other weights: replaced by the file's
    with torch.no_grad():
        assert torch.equal(loaded(z), qmodel(z))
    assert loaded.gan_brevitas == qmodel.gan_brevitas
    assert recipes.describe(loaded) == recipes.describe(qmodel)

    onnx_path = tmp_path / "g_mo.onnx"
    report = recipes.export(loaded, onnx_path, target="tensorrt", inputs=z, fp16=True)
    assert not check_tensorrt(str(onnx_path)).errors
    assert any("fp16" in note for note in report.conversions)
    with pytest.raises(ExportError, match="int4"):
        recipes.export(loaded, tmp_path / "g4.onnx", target="onnxruntime", int4=True)
    assert not (tmp_path / "g4.onnx").exists()


def _first(output):
    return output[0] if isinstance(output, (tuple, list)) else output


@pytest.mark.parametrize("name", ["stylegan", "sagan"])
def test_saved_reference_generator_loads_without_its_architecture(tmp_path, float_generators, name):
    # StyleGAN: unused resolution blocks disabled, Blur kept float; SAGAN: attention quantizers.
    model, x = float_generators[name]
    qmodel = recipes.quantize(model, "modelopt-int8-percentile", inputs=x, num_samples=len(x), progress=False)
    recipes.save(qmodel, tmp_path / "q.safetensors")
    loaded = recipes.load(tmp_path / "q.safetensors")
    with torch.no_grad():
        assert torch.equal(_first(loaded(x)), _first(qmodel(x)))
    assert recipes.describe(loaded) == recipes.describe(qmodel)
