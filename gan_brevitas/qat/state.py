"""The parts of one QAT run: what validation found, the held-out evaluation, the training state.

`validate.py` builds the `RunSetup`, `train.py` runs the recipe with these; each is a small
dataclass instead of attributes of one trainer object.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

import torch
from brevitas.proxy.quant_proxy import QuantProxyFromInjector
from torch import Tensor, nn

from gan_brevitas.errors import MetricError
from gan_brevitas.metrics import fid, psnr
from gan_brevitas.metrics.extractors import ExtractorSpec
from gan_brevitas.qat.checkpoint import set_rng_state
from gan_brevitas.qat.distill import generator_image
from gan_brevitas.qat.losses import DistillationObjective
from gan_brevitas.qat.options import QATOptions
from gan_brevitas.qat.ranges import MovingAverageRanges
from gan_brevitas.quant.config import QuantConfig

log = logging.getLogger(__name__)


@dataclass
class RunSetup:
    """Step 1's findings, all checked before any file is written."""

    device: torch.device
    out_dir: Optional[Path]
    vgg: Optional[nn.Module]
    eval_in: Tensor
    train_in: Tensor
    sample: Tensor  # two float outputs: the output shape
    disc: Optional[nn.Module]
    float_sha: str
    fingerprint: dict[str, str]
    resuming: bool


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in flags:
            module.training = training


@contextlib.contextmanager
def _ranges_paused(ranges: Optional[MovingAverageRanges]) -> Iterator[None]:
    """Moving-average ranges do not observe the evaluation's forward passes."""
    enabled = ranges.enabled if ranges is not None else False
    if ranges is not None:
        ranges.enabled = False
    try:
        yield
    finally:
        if ranges is not None:
            ranges.enabled = enabled


@dataclass
class HeldOut:
    """Held-out inputs, the float model's outputs for them and the qFID extractor (None: no qFID)."""

    inputs: Tensor
    targets: Optional[Tensor]
    extractor: Optional[ExtractorSpec]
    batch_size: int

    def evaluate(self, qmodel: nn.Module, device: torch.device, ranges: Optional[MovingAverageRanges]
                 ) -> tuple[Optional[float], Optional[float]]:
        """(PSNR, qFID) of ``qmodel`` on the held-out pairs ((None, None) without them)."""
        if self.inputs.shape[0] == 0 or self.targets is None:
            return None, None
        with _ranges_paused(ranges), torch.random.fork_rng(devices=[]), torch.no_grad(), _eval_mode(qmodel):
            images = torch.cat([generator_image(qmodel(b.to(device))).float().cpu()
                                for b in self.inputs.split(self.batch_size)])
        value_psnr = psnr(images, self.targets) if torch.isfinite(images).all() else None
        value_qfid = None
        if self.extractor is not None and images.dim() == 4:
            try:
                # As images are shown and saved: generators without an output nonlinearity
                # (StyleGAN) overshoot [-1, 1], which the FID extractors refuse.
                value_qfid = fid(images.clamp(-1, 1), self.targets.clamp(-1, 1), self.extractor, name="qfid",
                                 cuda=False).value
            except MetricError as err:
                log.warning("qFID not computed: %s", err)
        return value_psnr, value_qfid


