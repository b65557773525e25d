"""The sub-pixel rewrite of ConvTranspose2d (Conv + PixelShuffle + crop) is exact."""

import copy

import pytest
import torch
from brevitas.nn import QuantConv2d
from torch import nn

from gan_brevitas.errors import ExportError
from gan_brevitas.export.subpixel import SubPixelConvTranspose2d, plan_axis, rewrite_conv_transpose
from gan_brevitas.quant.config import QuantConfig
from gan_brevitas.quant.convert import quant_layers, quantize_model
from gan_brevitas.quant.quantizers import set_act_range
from tests.export.conftest import quantized

# (kernel, stride, padding, output_padding): SAGAN's first layer (stride 1 on a 1x1 input),
# CycleGAN (k3 s2 p1 op1), DCGAN/SAGAN/StyleGAN (k4 s2 p1), a case needing extra padding
# (k4 s2 p0 op1), stride 3, a kernel smaller than the stride, a non-square kernel.
CASES = [
    (4, 1, 0, 0),
    (3, 2, 1, 1),
    (4, 2, 1, 0),
    (4, 2, 0, 1),
    (5, 3, 2, 0),
    (5, 3, 1, 2),
    (1, 2, 0, 1),
    ((3, 5), 2, (1, 2), 1),
]


def _layer(kernel, stride, padding, output_padding, bias=True):
    torch.manual_seed(0)
    return nn.ConvTranspose2d(5, 4, kernel, stride, padding, output_padding, bias=bias)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_float_rewrite_is_exact(case):
    layer = _layer(*case).double()
    x = torch.randn(2, 5, 3, 4, dtype=torch.float64)
    rewritten = nn.Sequential(copy.deepcopy(layer))
    assert rewrite_conv_transpose(rewritten) == ["0"]
    assert isinstance(rewritten[0], SubPixelConvTranspose2d)
    expected, got = layer(x), rewritten(x)
    assert got.shape == expected.shape
    # float64: only the order of additions differs.
    assert (got - expected).abs().max() < 1e-12
    # float32 as exported: the same up to rounding.
    torch.testing.assert_close(rewritten.float()(x.float()), layer.float()(x.float()), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("case", CASES[:4], ids=str)
def test_quantized_rewrite_is_bit_exact(case, bits, per_channel):
    model = nn.Sequential(_layer(*case))
    qmodel = quantize_model(model, QuantConfig.paper(weight_bits=bits, per_channel=per_channel))
    for _, layer in quant_layers(qmodel):
        set_act_range(layer.input_quant, -2.5, 3.0)
        set_act_range(layer.output_quant, -1.5, 2.0)
    qmodel = qmodel.double().eval()
    rewritten = copy.deepcopy(qmodel)
    rewrite_conv_transpose(rewritten)
    conv = rewritten[0].conv
    assert isinstance(conv, QuantConv2d)
    x = torch.randn(3, 5, 4, 4, dtype=torch.float64) * 2
    with torch.no_grad():
        expected, got = qmodel(x), rewritten(x)
        # The same integer weights, and per-channel scales now on the conv's axis 0 (one per
        # output channel and phase), as TensorRT requires.
        stride = case[1]
        original = qmodel[0].quant_weight()
        new = conv.quant_weight()
        assert torch.equal(new.int().unique(), torch.cat([original.int().unique(), torch.zeros(1)]).unique())
        expected_scales = 4 * stride * stride if per_channel else 1
        assert new.scale.numel() == expected_scales
        if per_channel:
            assert new.scale.shape[0] == expected_scales
    assert torch.equal(got, expected)


def test_plan_crop_bounds_are_constant():
    # The trim at the end does not depend on the input length: a static Slice.
    plan = plan_axis(4, 2, 0, 1)
    assert plan.pad == plan.taps  # one extra row of padding (output_padding reaches past the last phase)
    for length in (1, 3, 8):
        shuffled = plan.stride * (length + 2 * plan.pad - plan.taps + 1)
        assert shuffled - plan.crop_start - plan.crop_end_trim == plan.output_length(length)


def test_whole_quantized_generator_rewrite(dcgan):
    model, z = dcgan
    # float64 before the rewrite: weight scales are statistics, recomputed in the new dtype.
    qmodel = quantized(model, z, per_channel=True).double()
    rewritten = copy.deepcopy(qmodel)
    names = rewrite_conv_transpose(rewritten)
    assert names == ["4", "7"]  # "1", over the 1x1 latent, was quantized as a Linear
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in rewritten.modules())
    with torch.no_grad():
        expected, got = qmodel(z.double()), rewritten(z.double())
    assert torch.equal(got, expected)


def test_unsupported_layer_is_named():
    model = nn.Sequential(nn.ConvTranspose2d(4, 4, 3, 2, groups=2))
    with pytest.raises(ExportError, match=r"'0' cannot be rewritten.*groups=2.*conv_transpose='keep'"):
        rewrite_conv_transpose(model)


@pytest.mark.parametrize("per_channel", [False, True])
def test_narrow_conv_padding_is_bit_exact(per_channel):
    from gan_brevitas.export.narrow import ChannelPaddedConv2d, pad_narrow_convs

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(8, 3, 3, padding=1), nn.Tanh())
    qmodel = quantize_model(model, QuantConfig.paper(per_channel=per_channel))
    for _, layer in quant_layers(qmodel):
        set_act_range(layer.input_quant, -2.5, 3.0)
        set_act_range(layer.output_quant, -1.5, 2.0)
    qmodel = qmodel.double().eval()
    padded = copy.deepcopy(qmodel)
    assert pad_narrow_convs(padded) == ["0"]
    assert isinstance(padded[0], ChannelPaddedConv2d) and padded[0].conv.out_channels == 16
    x = torch.randn(2, 8, 6, 6, dtype=torch.float64)
    with torch.no_grad():
        assert torch.equal(padded(x), qmodel(x))
        assert torch.equal(padded[0].conv.quant_weight().int()[3:], torch.zeros(13, 8, 3, 3))
