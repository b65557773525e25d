"""MA-QAT statistics: the moving average of per-sample quantiles equals QuantileEMA's."""

import torch

from gan_brevitas import QuantConfig
from gan_brevitas.qat.distributed import DistContext
from gan_brevitas.qat.ranges import GatheredQuantileEMA, MovingAverageRanges, act_proxies
from gan_brevitas.quant.convert import fold_for_quantization, quantize_model
from gan_brevitas.quant.quantizers import act_grid
from gan_brevitas.quant.stats import QuantileEMA


def test_gathered_ema_matches_quantile_ema():
    samples = [torch.randn(1, 3, 5, 5) * (i + 1) for i in range(6)]
    reference = QuantileEMA(0.001, 0.999, 0.99)
    gathered = GatheredQuantileEMA(0.001, 0.999, 0.99)
    for sample in samples:
        reference.update(sample)
        low, high = torch.quantile(sample.flatten(), torch.tensor([0.001, 0.999])).tolist()
        gathered.update_quantiles(low, high)
    assert gathered.count == reference.count
    for a, b in zip(gathered.range, reference.range):
        assert abs(a - b) < 1e-5


def test_moving_average_ranges_follow_the_quantized_activations(generator):
    config = QuantConfig.paper()
    qmodel = quantize_model(fold_for_quantization(generator), config)
    ranges = MovingAverageRanges(qmodel, config)
    proxies = act_proxies(qmodel)
    seen = {name: [] for name, _ in proxies}
    handles = [p.register_forward_pre_hook(lambda m, a, n=name: seen[n].append(getattr(a[0], 'value', a[0]).detach())) for name, p in proxies]
    ranges.enabled = True
    x = torch.randn(5, 16, generator=torch.Generator().manual_seed(0))
    with ranges.observing(), torch.no_grad():
        qmodel(x)
        ranges.commit(DistContext())
    for handle in handles:
        handle.remove()
    for name, proxy in proxies:
        reference = QuantileEMA(0.001, 0.999, 0.99)
        for row in seen[name][0]:
            reference.update(row.unsqueeze(0))
        low, high = ranges.stats[name].range
        assert abs(low - reference.range[0]) < 1e-6 and abs(high - reference.range[1]) < 1e-6
        scale, zero_point, bits = act_grid(proxy)
        lo, hi = min(low, 0.0), max(high, 0.0)
        assert abs(scale - (hi - lo) / (2**bits - 1)) < 1e-6 * max(1.0, hi - lo)
    # Disabled: nothing recorded, nothing moves.
    ranges.enabled = False
    before = ranges.state_dict()
    with ranges.observing(), torch.no_grad():
        qmodel(x * 3)
        ranges.commit(DistContext())
    assert ranges.state_dict() == before
