"""Properties of the paper's quantizers as Brevitas layers compute them."""

import math

import pytest
import torch
from brevitas.nn import QuantConv2d, QuantConvTranspose2d, QuantLinear
from hypothesis import given, settings, strategies as st
from torch import nn

from gan_brevitas.errors import CalibrationError
from gan_brevitas.quant.config import QuantConfig
from gan_brevitas.quant.convert import quantize_model
from gan_brevitas.quant.quantizers import act_grid, act_quantizer, set_act_range, weight_quantizer


def _layer(cls, config, out_ch=6, in_ch=3):
    args = (in_ch, out_ch, 3) if cls is not QuantLinear else (in_ch * 9, out_ch)
    return cls(*args, weight_quant=weight_quantizer(config), return_quant_tensor=False)


@settings(max_examples=30, deadline=None)
@given(
    bits=st.integers(2, 8),
    per_channel=st.booleans(),
    quantiles=st.sampled_from([(0.0, 1.0), (0.0001, 0.9999), (0.01, 0.99)]),
    cls=st.sampled_from([QuantConv2d, QuantConvTranspose2d, QuantLinear]),
    seed=st.integers(0, 1000),
)
def test_weights_lie_on_the_signed_symmetric_grid(bits, per_channel, quantiles, cls, seed):
    torch.manual_seed(seed)
    config = QuantConfig.paper(weight_bits=bits, per_channel=per_channel, weight_quantiles=quantiles)
    layer = _layer(cls, config)
    with torch.no_grad():
        layer.weight.mul_(torch.rand(()) * 10)
    qw = layer.quant_weight()
    scale, ints = qw.scale.detach(), qw.int().float()
    t_min, t_max = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    assert float(qw.zero_point.detach().abs().max()) == 0.0
    assert ints.min() >= t_min and ints.max() <= t_max
    assert torch.equal(ints, ints.round())
    assert torch.allclose(qw.value, ints * scale, atol=1e-6)
    out_axis = 1 if cls is QuantConvTranspose2d else 0
    if per_channel:
        assert scale.numel() == layer.weight.shape[out_axis]
        assert scale.shape[out_axis] == layer.weight.shape[out_axis]
    else:
        assert scale.numel() == 1
    # Inside the representable range the error is at most half a step.
    w = layer.weight.detach()
    inside = (w >= t_min * scale) & (w <= t_max * scale)
    err = (w - qw.value.detach()).abs()
    assert bool((err[inside] <= (scale / 2 + 1e-6).expand_as(w)[inside]).all())


def test_weight_scale_follows_the_quantiles():
    config = QuantConfig.paper(weight_bits=8, weight_quantiles=(0.0, 1.0))
    layer = _layer(QuantConv2d, config)
    w = layer.weight.detach()
    expected = max(float(w.max()) / 127, -float(w.min()) / 128)
    qw = layer.quant_weight()
    assert float(qw.scale.detach()) == pytest.approx(expected, rel=1e-6)
    # Min-max matching: both extremes are representable (up to rounding).
    assert float((qw.value.detach() - w).abs().max()) <= expected / 2 + 1e-7


@settings(max_examples=40, deadline=None)
@given(
    bits=st.integers(2, 8),
    scheme=st.sampled_from(["asymmetric", "symmetric"]),
    low=st.floats(-50, 5),
    width=st.floats(0.0, 60),
    seed=st.integers(0, 1000),
)
def test_activations_lie_on_their_grid(bits, scheme, low, width, seed):
    config = QuantConfig.paper(act_bits=bits, act_scheme=scheme)
    act = QuantConv2d(2, 2, 1, input_quant=act_quantizer(config), return_quant_tensor=False).input_quant
    set_act_range(act, low, low + width)
    scale, zero_point, bit_width = act_grid(act)
    assert bit_width == bits
    assert math.isfinite(scale) and scale > 0
    if scheme == "asymmetric":
        assert 0 <= zero_point <= 2**bits - 1
        t_min, t_max = -zero_point, 2**bits - 1 - zero_point
    else:
        assert zero_point == 0
        t_min, t_max = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    torch.manual_seed(seed)
    x = (torch.rand(1000) * 1.4 - 0.2) * (width + 1) + low
    q = act(x).detach()
    steps = q / scale
    assert torch.allclose(steps, steps.round(), atol=1e-3)
    assert steps.min() >= t_min - 1e-3 and steps.max() <= t_max + 1e-3
    inside = (x >= t_min * scale) & (x <= t_max * scale)
    assert bool(((x - q).abs()[inside] <= scale / 2 + 1e-5 * max(1.0, abs(low) + width)).all())


def test_constant_tensor_never_gives_zero_or_nan_scale():
    config = QuantConfig.paper()
    layer = _layer(QuantConv2d, config)
    with torch.no_grad():
        layer.weight.zero_()
    qw = layer.quant_weight()
    assert torch.isfinite(qw.scale).all() and (qw.scale > 0).all()
    assert torch.isfinite(qw.value).all()
    act = QuantConv2d(2, 2, 1, input_quant=act_quantizer(config), return_quant_tensor=False).input_quant
    set_act_range(act, 0.0, 0.0)
    scale, _, _ = act_grid(act)
    assert scale > 0 and math.isfinite(scale)
    assert torch.isfinite(act(torch.zeros(4))).all()


def test_non_finite_range_is_a_calibration_error():
    act = QuantConv2d(2, 2, 1, input_quant=act_quantizer(QuantConfig.paper()), return_quant_tensor=False).input_quant
    with pytest.raises(CalibrationError, match="NaN/Inf"):
        set_act_range(act, float("nan"), 1.0)


def test_per_channel_gives_one_scale_per_output_channel_in_converted_model():
    model = nn.Sequential(nn.Conv2d(3, 5, 3), nn.ReLU(), nn.ConvTranspose2d(5, 7, 4, 2, 1), nn.Linear(4, 9))
    qmodel = quantize_model(model, QuantConfig.paper(per_channel=True))
    assert qmodel[0].quant_weight().scale.numel() == 5
    assert qmodel[2].quant_weight().scale.numel() == 7
    assert qmodel[3].quant_weight().scale.numel() == 9
