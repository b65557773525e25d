import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from gan_brevitas.quant.config import PAPER_QUANTILE_PAIRS
from gan_brevitas.quant.stats import QuantileEMA, QuantilePairAbsMax, quantile_pair


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 300),
    q=st.sampled_from([0.0, 0.0001, 0.001, 0.01, 0.25, 0.5, 0.99, 0.999, 0.9999, 1.0]),
    seed=st.integers(0, 2**16),
)
def test_quantile_matches_numpy(n, q, seed):
    x = torch.from_numpy(np.random.default_rng(seed).standard_t(2, size=n)).float()
    low, high = quantile_pair(x, q, 1.0)
    assert float(low) == pytest.approx(np.quantile(x.numpy(), q), rel=1e-5, abs=1e-6)
    assert float(high) == pytest.approx(x.numpy().max())


def test_quantile_along_dim_matches_numpy():
    x = torch.randn(5, 1000)
    low, high = quantile_pair(x, 0.01, 0.99, dim=1)
    np.testing.assert_allclose(low, np.quantile(x.numpy(), 0.01, axis=1), rtol=1e-5)
    np.testing.assert_allclose(high, np.quantile(x.numpy(), 0.99, axis=1), rtol=1e-5)


@pytest.mark.parametrize("low_q, high_q", PAPER_QUANTILE_PAIRS)
def test_paper_statistic_equals_numpy(low_q, high_q):
    """Moving average of per-sample quantiles, momentum 0.99 on the old value, one at a time."""
    rng = np.random.default_rng(0)
    samples = [rng.standard_t(3, size=(1, 4, 8, 8)).astype(np.float32) * (1 + i / 50) for i in range(120)]
    ema = QuantileEMA(low_q, high_q, momentum=0.99)
    for s in samples:
        ema.update(torch.from_numpy(s))
    ref_low = np.quantile(samples[0], low_q)
    ref_high = np.quantile(samples[0], high_q)
    for s in samples[1:]:
        ref_low = 0.99 * ref_low + 0.01 * np.quantile(s, low_q)
        ref_high = 0.99 * ref_high + 0.01 * np.quantile(s, high_q)
    assert ema.count == 120
    assert ema.range[0] == pytest.approx(ref_low, rel=1e-5)
    assert ema.range[1] == pytest.approx(ref_high, rel=1e-5)


def test_quantile_pair_step_per_channel_matches_numpy():
    w = torch.randn(6, 50)
    op = QuantilePairAbsMax(0.01, 0.99, bit_width=4, stats_reduce_dim=1)
    low = np.quantile(w.numpy(), 0.01, axis=1)
    high = np.quantile(w.numpy(), 0.99, axis=1)
    step = np.maximum(np.maximum(high, 0) / 7, np.maximum(-low, 0) / 8)
    np.testing.assert_allclose(op(w).numpy(), step * 8, rtol=1e-5)
