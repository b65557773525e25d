"""MA-QAT and LSQ-QAT (§3.6, §4.2, Appendix A): distillation training of a quantized generator.

The recipe, step by step:

1. Validate everything that could fail (options, VGG weights for the perceptual loss, the
   discriminator's input shape, the run directory) before writing a single file.
2. Generate the distillation pairs once (`gan_brevitas.qat.distill`), reused by later runs.
3. Initialise the quantized model by quantile PTQ (`calibrate_activations`), as the paper does
   for both strategies.
4. Train with eq. (4): a discriminator step on LSGAN (real = full-precision output, fake =
   quantized output of the same input), then a generator step on adv_weight * L_adv + d.
   Weights always learn through Brevitas's straight-through rounding. Quantizer parameters:
   * "ma" epochs: activation ranges follow moving averages of per-sample quantiles
     (`gan_brevitas.qat.ranges`); they are frozen after ``ma_epochs`` in MA-QAT;
   * "lsq" epochs: activation scales, zero points and (with weight_scaling="learned") weight
     scales are Adam parameters with their own learning rate (LSQ with learnable zero points).
   Adam betas (0.5, 0.999) and a cosine annealing schedule over all steps.
5. After every epoch: held-out PSNR and qFID, one log line, an atomic checkpoint; ``resume=True``
   continues from it and ends with the same weights as an uninterrupted run (CPU, bitwise).

Under ``torchrun`` the generator and discriminator steps run through PyTorch's
DistributedDataParallel; ``batch_size`` is the global batch.
"""

from __future__ import annotations

import contextlib
import logging
import random
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm.auto import tqdm

from gan_brevitas.errors import ConfigError
from gan_brevitas.inputs import InputSource
from gan_brevitas.metrics import resolve_extractor
from gan_brevitas.metrics.extractors import ExtractorSpec
from gan_brevitas.ptq.calibrate import calibrate_activations
from gan_brevitas.qat.checkpoint import (
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
    write_log,
)
from gan_brevitas.qat.discriminator import discriminator_scores
from gan_brevitas.qat.distill import (
    ShardedPairs,
    generator_image,
    make_loader,
    prepare_distillation_data,
)
from gan_brevitas.qat.distributed import DistContext, setup_distributed
from gan_brevitas.qat.losses import (
    lsgan_discriminator_loss,
)
from gan_brevitas.qat.options import QATOptions, detect_preset
from gan_brevitas.qat.state import (
    HeldOut,
    RunSetup,
    TrainingState,
    build_training_state,
)
from gan_brevitas.qat.validate import validate_run
from gan_brevitas.quant.config import QuantConfig
from gan_brevitas.quant.convert import initialise_weight_scales, quantize_model

log = logging.getLogger(__name__)

#: Called after every epoch (on every process) with that epoch's record and the model.
EpochCallback = Callable[["EpochRecord", nn.Module], None]


@dataclass
class EpochRecord:
    """One line of the training log. Epoch 0 is the quantile-PTQ initialisation."""

    epoch: int
    phase: str
    losses: dict[str, float] = field(default_factory=dict)
    lr: dict[str, float] = field(default_factory=dict)
    psnr: Optional[float] = None
    qfid: Optional[float] = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------- public entry points


def train_qat(
    float_model: nn.Module,
    config: QuantConfig,
    inputs: InputSource,
    method: str,
    *,
    discriminator: Optional[nn.Module] = None,
    eval_inputs: Optional[InputSource] = None,
    on_epoch_end: Optional[EpochCallback] = None,
    preset: Optional[str] = None,
    **options: Any,
) -> nn.Module:
    """Quantization-aware training of a copy of ``float_model`` (already folded); returns it.

    Args:
        float_model: the full-precision teacher (left as it is).
        config: the quantization scheme.
        inputs: latents / images: a sampler, a tensor or an iterable of batches.
        method: "ma-qat" or "lsq-qat".
        discriminator: trained alongside (a copy); None builds a fresh small one. It must take
            the generator's output shape.
        eval_inputs: held-out inputs for per-epoch PSNR / qFID; None holds out the first
            ``eval_samples`` rows of ``inputs``.
        on_epoch_end: ``callback(record, qmodel)`` after each epoch's checkpoint.
        preset: whose paper defaults to start from; detected from the generator's class.
        options: `QATOptions` fields (epochs, batch_size, loss, out_dir, resume, ...).
    """
    opts = QATOptions.build(method, preset or detect_preset(float_model), **options)
    dist_ctx = setup_distributed(opts.backend)
    try:
        trainer = _Trainer(float_model, config, inputs, opts, dist_ctx, discriminator, eval_inputs, on_epoch_end)
        return trainer.run()
    finally:
        dist_ctx.close()