def quantizer_parameters(qmodel: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """(name, parameter) of every quantizer parameter: activation scales and zero points,
    learned weight scales (everything owned by a Brevitas quant proxy)."""
    found: dict[int, tuple[str, nn.Parameter]] = {}
    for module_name, module in qmodel.named_modules():
        if isinstance(module, QuantProxyFromInjector):
            for name, param in module.named_parameters():
                found.setdefault(id(param), (f"{module_name}.{name}", param))
    return list(found.values())


@dataclass
class TrainingState:
    """What trains and what a checkpoint holds: the quantized generator, the critic, their
    optimisers, the cosine schedule, the moving-average ranges and the epoch log."""

    qmodel: nn.Module
    disc: Optional[nn.Module]
    opt_g: torch.optim.Optimizer
    opt_d: Optional[torch.optim.Optimizer]
    scheduler: torch.optim.lr_scheduler.LRScheduler
    ranges: Optional[MovingAverageRanges]
    objective: DistillationObjective
    quant_params: list[nn.Parameter]
    unused: set[int]  # ids of parameters that never get a gradient (kept fixed)
    steps: int  # optimiser steps per epoch
    history: list[dict[str, Any]] = field(default_factory=list)

    def set_phase(self, phase: str) -> None:
        """"lsq" learns the quantizer parameters; "ma" lets the moving-average ranges move."""
        for p in self.quant_params:
            if id(p) not in self.unused:
                p.requires_grad_(phase == "lsq")
        if self.ranges is not None:
            self.ranges.enabled = phase == "ma"

    def checkpoint(self, epoch: int, fingerprint: dict[str, str]) -> dict[str, Any]:
        return {
            "epoch": epoch,
            "fingerprint": fingerprint,
            "model": self.qmodel.state_dict(),
            "discriminator": self.disc.state_dict() if self.disc is not None else None,
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict() if self.opt_d is not None else None,
            "scheduler": self.scheduler.state_dict(),
            "ranges": self.ranges.state_dict() if self.ranges is not None else None,
            "history": self.history,
        }

    def restore(self, state: dict[str, Any], rank: int) -> int:
        """Everything but the model (loaded before the optimisers hold its parameters) from a
        checkpoint, with this process's RNG states; returns its epoch."""
        if self.disc is not None:
            self.disc.load_state_dict(state["discriminator"], strict=True)
            self.opt_d.load_state_dict(state["opt_d"])  # type: ignore[union-attr]
        self.opt_g.load_state_dict(state["opt_g"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.ranges is not None and state["ranges"] is not None:
            self.ranges.load_state_dict(state["ranges"])
        self.history = list(state["history"])
        rngs = state["rng"]
        if rank < len(rngs):
            set_rng_state(rngs[rank])
        else:
            log.warning("the checkpoint holds RNG states of %d process(es); rank %d starts from the seed.",
                        len(rngs), rank)
        return int(state["epoch"])


def build_training_state(
    qmodel: nn.Module,
    setup: RunSetup,
    config: QuantConfig,
    opts: QATOptions,
    steps: int,
    unused: set[int],
    initial: Optional[dict],
    stack: contextlib.ExitStack,
) -> TrainingState:
    """Step 4: parameter groups, optimisers, cosine schedule, MA statistics, objective."""
    quant = quantizer_parameters(qmodel)
    quant_ids = {id(p) for _, p in quant}
    quant_params = [p for _, p in quant]
    weights = [p for p in qmodel.parameters() if id(p) not in quant_ids and id(p) not in unused]
    quant_trained = [p for p in quant_params if id(p) not in unused]
    groups = [{"params": weights, "lr": opts.lr_weights, "name": "weights"}]
    if quant_trained:
        groups.append({"params": quant_trained, "lr": opts.lr_quant, "name": "quantizers"})
    opt_g = torch.optim.Adam(groups, betas=opts.betas)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(opt_g, T_max=opts.epochs * steps)
    opt_d = None
    if setup.disc is not None:
        opt_d = torch.optim.Adam(setup.disc.parameters(), lr=opts.lr_discriminator, betas=opts.betas)
    ranges = None
    if opts.schedule in ("ma", "ma-lsq"):
        ranges = MovingAverageRanges(qmodel, config, initial)
        stack.enter_context(ranges.observing())
    objective = DistillationObjective(opts.loss, opts.adv_weight, opts.content_weight, opts.style_weight,
                                      opts.mse_weight, discriminator=setup.disc, vgg=setup.vgg)
    return TrainingState(qmodel, setup.disc, opt_g, opt_d, scheduler, ranges, objective, quant_params, unused, steps)
