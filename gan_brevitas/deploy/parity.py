"""Parity of a deployed file with the PyTorch fake-quant model it was exported from, on either
engine, in units of the output quantizer's step."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any, Iterator, Optional

import numpy as np
import torch
from torch import Tensor, nn

from gan_brevitas.deploy.runner import open_runner
from gan_brevitas.errors import ExportError
from gan_brevitas.inputs import InputSource, iter_batches
from gan_brevitas.quant.convert import quant_layers
from gan_brevitas.quant.quantizers import act_grid


@dataclass(frozen=True)
class ParityReport:
    """An engine vs the PyTorch fake-quant model on the same inputs (first output).

    ``floor_mae`` is the fake-quant model against ITSELF with its inputs moved by 1e-6: every
    activation is re-quantized at each layer, so a value that lands on the other side of a
    rounding boundary (an exact .5 tie rounded differently, another float summation order in
    an engine's kernels) moves by a whole step, and InstanceNorm spreads that over its
    channel. Deep random-init generators amplify such flips to about one output step; an
    engine's error at or below this floor is rounding, not a wrong graph.
    """

    mae: float
    max_abs: float
    output_step: float
    n: int
    floor_mae: float = 0.0
    engine: str = "onnxruntime"

    @property
    def within_step(self) -> bool:
        """Mean absolute error within one step of the output quantizer."""
        return self.mae <= self.output_step

    @property
    def within_floor(self) -> bool:
        """Mean absolute error no larger than the model's own sensitivity floor (x 1.25)."""
        return self.mae <= 1.25 * max(self.floor_mae, 1e-12)

    def format(self) -> str:
        step = self.output_step
        return (
            f"{self.engine} vs PyTorch fake-quant over {self.n} samples: MAE {self.mae:.3g} "
            f"({self.mae / step:.3g} output steps), max {self.max_abs:.3g} ({self.max_abs / step:.3g} steps); "
            f"output step {step:.3g}; the model's own floor (inputs moved by 1e-6): MAE {self.floor_mae:.3g} "
            f"({self.floor_mae / step:.3g} steps)"
        )


@contextlib.contextmanager
def _call_order(model: nn.Module) -> Iterator[list[str]]:
    order: list[str] = []
    handles = [
        layer.register_forward_hook(lambda m, a, o, name=name: order.append(name))
        for name, layer in quant_layers(model)
    ]
    try:
        yield order
    finally:
        for handle in handles:
            handle.remove()


def output_step(qmodel: nn.Module, x: Tensor) -> float:
    """The step of the last output quantizer that runs on ``x`` (with a float tail, the default,
    the last layer's output stays float: the step of the grid before it is the unit)."""
    with _call_order(qmodel) as order, torch.no_grad():
        qmodel(x)
    if not order:
        raise ExportError("no quantized layer ran: is this a quantized model?")
    for name in reversed(order):
        proxy = qmodel.get_submodule(name).output_quant
        if proxy.is_quant_enabled:
            scale, _, _ = act_grid(proxy)
            return scale
    raise ExportError("no quantized layer that ran has an output quantizer: nothing sets the output's grid.")


def first_output(output: Any) -> Tensor:
    """A generator's image: its first output where it returns several (SAGAN: image, attention)."""
    return output[0] if isinstance(output, (tuple, list)) else output


def engine_outputs(
    qmodel: nn.Module,
    path: str | os.PathLike,
    inputs: InputSource,
    n: int,
    batch_size: int,
    threads: Optional[int] = None,
    engine: str = "onnxruntime",
) -> Iterator[tuple[Tensor, np.ndarray, np.ndarray]]:
    """``(batch, the model's first output, the engine's)`` for ``n`` inputs, the model in eval
    mode (its mode is restored afterwards) and without gradients; a shape mismatch is an ExportError."""
    runner = open_runner(path, engine, threads)
    was_training = qmodel.training
    qmodel.eval()
    try:
        with torch.no_grad():
            for batch in iter_batches(inputs, n, batch_size):
                batch = batch.float().cpu()
                expected = first_output(qmodel(batch)).numpy()
                got = runner(batch)
                if got.shape != expected.shape:
                    raise ExportError(f"{engine} output shape {got.shape} differs from the model's {expected.shape}.")
                yield batch, expected, got
    finally:
        qmodel.train(was_training)


def parity(
    qmodel: nn.Module,
    path: str | os.PathLike,
    inputs: InputSource,
    n: int = 8,
    batch_size: int = 4,
    threads: Optional[int] = None,
    engine: str = "onnxruntime",
) -> ParityReport:
    """Run ``n`` inputs through the quantized PyTorch model and the exported file on ``engine``;
    compare images."""
    errors: list[np.ndarray] = []
    floor: list[np.ndarray] = []
    noise = torch.Generator().manual_seed(0)
    step = None
    with torch.no_grad():
        for batch, expected, got in engine_outputs(qmodel, path, inputs, n, batch_size, threads, engine):
            if step is None:
                step = output_step(qmodel, batch[:1])
            errors.append(np.abs(got - expected).ravel())
            moved = batch + 1e-6 * torch.randn(batch.shape, generator=noise)
            floor.append(np.abs(first_output(qmodel(moved)).numpy() - expected).ravel())
    diffs = np.concatenate(errors)
    return ParityReport(
        mae=float(diffs.mean()), max_abs=float(diffs.max()), output_step=float(step), n=n,
        floor_mae=float(np.concatenate(floor).mean()), engine=engine,
    )
