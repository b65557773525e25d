"""Bound distillation (2DQuant's "DQC" stage): learn only the quantizers, against the float model.

Starts from the default post-training quantization (vanilla PTQ with the config's ranges, MSE
by default, then bias correction), then freezes every weight and bias and trains only the
quantizers' parameters with Adam on the calibration inputs: the weight step sizes (LSQ, with
``weight_scaling="learned"``, which the method sets), the activation scales and the
activation zero points. The loss is the float model's output reproduced by the quantized one
(squared error over the float output's mean square) and, with ``loss="output+blocks"``, the
same for every block output (`gan_brevitas.ptq.blocks.default_blocks`, as BRECQ cuts the
model). Few parameters (a scale per channel and per activation), so it is cheap and hard to
over-fit on a handful of calibration inputs.

Each quantizer's learning rate is ``lr`` times the RMS of its scale parameter (a relative
step, the same on every layer whatever its range); the rate follows a cosine to 0.
Quantizers that share a grid (`gan_brevitas.quant.align`) stay tied: only the first of a pair
trains and the other copies it after every step; the grids are aligned again at the end. With
``revert_if_worse`` a run whose loss over all calibration batches ends above its start gives
the start back. ``qmodel.bound_distill_report`` holds the losses.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass
from typing import Any, Literal, Optional

import torch
from brevitas.quant_tensor import QuantTensor
from torch import Tensor, nn
from tqdm.auto import tqdm

from gan_brevitas.errors import ConfigError, ConversionError
from gan_brevitas.option_checks import check_positive_ints, check_ints, check_flags
from gan_brevitas.inputs import InputSource, iter_batches
from gan_brevitas.ptq.bias_correction import correct_biases
from gan_brevitas.ptq.blocks import BlockSpec, blocks_from_spec, default_blocks, first_tensor, hooks_removed_on_exit
from gan_brevitas.ptq.vanilla import vanilla_ptq
from gan_brevitas.quant.align import align_grids, copy_grid
from gan_brevitas.quant.config import QuantConfig
from gan_brevitas.quant.convert import act_proxies, quant_layers

log = logging.getLogger(__name__)

Loss = Literal["output", "output+blocks"]


@dataclass(frozen=True)
class BoundDistillOptions:
    """Options of ``recipes.quantize(gen, "bound-distill", ...)``.

    Attributes:
        steps: Adam steps (one calibration batch each).
        lr: learning rate relative to each quantizer's scale (3e-2: an Adam step moves a
            scale by up to about 3%); cosine-annealed to 0. On srvgg_x4 at W4A8, 100 steps:
            1e-2 -> +1.5 dB over the PTQ start, 3e-2 -> +1.8 dB, 1e-1 -> +1.9 dB.
        batch_size: calibration inputs per step.
        num_samples: calibration inputs (vanilla-PTQ start and distillation).
        loss: "output" (the generator's output) or "output+blocks" (and every block output).
        blocks: block boundaries for "output+blocks" (as BRECQ's ``blocks``); None = default.
        revert_if_worse: keep the PTQ start when training ends with a higher loss.
        seed: seeds the batch order.
        progress: tqdm progress bars.
    """

    steps: int = 200
    lr: float = 3e-2
    batch_size: int = 4
    num_samples: int = 500
    loss: Loss = "output"
    blocks: Optional[BlockSpec] = None
    revert_if_worse: bool = True
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        check_positive_ints(self, "steps", "batch_size", "num_samples")
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not 0 < self.lr < 1:
            raise ConfigError(f"lr is relative to each scale and must lie in (0, 1), e.g. 3e-2; got {self.lr!r}.")
        if self.loss not in ("output", "output+blocks"):
            raise ConfigError(f"loss must be 'output' or 'output+blocks', got {self.loss!r}.")
        check_flags(self, "revert_if_worse", "progress")
        check_ints(self, "seed")


@dataclass
class BoundDistillReport:
    """Mean loss over the calibration batches before and after, and what was trained."""

    loss_before: float
    loss_after: float
    parameters: int
    steps: int
    seconds: float
    reverted: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _tensor(output: Any) -> Tensor:
    return output.value if isinstance(output, QuantTensor) else first_tensor(output)


def _outputs(model: nn.Module, x: Tensor, names: list[str]) -> list[Tensor]:
    """The outputs of the modules ``names`` (last call each) and the model's output."""
    seen: dict[str, Tensor] = {}
    handles = [model.get_submodule(name).register_forward_hook(
        lambda module, args, out, name=name: seen.__setitem__(name, _tensor(out))) for name in names]
    with hooks_removed_on_exit(handles):
        out = _tensor(model(x))
    return [seen[name] for name in names] + [out]


def _loss(outputs: list[Tensor], targets: list[Tensor]) -> Tensor:
    """Mean over the terms of squared error / the target's mean square; the model output
    counts as much as all blocks together."""
    terms = [(o - t).pow(2).mean() / t.pow(2).mean().clamp_min(1e-12) for o, t in zip(outputs, targets)]
    if len(terms) == 1:
        return terms[0]
    return 0.5 * terms[-1] + 0.5 * torch.stack(terms[:-1]).mean()


def _mean_loss(qmodel: nn.Module, batches: list[Tensor], targets: list[list[Tensor]], names: list[str]) -> float:
    with torch.no_grad():
        return sum(float(_loss(_outputs(qmodel, x, names), t)) for x, t in zip(batches, targets)) / len(batches)


def _trained_proxies(qmodel: nn.Module, tied: set[str]) -> list[nn.Module]:
    """The weight quantizers and the enabled activation quantizers that hold parameters,
    except those tied to another one's grid."""
    proxies = [layer.weight_quant for _, layer in quant_layers(qmodel)]
    proxies += [proxy for name, side, proxy in act_proxies(qmodel)
                if proxy.is_quant_enabled and f"{name}.{side}" not in tied]
    return [proxy for proxy in proxies if any(True for _ in proxy.parameters())]


def _param_groups(proxies: list[nn.Module], lr: float) -> list[dict]:
    """One Adam group per quantizer, at ``lr`` x the RMS of its scale."""
    groups = []
    for proxy in proxies:
        named = dict(proxy.named_parameters())
        scale = next((p for n, p in named.items() if "scaling_impl" in n), next(iter(named.values())))
        rms = max(float(scale.detach().pow(2).mean().sqrt()), 1e-8)
        groups.append({"params": list(named.values()), "lr": lr * rms})
    return groups


def _train(qmodel: nn.Module, batches: list[Tensor], targets: list[list[Tensor]], names: list[str],
           options: BoundDistillOptions) -> int:
    """The Adam loop; returns the number of trained parameter values."""
    x0 = batches[0][:1]
    by_name = {f"{name}.{side}": proxy for name, side, proxy in act_proxies(qmodel)}
    aligned = align_grids(qmodel, x0)  # (tied quantizer, the one whose grid it takes)
    pairs = [(by_name[source], by_name[target]) for target, source in aligned]
    groups = _param_groups(_trained_proxies(qmodel, {target for target, _ in aligned}), options.lr)
    params = [p for group in groups for p in group["params"]]
    frozen = [(p, p.requires_grad) for p in qmodel.parameters()]
    optimizer = torch.optim.Adam(groups)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, options.steps)
    order = torch.Generator().manual_seed(options.seed)
    try:
        for p, _ in frozen:
            p.requires_grad_(False)
        for p in params:
            p.requires_grad_(True)
        with torch.enable_grad():
            for step in tqdm(range(options.steps), desc="bound distillation", disable=not options.progress):
                b = int(torch.randint(len(batches), (1,), generator=order))
                loss = _loss(_outputs(qmodel, batches[b], names), targets[b])
                if not torch.isfinite(loss):
                    raise ConversionError(f"the bound-distillation loss became {float(loss)} at step {step}: lower lr.")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                for source, target in pairs:
                    copy_grid(source, target)
    finally:
        for p, flag in frozen:
            p.requires_grad_(flag)
    align_grids(qmodel, x0)
    return sum(p.numel() for p in params)


def distill_bounds(qmodel: nn.Module, float_model: nn.Module, inputs: InputSource,
                   options: BoundDistillOptions) -> BoundDistillReport:
    """Train the quantizer parameters of ``qmodel`` (calibrated already) in place against
    ``float_model`` on ``inputs``; the weights and biases are left exactly as they are."""
    start = time.perf_counter()
    device = next(qmodel.parameters()).device
    batches = [batch.to(device) for batch in iter_batches(inputs, options.num_samples, options.batch_size)]
    spec = options.blocks
    blocks = [] if options.loss == "output" else (
        default_blocks(float_model) if spec is None else blocks_from_spec(float_model, spec))
    names = [block.modules[-1] for block in blocks]
    qmodel.eval()
    float_model.eval()
    with torch.no_grad():
        targets = [[t.detach() for t in _outputs(float_model, x, names)] for x in batches]
    before = _mean_loss(qmodel, batches, targets, names)
    saved = [(p, p.detach().clone()) for p in qmodel.parameters()]
    count = _train(qmodel, batches, targets, names, options)
    after = _mean_loss(qmodel, batches, targets, names)
    reverted = options.revert_if_worse and not after < before
    if reverted:
        log.warning("bound distillation raised the loss (%.4g -> %.4g): the PTQ start is kept; lower lr.",
                    before, after)
        with torch.no_grad():
            for param, value in saved:
                param.copy_(value)
    report = BoundDistillReport(before, before if reverted else after, count, options.steps,
                                time.perf_counter() - start, reverted)
    log.info("bound distillation: loss %.4g -> %.4g (%.1f dB), %d quantizer values, %.1f s", before,
             report.loss_after, 10 * math.log10(before / max(report.loss_after, 1e-30)), count, report.seconds)
    return report


def bound_distill(float_model: nn.Module, config: QuantConfig, inputs: InputSource,
                  options: BoundDistillOptions) -> nn.Module:
    """Vanilla PTQ, bias correction (when the config asks for it), then `distill_bounds`.

    The model says its biases are corrected already (``biases_corrected``, read by
    `recipes.quantize`), so they are not corrected again after the quantizers moved.
    """
    qmodel = vanilla_ptq(float_model, config, inputs, num_samples=options.num_samples, progress=options.progress)
    if config.bias_correction:
        correct_biases(qmodel, float_model, inputs)
        qmodel.biases_corrected = True
    qmodel.bound_distill_report = distill_bounds(qmodel, float_model, inputs, options)
    return qmodel.eval()
