"""Range statistics of the paper (§3.5, §4.1).

* `quantile_pair`: the (low, high) quantiles of one tensor, linear interpolation between
  order statistics (numpy's default method), with no size limit (torch.quantile stops at 2^24
  elements, larger than some generator activations).
* `QuantileEMA`: the moving average of per-sample quantiles with momentum on the OLD value,
  ``s <- m * s + (1 - m) * q`` (the paper: m = 0.99, samples fed one at a time), started at the
  first sample's quantiles. Brevitas's calibration averages differently (a plain mean, or new
  value weight 0.1), hence this component.
* `QuantilePairAbsMax`: a Brevitas stats op for symmetric weight ranges: the smallest step
  that keeps both weight quantiles on the signed grid, per tensor or per output channel.
* `MSEClipAbsMax`: a Brevitas stats op for symmetric weight ranges that searches the clipping
  ratio of the min-max step minimising the squared quantization error, per tensor or per
  output channel.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from brevitas.core.stats.stats_op import register_stats_implementation


def _order_statistic_interp(values: Tensor, q: float, dim: int) -> Tensor:
    n = values.shape[dim]
    position = q * (n - 1)
    lower = int(position)
    upper = min(lower + 1, n - 1)
    frac = position - lower
    low_value = values.kthvalue(lower + 1, dim=dim).values
    if frac == 0.0 or upper == lower:
        return low_value
    high_value = values.kthvalue(upper + 1, dim=dim).values
    return low_value + frac * (high_value - low_value)


def quantile_pair(x: Tensor, low_q: float, high_q: float, dim: Optional[int] = None) -> tuple[Tensor, Tensor]:
    """(low, high) quantiles of ``x`` over all elements, or along ``dim``; keeps autograd.

    Matches ``numpy.quantile(..., method="linear")``. Quantiles 0 and 1 are the exact min and max.
    """
    values = x.reshape(-1) if dim is None else x
    reduce_dim = 0 if dim is None else dim

    def one(q: float) -> Tensor:
        if q == 0.0:
            return values.amin(dim=reduce_dim)
        if q == 1.0:
            return values.amax(dim=reduce_dim)
        return _order_statistic_interp(values, q, reduce_dim)

    return one(low_q), one(high_q)


class QuantileEMA:
    """Moving average of per-sample (low, high) quantiles, momentum on the old value.

    ``update`` takes ONE sample (any shape, its batch dimension of size 1 included); the
    quantiles are taken over all of its elements (per-tensor activation ranges).
    """

    def __init__(self, low_q: float, high_q: float, momentum: float = 0.99) -> None:
        self.low_q = low_q
        self.high_q = high_q
        self.momentum = momentum
        self.low: Optional[float] = None
        self.high: Optional[float] = None
        self.count = 0

    def update(self, sample: Tensor) -> None:
        low, high = quantile_pair(sample.detach().float(), self.low_q, self.high_q)
        low_value, high_value = float(low), float(high)
        if self.count == 0:
            self.low, self.high = low_value, high_value
        else:
            m = self.momentum
            self.low = m * self.low + (1.0 - m) * low_value
            self.high = m * self.high + (1.0 - m) * high_value
        self.count += 1

    @property
    def range(self) -> tuple[float, float]:
        if self.count == 0:
            raise RuntimeError("QuantileEMA has seen no sample yet")
        return self.low, self.high


@register_stats_implementation(signed=False)
class QuantilePairAbsMax(nn.Module):
    """Brevitas stats op for signed symmetric weights matched to a pair of quantiles.

    The step is the smallest that keeps both quantiles on the grid (§3.5): on
    t in [-2^(n-1), 2^(n-1)-1], ``step = max(q_high / (2^(n-1)-1), -q_low / 2^(n-1), 0)``.
    Brevitas divides the statistic by its integer threshold 2^(n-1) (signed, not narrow), so
    the op returns ``step * 2^(n-1)``. With quantiles (0, 1) this is min-max matching.
    Constructor arguments are injected by name from the quantizer.
    """

    def __init__(
        self,
        weight_low_quantile: float,
        weight_high_quantile: float,
        bit_width: int,
        stats_reduce_dim: Optional[int] = None,
        keepdim: bool = False,
    ) -> None:
        super().__init__()
        self.low_q = weight_low_quantile
        self.high_q = weight_high_quantile
        self.t_max = 2 ** (int(bit_width) - 1) - 1
        self.t_min_abs = 2 ** (int(bit_width) - 1)
        self.stats_reduce_dim = stats_reduce_dim
        self.keepdim = keepdim

    def forward(self, x: Tensor) -> Tensor:
        low, high = quantile_pair(x, self.low_q, self.high_q, self.stats_reduce_dim)
        step = torch.maximum(high.clamp_min(0) / self.t_max, (-low).clamp_min(0) / self.t_min_abs)
        out = step * self.t_min_abs
        if self.keepdim and self.stats_reduce_dim is not None:
            out = out.unsqueeze(self.stats_reduce_dim)
        return out


#: Clipping ratios of the min-max step that `MSEClipAbsMax` tries: 1/200, 2/200, ..., 1.
MSE_CLIP_CANDIDATES = 200


def _signed_grid_error(values: Tensor, step: Tensor, t_min_abs: int, t_max: int, dim: Optional[int]) -> Tensor:
    """Sum of squared errors of ``values`` on the grid ``step * [-t_min_abs, t_max]``."""
    scale = step if dim is None else step.unsqueeze(dim)
    quant = torch.clamp(torch.round(values / scale), -t_min_abs, t_max) * scale
    error = (values - quant).square()
    return error.sum() if dim is None else error.sum(dim=dim)


@register_stats_implementation(signed=False)
class MSEClipAbsMax(nn.Module):
    """Brevitas stats op for signed symmetric weights: the MSE-optimal clipped step.

    Starting from the min-max step (the smallest that keeps min and max on the grid
    t in [-2^(n-1), 2^(n-1)-1]), it tries ratios k/200, k = 1..200, of that step and keeps, per
    output channel (or for the whole tensor), the one with the least ``sum (W - Q(W))^2``;
    ties keep the larger ratio, so the error is never above min-max's. The search runs again
    only when the weights change (compared with a kept copy); the step stays differentiable in
    the weights through the min-max statistic, the ratio being a constant.
    """

    def __init__(self, bit_width: int, stats_reduce_dim: Optional[int] = None, keepdim: bool = False) -> None:
        super().__init__()
        self.t_max = 2 ** (int(bit_width) - 1) - 1
        self.t_min_abs = 2 ** (int(bit_width) - 1)
        self.stats_reduce_dim = stats_reduce_dim
        self.keepdim = keepdim
        self._cache_values: Optional[Tensor] = None
        self._cache_ratio: Optional[Tensor] = None

    def _minmax_step(self, values: Tensor) -> Tensor:
        low, high = quantile_pair(values, 0.0, 1.0, None if self.stats_reduce_dim is None else 1)
        return torch.maximum(high.clamp_min(0) / self.t_max, (-low).clamp_min(0) / self.t_min_abs)

    @torch.no_grad()
    def _search(self, values: Tensor, step: Tensor) -> Tensor:
        dim = None if self.stats_reduce_dim is None else 1
        step = step.clamp_min(torch.finfo(step.dtype).tiny)
        best_ratio = torch.ones_like(step)
        best_error = _signed_grid_error(values, step, self.t_min_abs, self.t_max, dim)
        for k in range(MSE_CLIP_CANDIDATES - 1, 0, -1):
            ratio = k / MSE_CLIP_CANDIDATES
            error = _signed_grid_error(values, step * ratio, self.t_min_abs, self.t_max, dim)
            better = error < best_error
            best_error = torch.where(better, error, best_error)
            best_ratio = torch.where(better, torch.full_like(best_ratio, ratio), best_ratio)
        return best_ratio

    def _ratio(self, values: Tensor, step: Tensor) -> Tensor:
        values = values.detach()
        cached = self._cache_values
        if cached is None or cached.shape != values.shape or cached.device != values.device or not torch.equal(cached, values):
            self._cache_ratio = self._search(values, step.detach())
            self._cache_values = values.clone()
        return self._cache_ratio

    def forward(self, x: Tensor) -> Tensor:
        values = x.reshape(-1) if self.stats_reduce_dim is None else x.flatten(1)
        step = self._minmax_step(values)
        out = step * self._ratio(values, step) * self.t_min_abs
        if self.keepdim and self.stats_reduce_dim is not None:
            out = out.unsqueeze(self.stats_reduce_dim)
        return out
