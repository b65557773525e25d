"""Block-reconstruction PTQ (paper §3.5, §4.1, Appendix A.1): STE-BRECQ and AR-BRECQ.

Both start from vanilla PTQ (quantile ranges) and then, block by block in the order the
blocks run, minimise the reconstruction error of eq. 3,

    || f_i^q(X_i) - Y_i ||^2   (squared error summed over channels, averaged over the batch
                                and positions, as in BRECQ),

where X_i and Y_i are the input and output of block i in the FULL-PRECISION model (the paper;
``block_input="quant"`` feeds the quantized model's own X_i instead, Y_i stays full precision).

* STE-BRECQ trains the weights and biases with straight-through rounding, and the quantizer
  parameters with LSQ: the activation scales and zero points, and the weight scales when
  ``config.weight_scaling == "learned"`` (the paper; parameters initialised from the weight
  quantiles; with "stats" they follow the weights). Adam; Appendix A.1's learning rates; the
  rates drop 10x half-way.
* AR-BRECQ learns each weight's rounding with AdaRound (`gan_brevitas.ptq.adaround`, built on
  Brevitas's learned-round quantizer) with the weights and weight scales fixed, and the
  activation scales / zero points with LSQ. It needs ``weight_scaling="learned"`` (a stored
  scale: the grid must not move when the rounded weights are written back). The regulariser's β anneals 20 -> 2 after a
  warm-up without it (the first 20% of the steps; the paper: 20,000 steps, 4,000 warm-up).
  At the end of each block the rounding is hardened: every weight is exactly on its grid.

Optional Fisher weighting (``fisher=True``): the squared error is weighted per element by
(1 + |g| / mean|g|)^2, g the gradient of the squared error between the quantized and float
generator outputs w.r.t. the block output (BRECQ's (1 + |g|)^2 form, with g rescaled so that
small image-space gradients are not swamped by the 1). The paper found no gain; off by default.

The per-block errors before and after are logged, attached to the result as
``qmodel.brecq_report`` (`BrecqReport`), and written as JSON when ``out_dir`` is given.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

import torch
from brevitas.core.zero_point import ParameterZeroPoint
from brevitas.nn.quant_layer import QuantWeightBiasInputOutputLayer
from torch import Tensor, nn
from tqdm.auto import tqdm

from gan_brevitas.atomic_files import atomic_write_text
from gan_brevitas.errors import ConfigError, ConversionError
from gan_brevitas.option_checks import check_positive_ints, check_ints, check_non_negative_numbers, check_flags
from gan_brevitas.inputs import InputSource, iter_batches
from gan_brevitas.ptq.adaround import AdaRoundWeight, beta_schedule, learned_rounding
from gan_brevitas.ptq.blocks import (
    INPUTS_KEY,
    Block,
    BlockDataCache,
    BlockSpec,
    batch_count,
    block_key,
    blocks_from_spec,
    capture_block_data,
    capture_quant_inputs,
    check_blocks_exist,
    check_coverage,
    default_blocks,
    first_tensor,
    run_block,
    seeded,
    to_device,
)
from gan_brevitas.ptq.calibrate import calibrate_activations
from gan_brevitas.quant.config import QuantConfig
from gan_brevitas.quant.convert import initialise_weight_scales, quant_layers, quantize_model

log = logging.getLogger(__name__)

Method = Literal["ste-brecq", "ar-brecq"]
BlockInput = Literal["float", "quant"]


# --------------------------------------------------------------------------- options


@dataclass(frozen=True)
class BrecqOptions:
    """Options of both methods (keyword options of ``recipes.quantize``).

    Attributes:
        steps: optimisation steps per block (one batch each).
        num_samples: inputs whose block data is recorded and trained on (the paper: 896).
        batch_size: samples per step (the paper: 16).
        calibration_samples: samples, fed one at a time, for the vanilla-PTQ start (500).
        quant_lr: Adam learning rate of the LSQ quantizer parameters (scales, zero points);
            Appendix A.1 picks among 1e-5, 1e-6, 1e-7.
        block_input: "float" (X_i from the full-precision model, the paper) or "quant"
            (X_i from the quantized model, the blocks before already reconstructed).
        fisher: weight the block loss by squared output gradients (see the module docstring).
        blocks: module names, or lists of names forming one block; None = `default_blocks`.
        seed: seeds the step order and every model forward (noise), so runs repeat exactly.
        max_memory_mb: block data above this estimate is streamed to disk.
        cache_dir: parent directory of the on-disk block data (the system temp dir if None).
        out_dir: when given, the report is written there as ``<method>_report.json``.
        revert_if_worse: a block whose error on the recorded data ends above its start is put
            back as it started (the report keeps the rejected error), so no block ends worse
            than vanilla PTQ on the data it was fitted to.
        progress: tqdm progress bars.
    """

    steps: int = 2000
    num_samples: int = 896
    batch_size: int = 16
    calibration_samples: int = 500
    quant_lr: float = 1e-5
    block_input: BlockInput = "float"
    fisher: bool = False
    blocks: Optional[BlockSpec] = None
    seed: int = 0
    max_memory_mb: float = 1024.0
    cache_dir: Optional[str] = None
    out_dir: Optional[str] = None
    revert_if_worse: bool = True
    progress: bool = True

    def __post_init__(self) -> None:
        check_positive_ints(self, "steps", "num_samples", "batch_size", "calibration_samples")
        check_non_negative_numbers(self, "quant_lr", "max_memory_mb")
        if self.block_input not in ("float", "quant"):
            raise ConfigError(f"block_input must be 'float' or 'quant', got {self.block_input!r}.")
        check_flags(self, "fisher", "revert_if_worse", "progress")
        check_ints(self, "seed")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class SteBrecqOptions(BrecqOptions):
    """STE-BRECQ options (Appendix A.1 and the paper's StyleGAN code).

    Attributes:
        weight_lr: Adam learning rate of the weights, RELATIVE to each weight tensor's RMS.
            The paper's 1e-2 / 1e-3 were set on rosinality's equal-LR ``weight_orig`` (unit
            variance, the layer multiplies it by sqrt(2 / fan_in)); a relative rate means the
            same on the folded weights we train, and on any other generator. Default 1e-3,
            the paper's other rate, safe at both widths: on the benchmark StyleGAN
            (benchmarks/results/brecq_benchmark_weight_lr_*.md) the paper code's 1e-2 gave a
            lower W8 qFID (1.41 vs 2.38) but a far worse W4 qFID (206 vs 17.6, vanilla 84.8),
            its W4 blocks fitting worse or being reverted. Try 1e-2 at 8 bits.
        bias_lr: Adam learning rate of the biases, relative to the RMS of the layer's output
            (a weight step of weight_lr x RMS(W) moves the output by about weight_lr x its
            RMS; this gives bias steps a like effect, whatever the layer's output scale).
            Default 1e-3: with weight_lr 1e-2, bias_lr 1e-2 instead of 1e-3 raised the
            benchmark's W8 qFID from 1.41 to 2.18.
        lr_decay_at: fraction of the steps after which every rate is multiplied by lr_decay.
        lr_decay: the step decay factor.
    """

    weight_lr: float = 1e-3
    bias_lr: float = 1e-3
    lr_decay_at: float = 0.5
    lr_decay: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        check_non_negative_numbers(self, "weight_lr", "bias_lr")
        if not 0.0 < self.lr_decay_at <= 1.0 or not 0.0 < self.lr_decay <= 1.0:
            raise ConfigError(
                f"lr_decay_at and lr_decay must lie in (0, 1], got {self.lr_decay_at!r}, {self.lr_decay!r}."
            )


@dataclass(frozen=True)
class ArBrecqOptions(BrecqOptions):
    """AR-BRECQ options (AdaRound as in BRECQ; Appendix A.1).

    Attributes:
        steps: 20,000 per block in the paper.
        round_lr: Adam learning rate of the rounding parameters V (BRECQ: 1e-3).
        warmup: fraction of the steps without the rounding regulariser (paper: 4,000 / 20,000).
        beta_start / beta_end: the regulariser's β, annealed linearly after the warm-up.
        round_weight: weight λ of the regulariser in the block loss (BRECQ: 0.01).
    """

    steps: int = 20_000
    round_lr: float = 1e-3
    warmup: float = 0.2
    beta_start: float = 20.0
    beta_end: float = 2.0
    round_weight: float = 0.01

    def __post_init__(self) -> None:
        super().__post_init__()
        check_non_negative_numbers(self, "round_lr", "round_weight")
        if isinstance(self.warmup, bool) or not isinstance(self.warmup, (int, float)) or not 0.0 <= self.warmup < 1.0:
            raise ConfigError(f"warmup is a fraction of the steps in [0, 1), got {self.warmup!r}.")
        if not 0.0 < self.beta_end <= self.beta_start:
            raise ConfigError(
                f"need 0 < beta_end <= beta_start (the paper: 20 -> 2), got {self.beta_start!r} -> {self.beta_end!r}."
            )


# --------------------------------------------------------------------------- report


@dataclass
class BlockReport:
    """Reconstruction error of one block, over all recorded batches.

    ``loss_*`` is the training objective without the AdaRound regulariser (Fisher-weighted
    when ``fisher=True``); ``rel_error_*`` is ||f_q(X) - Y||_F / ||Y||_F (never weighted);
    "after" is the state the model keeps.
    ``rejected_loss``: the error training reached when it was worse than the start and the
    block was reverted (``revert_if_worse``). ``flipped`` (AR-BRECQ): the share of the block's
    weights rounded away from their nearest grid point.
    """

    name: str
    layers: list[str]
    loss_before: float
    loss_after: float
    rel_error_before: float
    rel_error_after: float
    steps: int
    seconds: float
    flipped: Optional[float] = None
    rejected_loss: Optional[float] = None


@dataclass
class BrecqReport:
    """What a BRECQ run did: the effective config and options, and one entry per block."""

    method: str
    config: dict[str, Any]
    options: dict[str, Any]
    blocks: list[BlockReport] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=str)

    def write(self, out_dir: str | Path) -> Path:
        path = Path(out_dir)
        path.mkdir(parents=True, exist_ok=True)
        return atomic_write_text(path / f"{self.method}_report.json", self.to_json() + "\n")

    def table(self) -> str:
        """The per-block errors as a markdown table."""
        lines = [
            "| block | loss before | loss after | rel. error before | rel. error after | s |",
            "|---|---|---|---|---|---|",
        ]
        for b in self.blocks:
            after = f"{b.loss_after:.4g}"
            if b.rejected_loss is not None:
                after += f" (reverted; trained {b.rejected_loss:.4g})"
            lines.append(
                f"| {b.name} | {b.loss_before:.4g} | {after} | "
                f"{b.rel_error_before:.4f} | {b.rel_error_after:.4f} | {b.seconds:.1f} |"
            )
        return "\n".join(lines)


# --------------------------------------------------------------------------- pieces


def reconstruction_loss(output: Tensor, target: Tensor, weight: Optional[Tensor] = None) -> Tensor:
    """Squared error summed over channels (dim 1), averaged over the batch and positions."""
    error = (output - target).pow(2)
    if weight is not None:
        error = error * weight
    return error.sum(1).mean() if error.dim() > 1 else error.mean()


def _act_quant_parameters(layer: QuantWeightBiasInputOutputLayer) -> list[nn.Parameter]:
    """The LSQ parameters of a layer's input and output quantizers (scale, zero point)."""
    params = []
    for proxy in (layer.input_quant, layer.output_quant):
        if not proxy.is_quant_enabled:
            continue
        tensor_quant = proxy.fused_activation_quant_proxy.tensor_quant
        params.append(tensor_quant.scaling_impl.value)
        if isinstance(tensor_quant.zero_point_impl, ParameterZeroPoint):
            params.append(tensor_quant.zero_point_impl.value)
    return params


def _weight_scale_parameters(layer: QuantWeightBiasInputOutputLayer) -> list[nn.Parameter]:
    value = getattr(layer.weight_quant.tensor_quant.scaling_impl, "value", None)
    return [value] if isinstance(value, nn.Parameter) else []


@contextlib.contextmanager
def _only_trainable(model: nn.Module, params: Sequence[nn.Parameter]) -> Iterator[None]:
    """Freeze every parameter of ``model`` except ``params``; restore the flags on exit."""
    saved = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p, _ in saved:
            p.requires_grad_(False)
        for p in params:
            p.requires_grad_(True)
        yield
    finally:
        for p, flag in saved:
            p.requires_grad_(flag)


def _snapshot(layers: Sequence[QuantWeightBiasInputOutputLayer]) -> list[tuple[Tensor, Tensor]]:
    """(parameter, copy) for every value a block's training may change."""
    params: list[Tensor] = []
    for layer in layers:
        params.append(layer.weight)
        if layer.bias is not None:
            params.append(layer.bias)
        params += _weight_scale_parameters(layer) + _act_quant_parameters(layer)
    return [(p, p.detach().clone()) for p in params]


def _restore(snapshot: Sequence[tuple[Tensor, Tensor]]) -> None:
    with torch.no_grad():
        for param, saved in snapshot:
            param.copy_(saved)


class _BlockData:
    """Reads one block's recorded batches from the cache, on the model's device."""

    def __init__(self, cache: BlockDataCache, index: int, inputs_from: str, device: torch.device) -> None:
        self.cache = cache
        self.index = index
        self.inputs_from = inputs_from
        self.device = device
        self.has_weights = False

    def __len__(self) -> int:
        return self.cache.num_batches

    def batch(self, b: int) -> tuple[tuple, dict[str, Any], Tensor, Optional[Tensor]]:
        args, kwargs = to_device(self.cache.get(block_key(self.index, self.inputs_from), b), self.device)
        target = self.cache.get(block_key(self.index, "output"), b).to(self.device)
        weight = self.cache.get(block_key(self.index, "fisher"), b).to(self.device) if self.has_weights else None
        return args, kwargs, target, weight


def _check_chain(float_model: nn.Module, block: Block, data: _BlockData) -> None:
    """The block's modules, run as a chain on X, must reproduce the model's own Y."""
    args, kwargs, target, _ = data.batch(0)
    with torch.no_grad():
        try:
            output = run_block(float_model, block, args, kwargs)
        except RuntimeError as err:
            raise ConfigError(
                f"the modules of block {block.name!r} do not run one after the other in the "
                f"model's forward ({err}); list consecutive modules, or one module per block."
            ) from None
    if output.shape != target.shape or not torch.allclose(output, target, rtol=1e-4, atol=1e-5):
        raise ConfigError(
            f"block {block.name!r}: running its modules one after the other does not give the "
            "output the model computes (the forward does more between them, or the block draws "
            "random numbers); choose block boundaries at which the data flow is a plain chain."
        )


def _evaluate(qmodel: nn.Module, block: Block, data: _BlockData) -> tuple[float, float]:
    """(mean loss, relative Frobenius error) of the block over all recorded batches."""
    loss_sum, error_sq, target_sq = 0.0, 0.0, 0.0
    with torch.no_grad():
        for b in range(len(data)):
            args, kwargs, target, weight = data.batch(b)
            output = run_block(qmodel, block, args, kwargs)
            if output.shape != target.shape:
                raise ConversionError(
                    f"block {block.name!r} outputs {tuple(output.shape)} when quantized but "
                    f"{tuple(target.shape)} in full precision; the quantized block must compute "
                    "the same function: check that its layers were converted one for one."
                )
            loss_sum += float(reconstruction_loss(output, target, weight))
            error_sq += float((output - target).pow(2).sum())
            target_sq += float(target.pow(2).sum())
    return loss_sum / len(data), math.sqrt(error_sq / max(target_sq, 1e-30))


#: Cache key of the float generator's outputs (recorded once, for Fisher weighting).
REFERENCE_KEY = "reference"


def _record_reference_outputs(float_model: nn.Module, cache: BlockDataCache, seed: int) -> None:
    device = next(float_model.parameters()).device
    with torch.no_grad():
        for b in range(cache.num_batches):
            with seeded(seed + b):
                cache.put(REFERENCE_KEY, b, first_tensor(float_model(cache.get(INPUTS_KEY, b).to(device))))


def _record_fisher_weights(qmodel: nn.Module, block: Block, data: _BlockData, seed: int) -> None:
    """Per-element weights (1 + |g| / mean|g|)^2, g = d ||f_q(x) - f(x)||^2 / d block output."""
    captured: dict[str, Tensor] = {}

    def leaf(module: nn.Module, args: tuple, output: Any) -> Any:
        head = first_tensor(output).detach().requires_grad_(True)
        captured["output"] = head
        if isinstance(output, tuple):
            return (head,) + tuple(output[1:])
        return head

    handle = qmodel.get_submodule(block.modules[-1]).register_forward_hook(leaf)
    try:
        with _only_trainable(qmodel, []), torch.enable_grad():
            for b in range(len(data)):
                x = data.cache.get(INPUTS_KEY, b).to(data.device)
                reference = data.cache.get(REFERENCE_KEY, b).to(data.device)
                with seeded(seed + b):
                    output = first_tensor(qmodel(x))
                (grad,) = torch.autograd.grad((output - reference).pow(2).sum(), captured["output"])
                grad = grad.abs()
                weight = (1 + grad / grad.mean().clamp_min(1e-30)).pow(2)
                data.cache.put(block_key(data.index, "fisher"), b, weight)
    finally:
        handle.remove()
    data.has_weights = True


def _rms(x: Tensor) -> float:
    return max(float(x.detach().float().pow(2).mean().sqrt()), 1e-12)


def _output_rms(qmodel: nn.Module, block: Block, data: _BlockData, layers: Sequence[nn.Module]) -> list[float]:
    """RMS of each layer's output on the block's first recorded batch."""
    seen: dict[int, float] = {}
    handles = [
        layer.register_forward_hook(lambda m, a, out, i=i: seen.__setitem__(i, _rms(first_tensor(out))))
        for i, layer in enumerate(layers)
    ]
    try:
        with torch.no_grad():
            args, kwargs, _, _ = data.batch(0)
            run_block(qmodel, block, args, kwargs)
    finally:
        for handle in handles:
            handle.remove()
    return [seen.get(i, 1.0) for i in range(len(layers))]


def _param_groups_ste(
    layers: Sequence[QuantWeightBiasInputOutputLayer], output_rms: Sequence[float], options: SteBrecqOptions
) -> list[dict]:
    """Adam groups: weights at weight_lr x RMS(W), biases at bias_lr x RMS(output), LSQ
    parameters at quant_lr."""
    groups = []
    for layer, out_rms in zip(layers, output_rms):
        groups.append({"params": [layer.weight], "lr": options.weight_lr * _rms(layer.weight)})
        if layer.bias is not None:
            groups.append({"params": [layer.bias], "lr": options.bias_lr * out_rms})
        quant = _weight_scale_parameters(layer) + _act_quant_parameters(layer)
        if quant:
            groups.append({"params": quant, "lr": options.quant_lr})
    return groups


def _optimise(
    qmodel: nn.Module,
    block: Block,
    data: _BlockData,
    groups: list[dict],
    options: BrecqOptions,
    index: int,
    bar: tqdm,
    rounding: Sequence[AdaRoundWeight] = (),
) -> None:
    """The training loop of one block (both methods)."""
    params = [p for group in groups for p in group["params"]]
    optimizer = torch.optim.Adam(groups, betas=(0.9, 0.999))
    scheduler = None
    if isinstance(options, SteBrecqOptions):
        milestone = max(1, int(options.steps * options.lr_decay_at))
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, [milestone], gamma=options.lr_decay)
    warmup_steps = int(options.steps * options.warmup) if isinstance(options, ArBrecqOptions) else 0
    order = torch.Generator().manual_seed(options.seed * 1_000_003 + index)
    with _only_trainable(qmodel, params), torch.enable_grad():
        for step in range(options.steps):
            b = int(torch.randint(len(data), (1,), generator=order))
            args, kwargs, target, weight = data.batch(b)
            loss = reconstruction_loss(run_block(qmodel, block, args, kwargs), target, weight)
            total = loss
            if isinstance(options, ArBrecqOptions) and step >= warmup_steps and options.round_weight > 0:
                beta = beta_schedule(step, options.steps, warmup_steps, options.beta_start, options.beta_end)
                total = loss + options.round_weight * sum(r.regularizer(beta) for r in rounding)
            if not torch.isfinite(total):
                raise ConversionError(
                    f"the loss of block {block.name!r} became {float(total)} at step {step}: "
                    "lower the learning rates (weight_lr / round_lr / quant_lr)."
                )
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            bar.update()
            if step % 10 == 0:
                bar.set_postfix(loss=f"{float(loss.detach()):.4g}")


def _train_block(qmodel: nn.Module, block: Block, data: _BlockData, modules: Sequence[nn.Module],
                 options: BrecqOptions, index: int, bar: tqdm) -> Optional[float]:
    """Optimise the block's layers (AR-BRECQ: learned rounding, then hardened; STE-BRECQ:
    weights, biases and LSQ parameters). Returns AR-BRECQ's share of flipped roundings."""
    if isinstance(options, SteBrecqOptions):
        groups = _param_groups_ste(modules, _output_rms(qmodel, block, data, modules), options)
        _optimise(qmodel, block, data, groups, options, index, bar)
        return None
    with learned_rounding(modules) as rounding:
        groups = [{"params": [r.value for r in rounding], "lr": options.round_lr}]
        act = [p for layer in modules for p in _act_quant_parameters(layer)]
        if act:
            groups.append({"params": act, "lr": options.quant_lr})
        _optimise(qmodel, block, data, groups, options, index, bar, rounding)
        counts = [r.value.numel() for r in rounding]
        shares = [r.harden() for r in rounding]
    return sum(s * c for s, c in zip(shares, counts)) / sum(counts)


def _revert_block(modules: Sequence[nn.Module], start_state: Sequence[tuple[Tensor, Tensor]], options: BrecqOptions) -> None:
    """The block's vanilla-PTQ state back (AR-BRECQ: weights on their nearest grid points)."""
    _restore(start_state)
    if isinstance(options, ArBrecqOptions):
        with torch.no_grad():
            for layer in modules:
                layer.weight.copy_(layer.quant_weight().value)


def _block_data(qmodel: nn.Module, block: Block, index: int, cache: BlockDataCache, options: BrecqOptions
                ) -> _BlockData:
    """The block's recorded inputs and targets (inputs from the quantized model with
    block_input="quant"), with Fisher weights where asked."""
    device = next(qmodel.parameters()).device
    if options.block_input == "quant":
        capture_quant_inputs(qmodel, block, index, cache, options.seed)
    data = _BlockData(cache, index, "quant_args" if options.block_input == "quant" else "args", device)
    if options.fisher:
        _record_fisher_weights(qmodel, block, data, options.seed)
    return data


def _reconstruct_block(
    qmodel: nn.Module,
    block: Block,
    index: int,
    cache: BlockDataCache,
    options: BrecqOptions,
    method: str,
) -> Optional[BlockReport]:
    layers = [(name, layer) for name, layer in quant_layers(qmodel) if block.contains(name)]
    if not layers:
        log.info("block %s holds no quantized layer: nothing to reconstruct", block.name)
        return None
    start = time.perf_counter()
    data = _block_data(qmodel, block, index, cache, options)
    loss_before, rel_before = _evaluate(qmodel, block, data)
    modules = [layer for _, layer in layers]
    start_state = _snapshot(modules)
    rejected: Optional[float] = None
    bar = tqdm(total=options.steps, desc=f"{method} {block.name}", disable=not options.progress)
    flipped = _train_block(qmodel, block, data, modules, options, index, bar)
    loss_after, rel_after = _evaluate(qmodel, block, data)
    if options.revert_if_worse and loss_after > loss_before:
        log.warning(
            "%s block %s: the reconstruction error rose (%.4g -> %.4g): the block keeps its "
            "vanilla-PTQ state; try lower learning rates.", method, block.name, loss_before, loss_after,
        )
        rejected = loss_after
        _revert_block(modules, start_state, options)
        flipped = 0.0 if isinstance(options, ArBrecqOptions) else flipped
        loss_after, rel_after = _evaluate(qmodel, block, data)
    bar.set_postfix_str(f"loss {loss_before:.4g} -> {loss_after:.4g}, relative error {rel_before:.4f} -> {rel_after:.4f}")
    bar.close()
    report = BlockReport(
        name=block.name, layers=[name for name, _ in layers], loss_before=loss_before, loss_after=loss_after,
        rel_error_before=rel_before, rel_error_after=rel_after, steps=options.steps,
        seconds=time.perf_counter() - start, flipped=flipped, rejected_loss=rejected,
    )
    log.info(
        "%s block %s: loss %.4g -> %.4g, relative error %.4f -> %.4f (%.1f s)",
        method, block.name, loss_before, loss_after, rel_before, rel_after, report.seconds,
    )
    if loss_after > loss_before:
        log.warning(
            "%s block %s: the reconstruction error rose (%.4g -> %.4g); try lower learning rates.",
            method, block.name, loss_before, loss_after,
        )
    return report


# --------------------------------------------------------------------------- driver


def _check_weight_scaling(config: QuantConfig, method: str) -> None:
    """The saved model is rebuilt from ``config``, so the method runs with it as given."""
    if config.weight_scaling == "learned":
        return
    if method == "ar-brecq":
        raise ConfigError(
            "AR-BRECQ rounds every weight onto a FIXED grid, so the weight scale must be a stored "
            "parameter: use QuantConfig(weight_scaling='learned') (or the option "
            "weight_scaling='learned'; CLI: --set weight_scaling=learned)."
        )
    log.warning(
        "config.weight_scaling='stats': STE-BRECQ trains the weights and the activation scales "
        "and zero points, while the weight scales follow the weight quantiles. For the paper's "
        "LSQ weight step sizes use QuantConfig(weight_scaling='learned')."
    )


def block_reconstruction(
    float_model: nn.Module,
    config: QuantConfig,
    inputs: InputSource,
    options: BrecqOptions,
    method: Method,
) -> nn.Module:
    """Quantize ``float_model`` (already folded) and reconstruct it block by block."""
    start = time.perf_counter()
    _check_weight_scaling(config, method)
    float_model.eval()
    qmodel = quantize_model(float_model, config).eval()
    blocks = (
        default_blocks(float_model) if options.blocks is None else blocks_from_spec(float_model, options.blocks)
    )
    check_blocks_exist(float_model, blocks)
    layer_names = [name for name, _ in quant_layers(qmodel)]
    report = BrecqReport(method=method, config=config.to_dict(), options=options.to_dict())

    with BlockDataCache(options.max_memory_mb * 2**20, options.cache_dir) as cache:
        batches = iter_batches(inputs, options.num_samples, options.batch_size)
        expected = batch_count(options.num_samples, options.batch_size)
        capture = capture_block_data(
            float_model, blocks, batches, cache, expected, options.seed, layer_names, options.progress
        )
        check_coverage(blocks, capture.ran_layers)
        device = next(float_model.parameters()).device
        for index in capture.block_order:
            _check_chain(float_model, blocks[index], _BlockData(cache, index, "args", device))

        samples = min(options.calibration_samples, options.num_samples)
        calibration = (cache.get(INPUTS_KEY, b) for b in range(cache.num_batches))
        with seeded(options.seed):
            calibrate_activations(qmodel, float_model, calibration, config, samples, options.progress)
        initialise_weight_scales(qmodel)
        if options.fisher:
            _record_reference_outputs(float_model, cache, options.seed)

        for index in capture.block_order:
            block_report = _reconstruct_block(qmodel, blocks[index], index, cache, options, method)
            if block_report is not None:
                report.blocks.append(block_report)

    report.seconds = time.perf_counter() - start
    log.info("%s per-block reconstruction:\n%s", method, report.table())
    if options.out_dir is not None:
        log.info("%s report written to %s", method, report.write(options.out_dir))
    qmodel.brecq_report = report
    return qmodel.eval()

