"""Export for TensorRT: graphs that pass the rules, conversion of asymmetric models, per-channel
ConvTranspose, 4-bit weights as int8 + Clip, fp16 float parts; refusals write nothing."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from gan_brevitas import recipes
from gan_brevitas.errors import ExportError
from gan_brevitas.export.graph import GraphIndex
from gan_brevitas.deploy.parity import parity
from gan_brevitas.export.ort import OrtGenerator
from gan_brevitas.export.rules import check_tensorrt
from gan_brevitas.quant.convert import fold_for_quantization
from tests.export.conftest import quantized


def _zero_points(model: onnx.ModelProto) -> list[np.ndarray]:
    index = GraphIndex.build(model.graph)
    return [
        index.constant(node.input[2])
        for node in model.graph.node
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) > 2 and node.input[2]
    ]


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(4.0 / torch.mean((a - b) ** 2)))


@pytest.fixture(scope="module")
def cyclegan_asym(small_generators):
    model, x = small_generators["cyclegan"]
    return model, x, quantized(model, x, per_channel=True)


def test_asymmetric_model_needs_inputs(cyclegan_asym, tmp_path):
    _, _, qmodel = cyclegan_asym
    with pytest.raises(ExportError, match="asymmetric.*TensorRT does not run.*inputs=.*act_scheme='symmetric'"):
        recipes.export(qmodel, tmp_path / "g.onnx", "tensorrt")
    assert not any(tmp_path.iterdir())


def test_asymmetric_model_is_recalibrated_symmetric(cyclegan_asym, tmp_path):
    model, x, qmodel = cyclegan_asym
    report = recipes.export(qmodel, tmp_path / "g.onnx", "tensorrt", inputs=x, num_samples=8)
    assert any("re-calibrated" in c for c in report.conversions)
    # Per-channel ConvTranspose weights cannot go to TensorRT: rewritten as Conv (axis 0).
    assert any("model.11" in c and "PixelShuffle" in c for c in report.conversions)
    graph = onnx.load(report.path)
    assert check_tensorrt(graph).ok
    assert not [n for n in graph.graph.node if n.op_type == "ConvTranspose"]
    assert all(np.all(zp == 0) and zp.dtype in (np.int8, np.int32) for zp in _zero_points(graph))
    assert report.metadata["act_scheme"] == "symmetric"
    # The quality cost of the conversion, against the float generator, on the same inputs.
    runner = OrtGenerator(report.path)
    with torch.no_grad():
        reference = fold_for_quantization(model)(x)
        asymmetric = qmodel(x)
    symmetric = torch.from_numpy(runner(x))
    psnr_asym, psnr_sym = _psnr(asymmetric, reference), _psnr(symmetric, reference)
    assert psnr_sym > psnr_asym - 6.0, (psnr_asym, psnr_sym)


@pytest.fixture(scope="module")
def sagan_w4_symmetric(small_generators, tmp_path_factory):
    """A symmetric, per-tensor, 4-bit SAGAN and its tensorrt exports, fp32 and fp16 float parts."""
    model, z = small_generators["sagan"]
    qmodel = quantized(model, z, weight_bits=4, act_scheme="symmetric")
    folder = tmp_path_factory.mktemp("trt")
    fp32 = recipes.export(qmodel, folder / "fp32.onnx", "tensorrt")
    fp16 = recipes.export(qmodel, folder / "fp16.onnx", "tensorrt", fp16=True)
    return qmodel, z, fp32, fp16


def test_symmetric_model_exports_unchanged(sagan_w4_symmetric):
    qmodel, z, report, _ = sagan_w4_symmetric
    assert not report.conversions
    graph = onnx.load(report.path)
    assert check_tensorrt(graph).ok
    # Per-tensor ConvTranspose weights are fine for TensorRT: kept as ConvTranspose.
    assert sum(n.op_type == "ConvTranspose" for n in graph.graph.node) == 5
    # Nothing was changed, so ONNX Runtime reproduces the fake-quant model.
    assert parity(qmodel, report.path, z, n=4).within_step


def test_keeping_per_channel_conv_transpose_is_refused(dcgan, tmp_path):
    model, z = dcgan
    qmodel = quantized(model, z, per_channel=True, act_scheme="symmetric")
    with pytest.raises(ExportError, match=r"nothing was written(.|\n)*conv-transpose-axis(.|\n)*/4/weight_quant"):
        recipes.export(qmodel, tmp_path / "g.onnx", "tensorrt", conv_transpose="keep", example_input=z)
    assert not any(tmp_path.iterdir())


def test_4bit_weights_go_as_int8_with_clip(sagan_w4_symmetric, tmp_path):
    qmodel, _, report, _ = sagan_w4_symmetric
    graph = onnx.load(report.path)
    index = GraphIndex.build(graph.graph)
    clips = [n for n in graph.graph.node if n.op_type == "Clip"]
    assert len(clips) == 11  # every weight
    for clip in clips:
        weights = index.constant(clip.input[0])
        assert weights.dtype == np.int8 and weights.min() >= -8 and weights.max() <= 7
        assert (index.constant(clip.input[1]), index.constant(clip.input[2])) == (-8, 7)
    assert check_tensorrt(graph).ok
    with pytest.raises(ExportError, match="TensorRT has no 4-bit convolution"):
        recipes.export(qmodel, tmp_path / "g4.onnx", "tensorrt", int4=True)
    assert not any(tmp_path.iterdir())


def test_fp16_float_parts(sagan_w4_symmetric):
    _, z, fp32, fp16 = sagan_w4_symmetric
    graph = onnx.load(fp16.path)
    onnx.checker.check_model(graph, full_check=True)
    assert check_tensorrt(graph).ok
    index = GraphIndex.build(graph.graph)
    types = {v.name: v.type.tensor_type.elem_type
             for v in onnx.shape_inference.infer_shapes(graph).graph.value_info}
    # The float parts (attention softmax, Tanh) compute in fp16 ...
    for op in ("Softmax", "Tanh"):
        node = next(n for n in graph.graph.node if n.op_type == op)
        assert types[node.output[0]] == onnx.TensorProto.FLOAT16, op
    # ... the int8 parts keep float32 Q/DQ scales, and inputs and outputs stay float32.
    assert all(index.constant(n.input[1]).dtype == np.float32
               for n in graph.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear"))
    assert graph.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert graph.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    a = OrtGenerator(fp32.path, optimize=False)(z[:2])
    b = OrtGenerator(fp16.path, optimize=False)(z[:2])
    assert np.abs(a - b).mean() < 0.01, np.abs(a - b).mean()


def test_fp16_keeps_a_computed_resize_scale_float32(small_generators, tmp_path):
    """StyleGAN's upsampling Resize takes its scales from a Concat in the float part: the Concat
    runs in fp16, the scales reach the Resize as float32 (ONNX allows no other), through a Cast."""
    model, z = small_generators["stylegan"]
    qmodel = quantized(model, z, act_scheme="symmetric")
    fp32 = recipes.export(qmodel, tmp_path / "fp32.onnx", "tensorrt")
    fp16 = recipes.export(qmodel, tmp_path / "fp16.onnx", "tensorrt", fp16=True)
    graph = onnx.load(fp16.path)
    onnx.checker.check_model(graph, full_check=True)
    index = GraphIndex.build(graph.graph)
    resizes = [n for n in graph.graph.node if n.op_type == "Resize" and index.producer.get(n.input[2]) is not None]
    assert resizes and all(index.producer[n.input[2]].op_type == "Cast" for n in resizes)
    a = OrtGenerator(fp32.path, optimize=False)(z[:2])
    b = OrtGenerator(fp16.path, optimize=False)(z[:2])
    # It runs, close to the fp32 float parts: the fp16 AdaIN statistics of a random StyleGAN move
    # outputs by a step or two of its output quantizer (measured: mean 4% of the output's std).
    assert np.abs(a - b).mean() < 0.1 * a.std(), (np.abs(a - b).mean(), a.std())
