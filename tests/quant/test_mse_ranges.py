"""MSE range search: weights (the Brevitas stats op) and activations (the histogram search),
on tensors whose optimum is known or brute-forced, and never worse than min-max."""

import pytest
import torch
from torch import nn

from gan_brevitas.errors import ConfigError
from gan_brevitas.ptq.calibrate import calibrate_activations
from gan_brevitas.quant.config import QuantConfig
from gan_brevitas.quant.convert import quantize_model
from gan_brevitas.quant.histogram import ActHistogram, mse_range
from gan_brevitas.quant.quantizers import act_grid
from gan_brevitas.quant.stats import MSEClipAbsMax, QuantilePairAbsMax


def _grid_error(w: torch.Tensor, step: torch.Tensor, bits: int) -> torch.Tensor:
    """Per-row squared error of w on the signed grid step * [-2^(n-1), 2^(n-1)-1]."""
    q = torch.clamp(torch.round(w / step[:, None]), -(2 ** (bits - 1)), 2 ** (bits - 1) - 1) * step[:, None]
    return (w - q).square().sum(1)


@pytest.mark.parametrize("bits", [4, 8])
def test_weight_mse_matches_brute_force_per_channel(bits):
    torch.manual_seed(0)
    w = torch.distributions.Laplace(0.0, 1.0).sample((6, 2000)) * torch.linspace(0.5, 3, 6)[:, None]
    op = MSEClipAbsMax(bit_width=bits, stats_reduce_dim=1)
    step = op(w) / 2 ** (bits - 1)
    minmax_step = QuantilePairAbsMax(0.0, 1.0, bit_width=bits, stats_reduce_dim=1)(w) / 2 ** (bits - 1)
    ratios = torch.linspace(0.01, 1.0, 400)
    brute = torch.stack([_grid_error(w, minmax_step * r, bits) for r in ratios]).min(0).values
    found = _grid_error(w, step, bits)
    assert torch.all(found <= brute * 1.02)
    assert torch.all(found <= _grid_error(w, minmax_step, bits))


def test_weight_mse_finds_the_known_laplace_clip_at_4_bits():
    """For Laplace(b) at 4 bits the MSE-optimal clipping threshold is about 5.0 b (ACIQ)."""
    torch.manual_seed(1)
    w = torch.distributions.Laplace(0.0, 1.0).sample((1, 200_000))
    threshold = float(MSEClipAbsMax(bit_width=4, stats_reduce_dim=None)(w)) * 7 / 8
    assert 4.5 < threshold < 5.5


def test_weight_mse_keeps_min_max_for_a_tensor_already_on_the_grid():
    """Every value on the min-max grid: zero error there, so no clipping can do better."""
    w = (torch.arange(-127, 128, dtype=torch.float32) / 127 * 0.3)[None]
    step = MSEClipAbsMax(bit_width=8, stats_reduce_dim=1)(w) / 128
    assert float(step) == pytest.approx(0.3 / 127, rel=1e-6)


def test_weight_mse_search_reruns_when_weights_change():
    op = MSEClipAbsMax(bit_width=4, stats_reduce_dim=1)
    w = torch.randn(3, 500)
    first = op(w).clone()
    with torch.no_grad():
        w[0].mul_(torch.linspace(0.1, 3, 500) ** 4)  # a heavy tail in channel 0 only
    second = op(w)
    assert torch.equal(second, MSEClipAbsMax(bit_width=4, stats_reduce_dim=1)(w))
    assert not torch.allclose(second[0], first[0])
    assert torch.equal(second[1:], first[1:])


def test_weight_range_mse_in_a_converted_layer_lowers_weight_error():
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 16, 3)
    with torch.no_grad():
        conv.weight.copy_(torch.distributions.Laplace(0.0, 0.1).sample(conv.weight.shape))
    errors = {}
    for weight_range in ("minmax", "mse"):
        q = quantize_model(nn.Sequential(conv), QuantConfig(weight_bits=4, per_channel=True, weight_range=weight_range))
        errors[weight_range] = float((q[0].quant_weight().value - conv.weight).detach().square().sum())
        assert q[0].quant_weight().scale.numel() == 16
    assert errors["mse"] < 0.9 * errors["minmax"]


def _true_act_mse(x, low, high, bits, symmetric):
    if symmetric:
        s = max(high / (2 ** (bits - 1) - 1), -low / 2 ** (bits - 1))
        q = torch.clamp(torch.round(x / s), -(2 ** (bits - 1)), 2 ** (bits - 1) - 1) * s
    else:
        s = (high - low) / (2**bits - 1)
        zp = round(-low / s)
        q = (torch.clamp(torch.round(x / s) + zp, 0, 2**bits - 1) - zp) * s
    return float((x - q).square().mean())