# --------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def _isolated_rng(seed: int) -> Iterator[None]:
    """Seed torch / numpy / random for the run and give the caller's RNG states back after."""
    saved = rng_state()
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)
    try:
        yield
    finally:
        set_rng_state(saved)


def _train_mode(qmodel: nn.Module) -> None:
    """Training mode, except dropout: the targets were made without it."""
    qmodel.train()
    for module in qmodel.modules():
        if isinstance(module, nn.modules.dropout._DropoutNd):
            module.eval()


def _probe_unused(qmodel: nn.Module, sample_inputs: Tensor) -> set[int]:
    """Parameters that get no gradient (layers the generator never runs, e.g. StyleGAN
    blocks above its output resolution) are frozen: DDP requires every trained parameter
    to take part in each step. The probe also initialises learned weight scales from
    their statistics (Brevitas does that on the first call)."""
    params = [p for p in qmodel.parameters()]
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(True)
    with torch.random.fork_rng(devices=[]):
        output = generator_image(qmodel(sample_inputs))
        output.float().sum().backward()
    unused = {id(p) for p in params if p.grad is None}
    for p, flag in zip(params, flags):
        p.grad = None
        p.requires_grad_(flag and id(p) not in unused)
    if unused:
        names = [n for n, p in qmodel.named_parameters() if id(p) in unused]
        log.info("%d parameter(s) never take part in the output and stay fixed: %s", len(names),
                 ", ".join(names[:4]) + (", ..." if len(names) > 4 else ""))
    return unused


# --------------------------------------------------------------------------- the trainer


@dataclass
class _Replicas:
    """DistributedDataParallel wrappers under torchrun (None: one process, the models themselves)."""

    generator: Optional[nn.Module] = None
    critic: Optional[nn.Module] = None
    phase: Optional[str] = None


