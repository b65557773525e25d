"""MSE-optimal activation ranges from a histogram of all calibration activations.

`ActHistogram` collects one tensor's values in two passes over the same calibration data:
the first finds its global min and max, the second counts the nonzero values in `BINS` bins
over [min, max] (exact zeros, common after ReLU and padding, are counted apart: zero is always
on the grid). `mse_range` then picks the per-tensor range whose expected squared quantization
error is least:

    E(low, high) = sum_{c < low} n_c (c - low)^2 + sum_{c > high} n_c (c - high)^2
                   + N_in * step^2 / 12

(bin centres c with counts n_c; the clipped values exactly, the N_in nonzero values inside
the range with the rounding noise of a uniform grid of step ``step``). Asymmetric grids search
low and high separately (step = (high - low) / (2^n - 1)); symmetric ones search one step s
for the grid [-2^(n-1) s, (2^(n-1) - 1) s] (or, for a tensor never negative that will be held as
unsigned, [0, (2^n - 1) s]: the asymmetric search with its low end at 0). Min-max is one of the candidates, so the chosen
range never has a larger expected error than min-max.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

#: Histogram bins over [min, max] of a tensor.
BINS = 2048
#: Candidate clipping points per side (fractions k/CANDIDATES of min and of max).
CANDIDATES = 256


class ActHistogram:
    """Histogram of one activation tensor over all calibration samples (two passes)."""

    def __init__(self) -> None:
        self.low: Optional[float] = None
        self.high: Optional[float] = None
        self.counts: Optional[Tensor] = None
        self.zeros = 0

    def observe_range(self, x: Tensor) -> None:
        """Pass 1: widen [low, high] to contain ``x``."""
        x = x.detach()
        low, high = float(x.min()), float(x.max())
        self.low = low if self.low is None else min(self.low, low)
        self.high = high if self.high is None else max(self.high, high)

    def observe_values(self, x: Tensor) -> None:
        """Pass 2: count ``x`` into the bins over the range of pass 1."""
        if self.low is None:
            raise RuntimeError("observe_range must see the data before observe_values")
        x = x.detach().float().reshape(-1)
        nonzero = x[x != 0]
        self.zeros += x.numel() - nonzero.numel()
        low, high = self.low, max(self.high, self.low + 1e-12)
        counts = torch.histc(nonzero.clamp(low, high), bins=BINS, min=low, max=high).double()
        self.counts = counts if self.counts is None else self.counts + counts

    @property
    def seen(self) -> bool:
        return self.low is not None

    def centers(self) -> Tensor:
        edges = torch.linspace(self.low, max(self.high, self.low + 1e-12), BINS + 1, dtype=torch.float64)
        return (edges[:-1] + edges[1:]) / 2


def _clip_errors(centers: Tensor, counts: Tensor, low: Tensor, high: Tensor) -> tuple[Tensor, Tensor]:
    """(clipping error, count of values inside) for each candidate (low[i], high[i]), from
    prefix sums of n, n*c and n*c^2 over the bins (bins strictly below low / above high)."""
    zero = torch.zeros(1, dtype=torch.float64)
    prefix = [torch.cat([zero, (counts * centers**k).cumsum(0)]) for k in range(3)]
    total = [p[-1] for p in prefix]
    below = torch.searchsorted(centers, low, right=False)  # bins [0, below) lie below low
    above = torch.searchsorted(centers, high, right=True)  # bins [above, end) lie above high
    n_lo, s1_lo, s2_lo = (p[below] for p in prefix)
    n_hi, s1_hi, s2_hi = (t - p[above] for t, p in zip(total, prefix))
    error = (s2_lo - 2 * low * s1_lo + low.square() * n_lo) + (s2_hi - 2 * high * s1_hi + high.square() * n_hi)
    return error.clamp_min(0), total[0] - n_lo - n_hi


def expected_error(hist: ActHistogram, low: Tensor, high: Tensor, step: Tensor) -> Tensor:
    """E(low, high) of the module docstring for each candidate (1-D tensors of equal length)."""
    if hist.counts is None:
        return torch.zeros_like(low)
    error, inside = _clip_errors(hist.centers(), hist.counts, low, high)
    return error + inside * step.square() / 12


def _asymmetric_candidates(hist: ActHistogram, bits: int) -> tuple[Tensor, Tensor, Tensor]:
    fractions = torch.arange(1, CANDIDATES + 1, dtype=torch.float64) / CANDIDATES
    lows = fractions * min(hist.low, 0.0)
    highs = fractions * max(hist.high, 0.0)
    low, high = torch.meshgrid(lows.unique(), highs.unique(), indexing="ij")
    low, high = low.reshape(-1), high.reshape(-1)
    keep = high > low
    low, high = low[keep], high[keep]
    # The grid the quantizer will hold: the zero point is an integer, which shifts the range.
    step = (high - low) / (2**bits - 1)
    low = -torch.round(-low / step) * step
    return low, low + (2**bits - 1) * step, step


def _symmetric_candidates(hist: ActHistogram, bits: int) -> tuple[Tensor, Tensor, Tensor]:
    t_max, t_min_abs = 2 ** (bits - 1) - 1, 2 ** (bits - 1)
    full_step = max(max(hist.high, 0.0) / t_max, -min(hist.low, 0.0) / t_min_abs)
    step = torch.arange(1, CANDIDATES + 1, dtype=torch.float64) / CANDIDATES * full_step
    step = step[step > 0]
    return -t_min_abs * step, t_max * step, step


def mse_range(hist: ActHistogram, bits: int, symmetric: bool, unsigned_nonnegative: bool = False) -> tuple[float, float]:
    """The (low, high) range of least expected quantization error for ``hist``.

    ``unsigned_nonnegative``: a symmetric tensor that was never negative gets an unsigned grid
    [0, (2^n - 1) s] (zero point 0: what OpenVINO runs as uint8), returned as (0, high).
    """
    if not hist.seen:
        raise RuntimeError("the histogram has seen no data")
    unsigned = unsigned_nonnegative and hist.low >= 0.0
    candidates = _symmetric_candidates if symmetric and not unsigned else _asymmetric_candidates
    low, high, step = candidates(hist, bits)
    if low.numel() == 0:  # an all-zero tensor
        return 0.0, 0.0
    error = expected_error(hist, low, high, step)
    index = int(error.argmin())
    return float(low[index]), float(high[index])
