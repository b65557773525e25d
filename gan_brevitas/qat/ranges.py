"""MA-QAT activation ranges: moving averages of per-sample quantiles during training (§3.6).

Every activation quantizer of the quantized model observes the full-precision values it is
about to quantize (a forward pre-hook on its proxy). After each training step the per-sample
(low, high) quantiles of those values update a `QuantileEMA` per quantizer, one sample at a
time with momentum 0.99 on the old value (as the quantile PTQ that initialises them), and the
new ranges are written with `set_act_range`. Under DDP the per-sample quantiles are gathered
from every process in global sample order first, so every process holds the same ranges as
one process would on the same global batch.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Optional

import torch
from brevitas.quant_tensor import QuantTensor
from torch import Tensor, nn

from gan_brevitas.qat.distributed import DistContext
from gan_brevitas.quant.config import QuantConfig
from gan_brevitas.quant.convert import quant_layers
from gan_brevitas.quant.quantizers import set_act_range
from gan_brevitas.quant.stats import QuantileEMA, quantile_pair


class GatheredQuantileEMA(QuantileEMA):
    """`QuantileEMA` fed with per-sample quantiles computed (and gathered) elsewhere."""

    def update_quantiles(self, low: float, high: float) -> None:
        """The update `QuantileEMA.update` applies once it has a sample's quantiles."""
        if self.count == 0:
            self.low, self.high = low, high
        else:
            m = self.momentum
            self.low = m * self.low + (1.0 - m) * low
            self.high = m * self.high + (1.0 - m) * high
        self.count += 1


def act_proxies(qmodel: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, proxy) of every activation quantizer of the quantized layers, in module order."""
    proxies = []
    for name, layer in quant_layers(qmodel):
        proxies.append((f"{name}.input_quant", layer.input_quant))
        if layer.output_quant.is_quant_enabled:  # off on the float tail (`quant.tail`)
            proxies.append((f"{name}.output_quant", layer.output_quant))
    return proxies


class MovingAverageRanges:
    """The MA-QAT range statistics of one quantized model.

    ``initial`` maps (layer, "input"/"output") to the quantile-PTQ range the averages start
    from (the paper initialises both QAT strategies from quantile PTQ).
    """

    def __init__(
        self,
        qmodel: nn.Module,
        config: QuantConfig,
        initial: Optional[dict[tuple[str, str], tuple[float, float]]] = None,
    ) -> None:
        self.low_q, self.high_q = config.effective_act_quantiles
        self.proxies = act_proxies(qmodel)
        self.stats: dict[str, GatheredQuantileEMA] = {}
        for name, _ in self.proxies:
            ema = GatheredQuantileEMA(self.low_q, self.high_q, config.quantile_momentum)
            layer, _, side = name.rpartition(".")
            start = (initial or {}).get((layer, side.replace("_quant", "")))
            if start is not None:
                ema.low, ema.high = start
                ema.count = 1
            self.stats[name] = ema
        self._pending: dict[str, Tensor] = {}
        self.enabled = False

    @contextlib.contextmanager
    def observing(self) -> Iterator[None]:
        """Record per-sample quantiles of every activation quantizer's input while active."""

        def hook(name: str):
            def record(module: nn.Module, args: tuple) -> None:
                if not self.enabled:
                    return
                x = args[0]
                if isinstance(x, QuantTensor):  # a layer's accumulator reaches output_quant as one
                    x = x.value
                x = x.detach().float()
                low, high = quantile_pair(x.reshape(x.shape[0], -1), self.low_q, self.high_q, dim=1)
                self._pending[name] = torch.stack([low, high], dim=1)  # [B, 2]

            return record

        handles = [proxy.register_forward_pre_hook(hook(name)) for name, proxy in self.proxies]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()
            self._pending.clear()

    def commit(self, dist_ctx: DistContext) -> None:
        """Fold the last step's per-sample quantiles into the averages; write the ranges."""
        if not self._pending:
            return
        names = [name for name, _ in self.proxies if name in self._pending]
        stacked = torch.stack([self._pending[n] for n in names]).to(torch.float64)  # [T, B, 2]
        self._pending.clear()
        gathered = dist_ctx.gather_rows(stacked).cpu()
        by_name = dict(self.proxies)
        for name, rows in zip(names, gathered.tolist()):
            ema = self.stats[name]
            for low, high in rows:
                ema.update_quantiles(low, high)
            set_act_range(by_name[name], *ema.range)

    def ranges(self) -> dict[str, tuple[float, float]]:
        return {name: ema.range for name, ema in self.stats.items() if ema.count}

    def state_dict(self) -> dict[str, Any]:
        return {name: (ema.low, ema.high, ema.count) for name, ema in self.stats.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, (low, high, count) in state.items():
            ema = self.stats[name]
            ema.low, ema.high, ema.count = low, high, count