class _Trainer:
    """One run: `run` is the whole recipe; its parts live in `RunSetup`, `HeldOut` and
    `TrainingState` (gan_brevitas.qat.state)."""

    def __init__(
        self,
        float_model: nn.Module,
        config: QuantConfig,
        inputs: InputSource,
        opts: QATOptions,
        dist_ctx: DistContext,
        discriminator: Optional[nn.Module],
        eval_source: Optional[InputSource],
        on_epoch_end: Optional[EpochCallback],
    ) -> None:
        self.float_model = float_model
        self.config = config
        self.inputs = inputs
        self.opts = opts
        self.dist = dist_ctx
        self.user_discriminator = discriminator
        self.eval_source = eval_source
        self.on_epoch_end = on_epoch_end
        self.show = opts.progress and dist_ctx.is_main
        self.replicas = _Replicas()

    def run(self) -> nn.Module:
        setup = validate_run(self.float_model, self.config, self.inputs, self.opts, self.dist,
                             self.user_discriminator, self.eval_source)
        with contextlib.ExitStack() as stack, _isolated_rng(self.opts.seed + self.dist.rank):
            loader, sampler, held_out = self._prepare_data(setup, stack)
            qmodel, checkpoint, initial, unused = self._build_model(setup)
            state = build_training_state(qmodel, setup, self.config, self.opts, len(loader), unused, initial, stack)
            start = self._start(state, held_out, setup, checkpoint)
            for epoch in range(start, self.opts.epochs):
                self._epoch(state, held_out, setup, epoch, loader, sampler)
        self.replicas = _Replicas()
        return state.qmodel.eval()

    # ----------------------------------------------------------------- steps 2 and 3: data, model

    def _data_root(self, setup: RunSetup, stack: contextlib.ExitStack) -> Path:
        if self.opts.data_dir is not None:
            return Path(self.opts.data_dir)
        if setup.out_dir is not None:
            return setup.out_dir / "distill"
        if self.dist.active:
            raise ConfigError("under torchrun give out_dir or data_dir: the processes share the distillation data through it.")
        return Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gan-brevitas-distill-")))

    def _prepare_data(self, setup: RunSetup, stack: contextlib.ExitStack
                      ) -> tuple[DataLoader, DistributedSampler, HeldOut]:
        """Step 2: the distillation shards (written by the main process), this process's loader
        and the held-out pairs."""
        opts = self.opts
        directory = prepare_distillation_data(
            self.float_model, setup.eval_in, setup.train_in, self._data_root(setup, stack), setup.float_sha,
            opts.shard_size, setup.device, write=self.dist.is_main, progress=self.show)
        self.dist.barrier()
        dataset = ShardedPairs(directory)
        eval_in, eval_targets = dataset.held_out()
        extractor: Optional[ExtractorSpec] = None
        if self.dist.is_main and eval_in.shape[0] >= 2 and setup.sample.dim() == 4:
            extractor = resolve_extractor()
            log.info("per-epoch PSNR and qFID on %d held-out inputs; qFID extractor: %s",
                     eval_in.shape[0], extractor.label)
        per_process = opts.batch_size // self.dist.world_size
        loader, sampler = make_loader(dataset, per_process, self.dist.rank, self.dist.world_size, opts.seed)
        return loader, sampler, HeldOut(eval_in, eval_targets, extractor, opts.eval_batch_size)

    def _build_model(self, setup: RunSetup) -> tuple[nn.Module, Optional[dict[str, Any]], Optional[dict], set[int]]:
        """Step 3: the quantized model, initialised by quantile PTQ or loaded from the checkpoint.

        Returns (model, checkpoint or None, PTQ ranges or None, ids of parameters never used).
        """
        qmodel = quantize_model(self.float_model, self.config).to(setup.device)
        initial, checkpoint = None, None
        if setup.resuming:
            checkpoint = load_checkpoint(setup.out_dir, map_location=setup.device)  # type: ignore[arg-type]
            # Before anything holds the model's parameters: Brevitas re-creates its quantizer
            # modules (new Parameter objects) when a state dict is loaded.
            qmodel.load_state_dict(checkpoint["model"], strict=True)
        else:
            initial = calibrate_activations(qmodel, self.float_model, setup.train_in, self.config,
                                            num_samples=self.opts.num_samples, progress=self.show)
            initialise_weight_scales(qmodel)
        _train_mode(qmodel)
        return qmodel, checkpoint, initial, _probe_unused(qmodel, setup.train_in[:2].to(setup.device))

    # ----------------------------------------------------------------- steps 4 and 5: train

    def _evaluate(self, state: TrainingState, held_out: HeldOut, setup: RunSetup
                  ) -> tuple[Optional[float], Optional[float]]:
        if not self.dist.is_main:
            return None, None
        return held_out.evaluate(state.qmodel, setup.device, state.ranges)

    def _start(self, state: TrainingState, held_out: HeldOut, setup: RunSetup,
               checkpoint: Optional[dict[str, Any]]) -> int:
        """The first epoch to train: after the checkpoint's, or 0 after logging the PTQ start."""
        if checkpoint is not None:
            start = state.restore(checkpoint, self.dist.rank)
            log.info("resuming %s at epoch %d of %d from %s", self.opts.method, start + 1, self.opts.epochs,
                     setup.out_dir)
            return start
        psnr0, qfid0 = self._evaluate(state, held_out, setup)
        record = EpochRecord(0, "ptq-init", psnr=psnr0, qfid=qfid0)
        state.history.append(record.to_dict())
        self._log(record)
        return 0

    def _apply_phase(self, state: TrainingState, phase: str, device: torch.device) -> None:
        state.set_phase(phase)
        if self.dist.active and phase != self.replicas.phase:
            ids = [device.index] if device.type == "cuda" else None
            self.replicas.generator = None  # the old reducer must be gone before a new one hooks the parameters
            self.replicas.generator = DistributedDataParallel(state.qmodel, device_ids=ids)
            if state.disc is not None and self.replicas.critic is None:
                self.replicas.critic = DistributedDataParallel(state.disc, device_ids=ids)
        self.replicas.phase = phase

    def _epoch(self, state: TrainingState, held_out: HeldOut, setup: RunSetup, epoch: int, loader: DataLoader,
               sampler: DistributedSampler) -> None:
        """Step 5, once per epoch: train, evaluate, checkpoint, log, call back."""
        opts = self.opts
        phase = opts.phase(epoch)
        self._apply_phase(state, phase, setup.device)
        sampler.set_epoch(epoch)
        began = time.perf_counter()
        sums: dict[str, float] = {}
        bar = tqdm(loader, desc=f"{opts.method} epoch {epoch + 1}/{opts.epochs}", disable=not self.show, leave=False)
        for inputs, targets in bar:
            scalars = self._step(state, inputs.to(setup.device), targets.to(setup.device))
            for key, value in scalars.items():
                sums[key] = sums.get(key, 0.0) + value
            bar.set_postfix(loss=f"{scalars['total']:.4g}")
        losses = self.dist.mean({k: v / state.steps for k, v in sums.items()})
        value_psnr, value_qfid = self._evaluate(state, held_out, setup)
        record = EpochRecord(epoch + 1, phase, losses, {g["name"]: g["lr"] for g in state.opt_g.param_groups},
                             value_psnr, value_qfid, time.perf_counter() - began)
        state.history.append(record.to_dict())
        self._checkpoint(state, setup, epoch + 1)
        self._log(record)
        if self.on_epoch_end is not None:
            self.on_epoch_end(record, state.qmodel)

    def _step(self, state: TrainingState, inputs: Tensor, targets: Tensor) -> dict[str, float]:
        generator = self.replicas.generator if self.replicas.generator is not None else state.qmodel
        critic = self.replicas.critic if self.replicas.critic is not None else state.disc
        fake = generator_image(generator(inputs))
        scalars: dict[str, float] = {}
        if critic is not None:
            # Discriminator step: real = full-precision output, fake = quantized output.
            n = fake.shape[0]
            scores = discriminator_scores(critic(torch.cat([targets, fake.detach()])))
            d_loss = lsgan_discriminator_loss(scores[:n], scores[n:])
            state.opt_d.zero_grad(set_to_none=True)  # type: ignore[union-attr]
            d_loss.backward()
            state.opt_d.step()  # type: ignore[union-attr]
            scalars["discriminator"] = float(d_loss.detach())
        terms = state.objective(fake, targets, critic)
        state.opt_g.zero_grad(set_to_none=True)
        terms.total.backward()
        state.opt_g.step()
        state.scheduler.step()
        if state.ranges is not None and state.ranges.enabled:
            state.ranges.commit(self.dist)
        scalars.update(terms.scalars())
        return scalars

    def _checkpoint(self, state: TrainingState, setup: RunSetup, epoch: int) -> None:
        rngs = self.dist.gather_objects(rng_state())
        if setup.out_dir is None or not self.dist.is_main:
            self.dist.barrier()
            return
        checkpoint = state.checkpoint(epoch, setup.fingerprint)
        checkpoint["rng"] = rngs
        save_checkpoint(setup.out_dir, checkpoint)
        write_log(setup.out_dir, state.history)
        self.dist.barrier()

    def _log(self, record: EpochRecord) -> None:
        if not self.dist.is_main:
            return
        parts = [f"{k} {v:.4g}" for k, v in sorted(record.losses.items())]
        quality = []
        if record.psnr is not None:
            quality.append(f"PSNR {record.psnr:.2f} dB")
        if record.qfid is not None:
            quality.append(f"qFID {record.qfid:.4g}")
        log.info("%s epoch %d/%d [%s] %s%s%s", self.opts.method, record.epoch, self.opts.epochs, record.phase,
                 ", ".join(parts), " | " if parts and quality else "", ", ".join(quality))
