"""Export for ONNX Runtime: a valid QCDQ file whose int8 run matches the fake-quant model, with
every quantized convolution fused into an int8 kernel; sizes; INT4; bad inputs write nothing."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import onnx
import pytest
import torch

from gan_brevitas import QuantConfig, recipes
from gan_brevitas.errors import ExportError, OutputPathError
from gan_brevitas.deploy.parity import parity
from gan_brevitas.export.ort import OrtGenerator, int8_kernel_report
from gan_brevitas.quant.convert import quantize_model
from tests.export.conftest import SMALL, quantized
from tests.helpers import ENGINE_WEIGHT_BITS, dcgan_generator


@pytest.mark.parametrize("name", sorted(SMALL))
def test_round_trip_matches_fake_quant(exported, name):
    qmodel, x, report = exported[name]
    result = parity(qmodel, report.path, x, n=8)
    # Within one output step on average; differences come from exact .5 ties (Brevitas rounds
    # x/s + zp, ONNX rounds x/s then adds zp) and from int32 requantization in the fused kernels.
    assert result.within_step, result.format()
    assert result.max_abs <= 8 * result.output_step, result.format()


@pytest.mark.parametrize("name", sorted(SMALL))
def test_every_quantized_conv_runs_as_int8_kernel(exported, name):
    _, _, report = exported[name]
    kernels = int8_kernel_report(report.path)
    assert kernels.all_int8, kernels.format()
    assert not kernels.float_fallback
    assert kernels.optimized_ops.get("ConvTranspose", 0) == 0  # rewritten as Conv + DepthToSpace
    assert kernels.optimized_ops.get("QLinearConv", 0) >= 1


@pytest.mark.parametrize("name", sorted(SMALL))
def test_file_is_clean_and_carries_metadata(exported, name):
    qmodel, _, report = exported[name]
    model = onnx.load(report.path)
    onnx.checker.check_model(model, full_check=True)
    initializers = {i.name for i in model.graph.initializer}
    assert not [i.name for i in model.graph.input if i.name in initializers]
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["gan_brevitas.target"] == "onnxruntime"
    assert meta["gan_brevitas.method"] == "vanilla-ptq"
    assert QuantConfig.from_json(meta["gan_brevitas.config"]) == qmodel.gan_brevitas.config
    assert meta["gan_brevitas.weight_bits"] == str(ENGINE_WEIGHT_BITS) and meta["gan_brevitas.act_scheme"] == "asymmetric"
    assert json.loads(meta["gan_brevitas.generator"])["name"] == name
    assert report.metadata["target"] == "onnxruntime"


def test_dynamic_batch(exported):
    qmodel, x, report = exported["cyclegan"]
    runner = OrtGenerator(report.path)
    images = runner.generate(x, n=5, batch_size=5)
    assert images.shape == (5, 3, 16, 16)
    assert runner.input_name == "input_image" and runner.output_names == ["image"]


def test_keeping_conv_transpose_leaves_it_float(dcgan, tmp_path):
    model, z = dcgan
    qmodel = quantized(model, z)
    report = recipes.export(qmodel, tmp_path / "keep.onnx", conv_transpose="keep", example_input=z)
    kernels = int8_kernel_report(report.path)
    # ONNX Runtime does not fuse ConvTranspose: why the sub-pixel rewrite exists. (The first
    # one, over the 1x1 latent, was quantized as the Linear layer it is: an int8 QGemm.)
    assert kernels.float_fallback == ("/4/ConvTranspose", "/7/ConvTranspose") and not kernels.all_int8
    assert kernels.int8 == ("/1/Gemm",)
    rewritten = recipes.export(qmodel, tmp_path / "subpixel.onnx", example_input=z)
    assert int8_kernel_report(rewritten.path).all_int8
    assert parity(qmodel, rewritten.path, z, n=8).within_step


@pytest.fixture(scope="module")
def sized(tmp_path_factory):
    """fp32, int8 and int4 exports of one 4-bit DCGAN-style generator wide enough (0.7 M
    weights) that the weights, not the node names, dominate the files. ConvTranspose kept, so
    all three hold the same weights (the sub-pixel rewrite adds zero taps to k3 s2 kernels).
    The quantized latent projection is a Linear with a scale and a bias per output row (2048
    rows): a 256-d latent keeps them small beside its weights."""
    folder = tmp_path_factory.mktemp("sizes")
    model = dcgan_generator(z_dim=256, width=64)
    z = torch.randn(4, 256, generator=torch.Generator().manual_seed(0))
    qmodel = quantized(model, z, weight_bits=4, per_channel=True)
    return z, {
        "fp32": recipes.export(model, folder / "fp32.onnx", "float", example_input=z),
        "int8": recipes.export(qmodel, folder / "int8.onnx", conv_transpose="keep", example_input=z),
        "int4": recipes.export(qmodel, folder / "int4.onnx", conv_transpose="keep", int4=True, example_input=z),
    }


def test_int8_file_is_about_4x_smaller_than_fp32(sized):
    _, files = sized
    ratio = files["fp32"].file_bytes / files["int8"].file_bytes
    assert 3.6 < ratio <= 4.05, ratio


def test_int4_packing(sized):
    x, files = sized
    assert files["int4"].opset == 21
    packed = onnx.load(files["int4"].path)
    assert any(i.data_type == onnx.TensorProto.INT4 for i in packed.graph.initializer)
    assert not [n for n in packed.graph.node if n.op_type == "Clip"]
    ratio = files["fp32"].file_bytes / files["int4"].file_bytes
    assert 6.5 < ratio <= 8.1, ratio
    # The packed graph means exactly what the int8 + Clip graph means (ONNX semantics, op by op).
    reference = OrtGenerator(files["int8"].path, optimize=False)(x)
    np.testing.assert_array_equal(OrtGenerator(files["int4"].path, optimize=False)(x), reference)
    # ONNX Runtime runs it optimized too, but has no int4 convolution on the CPU: the convs fall
    # back to float (DequantizeLinear every call), so int4 is a storage format here, not a speed-up.
    np.testing.assert_array_equal(OrtGenerator(files["int4"].path)(x), reference)
    assert not int8_kernel_report(files["int4"].path).int8


# ----------------------------------------------------------------------------------------------
# Bad inputs: clear errors, and no file (not even a partial one) left behind.
# ----------------------------------------------------------------------------------------------


def _no_files(folder):
    return not any(folder.iterdir())


def test_never_calibrated_model(dcgan, tmp_path):
    model, z = dcgan
    raw = quantize_model(model, QuantConfig.paper())
    with pytest.raises(ExportError, match="never calibrated.*recipes.quantize"):
        recipes.export(raw, tmp_path / "g.onnx", example_input=z)
    assert _no_files(tmp_path)


def test_float_model_to_int8_target(dcgan, tmp_path):
    model, z = dcgan
    with pytest.raises(ExportError, match="not quantized.*recipes.quantize"):
        recipes.export(model, tmp_path / "g.onnx", example_input=z)
    assert _no_files(tmp_path)


def test_unknown_target_and_options(exported, tmp_path):
    qmodel, _, _ = exported["cyclegan"]
    with pytest.raises(ExportError, match="unknown export target 'tensorflow'.*onnxruntime, tensorrt, openvino, float"):
        recipes.export(qmodel, tmp_path / "g.onnx", "tensorflow")
    with pytest.raises(ExportError, match="int4=True needs.*no weight has <= 4 bits|no weight has <= 4 bits"):
        recipes.export(qmodel, tmp_path / "g.onnx", int4=True)
    with pytest.raises(ExportError, match="fp16=True is for target='tensorrt'"):
        recipes.export(qmodel, tmp_path / "g.onnx", fp16=True)
    with pytest.raises(ExportError, match="opset 11 is too old"):
        recipes.export(qmodel, tmp_path / "g.onnx", opset=11)
    assert _no_files(tmp_path)
    with pytest.raises(OutputPathError, match="directory .* does not exist"):
        recipes.export(qmodel, tmp_path / "missing" / "g.onnx")


def test_unknown_input_shape_and_random_noise(dcgan, exported, tmp_path):
    model, z = dcgan
    qmodel = quantized(model, z)
    recipes.export(qmodel, tmp_path / "remembered.onnx")  # the calibration shape is recorded
    assert onnx.load(tmp_path / "remembered.onnx").graph.input[0].type.tensor_type.shape.dim[1].dim_value == z.shape[1]
    (tmp_path / "remembered.onnx").unlink()
    qmodel.gan_brevitas = dataclasses.replace(qmodel.gan_brevitas, input_shape=None)  # e.g. an old file
    with pytest.raises(ExportError, match="cannot tell this generator's input shape.*example_input"):
        recipes.export(qmodel, tmp_path / "g.onnx")
    qstyle = exported["stylegan"][0]
    qstyle.noise_mode = "random"
    try:
        with pytest.raises(ExportError, match="noise_mode = 'const'"):
            recipes.export(qstyle, tmp_path / "s.onnx")
    finally:
        qstyle.noise_mode = "const"
    assert _no_files(tmp_path)
