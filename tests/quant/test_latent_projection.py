"""A ConvTranspose2d over a 1x1 latent is quantized as the Linear layer it is."""

import copy

import pytest
import torch
from torch import nn

from gan_brevitas import QuantConfig, recipes
from gan_brevitas.quant.convert import QuantLatentProjection, fold_batch_norms, fold_for_quantization
from gan_brevitas.quant.latent_projection import LatentProjection, latent_projections_as_linear
from tests.helpers import dcgan_generator

Z = torch.randn(8, 16, generator=torch.Generator().manual_seed(0))


def test_rewrite_is_exact_with_bias_and_batch_norm_folded():
    model = dcgan_generator().double().eval()
    model[1].bias = nn.Parameter(torch.randn(32, dtype=torch.float64))
    rewritten = fold_batch_norms(copy.deepcopy(model))
    assert latent_projections_as_linear(rewritten) == ["1"]
    assert isinstance(rewritten[1], LatentProjection)  # same name: a user's skip / per-layer bits still apply
    assert rewritten[1].weight.shape == (32 * 4 * 4, 16)
    with torch.no_grad():
        torch.testing.assert_close(rewritten(Z.double()), model(Z.double()), rtol=0, atol=1e-12)


def test_the_quantized_model_holds_the_linear_and_the_float_reference_the_conv_transpose():
    qmodel = recipes.quantize(dcgan_generator(), "vanilla-ptq", inputs=Z, num_samples=8, progress=False)
    assert isinstance(qmodel[1], QuantLatentProjection) and isinstance(qmodel[0], nn.Identity)
    assert isinstance(fold_for_quantization(dcgan_generator())[1], nn.ConvTranspose2d)


@pytest.mark.parametrize("conv", [
    nn.ConvTranspose2d(16, 8, 4, 1, 1),  # padding: the output is not the kernel
    nn.ConvTranspose2d(16, 8, 4, 2, 0, output_padding=1),
    nn.ConvTranspose2d(16, 8, 4, 1, 0, groups=2),
])
def test_only_a_plain_projection_of_a_1x1_latent_is_rewritten(conv):
    model = nn.Sequential(nn.Unflatten(1, (16, 1, 1)), conv)
    assert latent_projections_as_linear(model) == [] and model[1] is conv


def test_without_the_unflatten_the_input_size_is_unknown_and_nothing_changes():
    conv = nn.ConvTranspose2d(16, 8, 4, 1, 0)
    model = nn.Sequential(conv, nn.ReLU())  # fed (N, 16, H, W): H, W need not be 1
    assert latent_projections_as_linear(model) == [] and model[0] is conv


def test_bias_correction_compares_each_output_row(tmp_path):
    config = QuantConfig(per_channel=True, weight_bits=4, bias_correction=True)
    model = dcgan_generator().eval()
    qmodel = recipes.quantize(model, "vanilla-ptq", config=config, inputs=Z, num_samples=8, progress=False)
    plain = recipes.quantize(model, "vanilla-ptq", config=config.replace(bias_correction=False), inputs=Z,
                             num_samples=8, progress=False)
    assert qmodel[1].bias.shape == (32 * 4 * 4,)
    with torch.no_grad():
        reference = model[:3](Z).flatten(1)  # the ConvTranspose and its BatchNorm
        shift = [(q[1](Z).flatten(1) - reference).mean(0).abs().mean() for q in (qmodel, plain)]
    assert shift[0] < shift[1]  # the mean error per row shrinks


def test_nested_sequentials_are_found_by_name():
    model = nn.Sequential(nn.Sequential(nn.Unflatten(1, (16, 1, 1)), nn.ConvTranspose2d(16, 8, 4, 1, 0)))
    assert latent_projections_as_linear(model) == ["0.1"]


def test_weight_scales_are_per_output_row():
    config = QuantConfig(per_channel=True, weight_bits=4, act_range="minmax", weight_range="minmax")
    qmodel = recipes.quantize(dcgan_generator(), "vanilla-ptq", config=config, inputs=Z, num_samples=8,
                              progress=False)
    scale = qmodel[1].quant_weight().scale
    assert scale.numel() == 32 * 4 * 4  # one per (channel, y, x), not one per channel
    # Each row's scale follows its own range (min-max, 4 bits: max |w| over 7 or 8 levels).
    row_max = qmodel[1].weight.detach().abs().amax(1)
    assert torch.all(scale.flatten() >= row_max / 8 - 1e-7) and torch.all(scale.flatten() <= row_max / 7 + 1e-7)
    assert row_max.view(32, 16).std(1).min() > 0  # rows of one channel differ, and so do their scales


def test_symmetric_re_export_knows_the_latent_projection(tmp_path):
    from gan_brevitas.export.rules import check_tensorrt
    from gan_brevitas.export.symmetric import float_twin

    config = QuantConfig(bias_correction=False)  # the twin holds the float weights and biases as they are
    qmodel = recipes.quantize(dcgan_generator(), "vanilla-ptq", config=config, inputs=Z, num_samples=8, progress=False)
    twin = float_twin(qmodel)
    assert type(twin[1]) is LatentProjection
    with torch.no_grad():
        torch.testing.assert_close(twin(Z), fold_for_quantization(dcgan_generator())(Z), rtol=0, atol=1e-5)
    # asymmetric activations -> re-calibrated symmetric ones, through that float twin
    report = recipes.export(qmodel, tmp_path / "g.onnx", "tensorrt", example_input=Z[:1], inputs=Z)
    assert check_tensorrt(report.path).ok


def test_the_onnx_runtime_export_reshapes_the_projection_to_a_constant_shape(tmp_path):
    import numpy as np
    import onnx
    ort = pytest.importorskip("onnxruntime")

    qmodel = recipes.quantize(dcgan_generator(), "vanilla-ptq", inputs=Z, num_samples=8, progress=False)
    report = recipes.export(qmodel, tmp_path / "g.onnx", "onnxruntime", example_input=Z[:1])
    ops = [node.op_type for node in onnx.load(str(report.path)).graph.node]
    assert "Shape" not in ops and "Concat" not in ops and ops.count("Reshape") == 1  # one static Reshape
    session = ort.InferenceSession(str(report.path), providers=["CPUExecutionProvider"])
    got = np.concatenate([session.run(None, {report.input_name: Z[i : i + 1].numpy()})[0] for i in range(4)])
    with torch.no_grad():
        expected = qmodel(Z[:4]).numpy()
    np.testing.assert_allclose(got, expected, atol=0.05)