def _hist(x):
    hist = ActHistogram()
    for chunk in x.split(10_000):
        hist.observe_range(chunk)
    for chunk in x.split(10_000):
        hist.observe_values(chunk)
    return hist


DATA = {
    "laplace": lambda: torch.distributions.Laplace(0.0, 1.0).sample((100_000,)),
    "relu": lambda: torch.relu(torch.randn(100_000)),
    "uniform": lambda: torch.rand(100_000) * 2 - 0.5,
}


@pytest.mark.parametrize("data", sorted(DATA))
@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("symmetric", [False, True])
def test_act_mse_range_near_brute_force_and_never_worse_than_min_max(data, bits, symmetric):
    torch.manual_seed(0)
    x = DATA[data]()
    low, high = mse_range(_hist(x), bits, symmetric)
    found = _true_act_mse(x, low, high, bits, symmetric)
    lo, hi = float(x.min()), float(x.max())
    assert found <= _true_act_mse(x, min(lo, 0.0), max(hi, 0.0), bits, symmetric) * 1.001
    if symmetric:
        peak = max(hi, -lo)
        brute = min(_true_act_mse(x, -peak * r * 128 / 127, peak * r, bits, True) for r in torch.linspace(0.02, 1, 50).tolist())
    else:
        fractions = torch.linspace(0.0, 1, 11).tolist()
        brute = min(_true_act_mse(x, min(lo, 0.0) * a, hi * b, bits, False) for a in fractions for b in fractions[1:])
    assert found <= brute * 1.02


def test_act_mse_finds_the_known_laplace_clip_at_4_bits():
    torch.manual_seed(2)
    low, high = mse_range(_hist(torch.distributions.Laplace(0.0, 1.0).sample((100_000,))), 4, symmetric=True)
    assert 4.5 < high < 5.5


def test_calibrate_with_act_range_mse_sets_ranges_from_all_samples():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 4)).eval()
    x = torch.randn(40, 4)
    config = QuantConfig(act_range="mse", act_bits=8)
    qmodel = quantize_model(model, config)
    ranges = calibrate_activations(qmodel, model, x, config, num_samples=40, progress=False)
    out0 = model[0](x)
    hist = _hist(out0.reshape(-1))
    assert ranges[("0", "output")] == pytest.approx(mse_range(hist, 8, symmetric=False))
    scale, zero_point, _ = act_grid(qmodel[0].output_quant)
    low, high = ranges[("0", "output")]
    assert scale == pytest.approx((high - low) / 255, rel=1e-5)
    assert zero_point == round(-low / scale)


def test_range_kinds_validated_and_round_trip():
    cfg = QuantConfig(weight_range="mse", act_range="mse", bias_correction=True)
    assert QuantConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(ConfigError, match="act_range='entropy'"):
        QuantConfig(act_range="entropy")
    with pytest.raises(ConfigError, match="weight_range"):
        QuantConfig(weight_range="MSE")
    with pytest.raises(ConfigError, match="bias_correction"):
        QuantConfig(bias_correction="yes")


def test_symmetric_range_of_a_tensor_never_negative_is_an_unsigned_grid_when_asked():
    """Post-ReLU values: a signed symmetric grid wastes its negative half; OpenVINO's uint8
    takes [0, 255 s]. Without the request the grid stays signed (TensorRT)."""
    torch.manual_seed(3)
    x = torch.relu(torch.randn(200_000))
    hist = ActHistogram()
    hist.observe_range(x)
    hist.observe_values(x)
    signed = mse_range(hist, 8, symmetric=True)
    unsigned = mse_range(hist, 8, symmetric=True, unsigned_nonnegative=True)
    assert signed[0] == -signed[1] * 128 / 127
    assert unsigned[0] == 0.0 and 0 < unsigned[1] <= float(x.max()) + 1e-6

    def error(low, high, levels):
        step = (high - low) / (levels - 1)
        return (x - (torch.round((x.clamp(low, high) - low) / step) * step + low)).square().mean()

    assert error(0.0, unsigned[1], 256) < 0.5 * error(signed[0], signed[1], 256)
    mixed_sign = ActHistogram()
    y = torch.randn(10_000)
    mixed_sign.observe_range(y)
    mixed_sign.observe_values(y)
    low, high = mse_range(mixed_sign, 8, symmetric=True, unsigned_nonnegative=True)
    assert low < 0 and low == pytest.approx(-high * 128 / 127)
