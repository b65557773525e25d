"""Options of a quantization-aware training run, with the paper's defaults per model.

`PAPER_DEFAULTS` holds what Appendix A states for each generator; `QATOptions.build` starts
from them and applies the user's overrides (plain keyword arguments, so the CLI's
``--set epochs=2`` reaches here unchanged). Everything is validated at construction.

What the paper does not state is marked as ours in the field docs (discriminator learning
rate, the SAGAN epoch count, the held-out evaluation size).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any, Literal, Optional

from gan_brevitas.errors import ConfigError
from gan_brevitas.option_checks import check_positive_ints, check_non_negative_ints, check_flags

Method = Literal["ma-qat", "lsq-qat"]
#: "ma": moving-average ranges, frozen after ``ma_epochs``; "lsq": learned step sizes and zero
#: points from the start; "ma-lsq": MA for ``ma_epochs`` epochs, then LSQ (the paper's CycleGAN).
Schedule = Literal["ma", "lsq", "ma-lsq"]
#: "perceptual": Johnson et al. content + style on VGG16 features (the paper); "mse": pixel MSE
#: (Appendix B); "perceptual-disc": content + style on the discriminator's own feature maps.
LossKind = Literal["perceptual", "mse", "perceptual-disc"]

SCHEDULES: tuple[str, ...] = ("ma", "lsq", "ma-lsq")
LOSSES: tuple[str, ...] = ("perceptual", "mse", "perceptual-disc")
PRESETS: tuple[str, ...] = ("stylegan", "sagan", "cyclegan", "generic")


@dataclass(frozen=True)
class ModelDefaults:
    """The paper's training setup for one generator (Appendix A).

    Attributes:
        epochs: training epochs over the distillation set.
        ma_epochs: epochs during which MA-QAT moves the activation ranges (then frozen); in the
            "ma-lsq" schedule, the MA epochs before LSQ takes over.
        batch_size: global batch size (summed over processes).
        lr_weights: Adam learning rate of weights and biases.
        lr_quant: Adam learning rate of the quantizer parameters (LSQ).
        lsq_schedule: the schedule ``lsq-qat`` runs for this model ("lsq" or "ma-lsq").
        num_train: distillation pairs (the paper: 10,000 generated pairs; CycleGAN uses its
            whole training set, about 1,000 images, so finite inputs simply end earlier).
    """

    epochs: int
    ma_epochs: int
    batch_size: int
    lr_weights: float
    lr_quant: float
    lsq_schedule: Schedule
    num_train: int


PAPER_DEFAULTS: dict[str, ModelDefaults] = {
    # A.1: batch 8, lr 1e-5 / 1e-6, 200 epochs, cosine annealing; MA for the first 50 (§3.6).
    "stylegan": ModelDefaults(200, 50, 8, 1e-5, 1e-6, "lsq", 10_000),
    # A.2: as StyleGAN except quantizer lr 1e-7 and batch 64 (epochs not stated: StyleGAN's).
    "sagan": ModelDefaults(200, 50, 64, 1e-5, 1e-7, "lsq", 10_000),
    # A.3 and Table 4: 100 epochs, the LSQ-QAT row is 50 MA epochs then 50 LSQ epochs.
    "cyclegan": ModelDefaults(100, 50, 8, 1e-5, 1e-6, "ma-lsq", 10_000),
    # A user generator gets StyleGAN's setup, the paper's most detailed one.
    "generic": ModelDefaults(200, 50, 8, 1e-5, 1e-6, "lsq", 10_000),
}

#: Options that only say where files go or what is shown: they never change the trained
#: weights, so they stay out of the run fingerprint that resume checks.
RUNTIME_FIELDS: frozenset[str] = frozenset(
    {"out_dir", "data_dir", "resume", "progress", "device", "backend", "eval_batch_size"}
)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class QATOptions:
    """Every option of an MA-QAT / LSQ-QAT run (validated; JSON round-trippable).

    Attributes:
        method: "ma-qat" or "lsq-qat".
        preset: which model's paper defaults were used ("stylegan", "sagan", "cyclegan",
            "generic").
        schedule: "ma", "lsq" or "ma-lsq" (see `Schedule`).
        epochs: training epochs (> 0).
        ma_epochs: MA epochs (ranges observed, then frozen / LSQ starts).
        batch_size: global batch; each of N processes takes batch_size / N.
        lr_weights, lr_quant: Adam learning rates of weights and of quantizer parameters.
        lr_discriminator: Adam learning rate of the discriminator (ours: not in the paper).
        betas: Adam betas of all optimisers (the paper: (0.5, 0.999)).
        num_train: distillation pairs generated once and reused.
        num_samples: samples of the quantile PTQ that initialises the ranges (the paper: 500).
        loss: the distance d of eq. (4), see `LossKind`.
        adv_weight: weight of the LSGAN adversarial term (the paper's grid winner: 0.01);
            0 trains no discriminator.
        content_weight, style_weight: perceptual content / style weights (3 and 3e4).
        mse_weight: weight of the pixel MSE when loss="mse".
        vgg_weights: local VGG16 weights file for loss="perceptual" (else the environment
            variable GAN_BREVITAS_VGG16_WEIGHTS, else torchvision's cache; never downloaded).
        seed: seed of the data order, the fresh discriminator and every process's RNG.
        shard_size: distillation pairs per shard file.
        eval_samples: held-out inputs for the per-epoch PSNR / qFID (0: no evaluation; ours).
        eval_batch_size: batch of the per-epoch evaluation.
        out_dir: run directory (checkpoint every epoch, log, run fingerprint); None: no files.
        data_dir: where distillation shards live (default out_dir/distill), shared by runs.
        resume: continue the run checkpointed in out_dir.
        progress: tqdm progress bars.
        device: training device (default: the generator's; cuda:LOCAL_RANK under torchrun).
        backend: torch.distributed backend when this run initialises it (default gloo on
            CPU, nccl on GPU).
    """

    method: Method
    preset: str = "generic"
    schedule: Schedule = "lsq"
    epochs: int = 200
    ma_epochs: int = 50
    batch_size: int = 8
    lr_weights: float = 1e-5
    lr_quant: float = 1e-6
    lr_discriminator: float = 1e-4
    betas: tuple[float, float] = (0.5, 0.999)
    num_train: int = 10_000
    num_samples: int = 500
    loss: LossKind = "perceptual"
    adv_weight: float = 0.01
    content_weight: float = 3.0
    style_weight: float = 3e4
    mse_weight: float = 1.0
    vgg_weights: Optional[str] = None
    seed: int = 0
    shard_size: int = 1000
    eval_samples: int = 128
    eval_batch_size: int = 32
    out_dir: Optional[str] = None
    data_dir: Optional[str] = None
    resume: bool = False
    progress: bool = True
    device: Optional[str] = None
    backend: Optional[str] = None

    def __post_init__(self) -> None:
        if self.method not in ("ma-qat", "lsq-qat"):
            raise ConfigError(f"method={self.method!r} is not 'ma-qat' or 'lsq-qat'.")
        if self.preset not in PRESETS:
            raise ConfigError(f"preset={self.preset!r} is not one of {', '.join(PRESETS)}.")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule={self.schedule!r} is not one of {', '.join(SCHEDULES)}.")
        if self.method == "ma-qat" and self.schedule != "ma":
            raise ConfigError(
                f"ma-qat runs the 'ma' schedule, got schedule={self.schedule!r}: use method "
                "'lsq-qat' for 'lsq' or 'ma-lsq'."
            )
        if self.method == "lsq-qat" and self.schedule == "ma":
            raise ConfigError("lsq-qat runs schedule 'lsq' or 'ma-lsq'; for 'ma' use method 'ma-qat'.")
        if self.loss not in LOSSES:
            raise ConfigError(f"loss={self.loss!r} is not one of {', '.join(map(repr, LOSSES))}.")
        check_positive_ints(self, "epochs", "batch_size", "num_train", "num_samples", "shard_size", "eval_batch_size")
        check_non_negative_ints(self, "ma_epochs", "eval_samples", "seed")
        if self.ma_epochs > self.epochs:
            raise ConfigError(
                f"ma_epochs={self.ma_epochs} exceeds epochs={self.epochs}: the MA phase is part "
                "of the run; lower ma_epochs or raise epochs."
            )
        if self.schedule == "ma-lsq" and not 0 < self.ma_epochs < self.epochs:
            raise ConfigError(
                f"schedule 'ma-lsq' needs 0 < ma_epochs < epochs (MA first, then LSQ), got "
                f"ma_epochs={self.ma_epochs}, epochs={self.epochs}."
            )
        for name in ("lr_weights", "lr_quant", "lr_discriminator", "adv_weight", "content_weight",
                     "style_weight", "mse_weight"):
            value = getattr(self, name)
            if not _is_number(value) or value < 0:
                raise ConfigError(f"{name} must be a finite number >= 0, got {value!r}.")
        try:
            beta1, beta2 = (float(b) for b in self.betas)
        except (TypeError, ValueError):
            raise ConfigError(f"betas must be a pair such as (0.5, 0.999), got {self.betas!r}.") from None
        if not (0.0 <= beta1 < 1.0 and 0.0 <= beta2 < 1.0):
            raise ConfigError(f"betas={self.betas!r}: both must lie in [0, 1).")
        object.__setattr__(self, "betas", (beta1, beta2))
        check_flags(self, "resume", "progress")
        for name in ("vgg_weights", "out_dir", "data_dir", "device", "backend"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                object.__setattr__(self, name, str(value))
        if self.resume and self.out_dir is None:
            raise ConfigError("resume=True needs out_dir: the directory of the run to continue.")

    @property
    def lsq_epoch(self) -> Optional[int]:
        """First epoch (0-based) that learns quantizer parameters; None when none does."""
        if self.schedule == "lsq":
            return 0
        if self.schedule == "ma-lsq":
            return self.ma_epochs
        return None

    def phase(self, epoch: int) -> str:
        """What the quantizers do in ``epoch`` (0-based): "ma", "lsq" or "frozen"."""
        if self.schedule == "lsq":
            return "lsq"
        if epoch < self.ma_epochs:
            return "ma"
        return "lsq" if self.schedule == "ma-lsq" else "frozen"

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["betas"] = list(self.betas)
        return data

    def training_dict(self) -> dict[str, Any]:
        """The options that change the trained weights (the run fingerprint's share)."""
        return {k: v for k, v in self.to_dict().items() if k not in RUNTIME_FIELDS}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "QATOptions":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown QAT option(s) {unknown}; valid options are {sorted(known)}.")
        values = dict(data)
        if isinstance(values.get("betas"), list):
            values["betas"] = tuple(values["betas"])
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> "QATOptions":
        return cls.from_dict(json.loads(text))

    @classmethod
    def build(cls, method: str, preset: str = "generic", **overrides: Any) -> "QATOptions":
        """The paper's defaults for ``preset`` and ``method``, with ``overrides`` applied.

        When ``epochs`` is overridden but ``ma_epochs`` is not, the MA phase keeps the paper's
        share of the run (e.g. 50 of 200 epochs -> 1 of 4), so a short run still has both
        phases; an explicit ``ma_epochs`` always wins.
        """
        if preset not in PAPER_DEFAULTS:
            raise ConfigError(f"preset={preset!r} is not one of {', '.join(PRESETS)}.")
        known = {f.name for f in dataclasses.fields(cls)} - {"method", "preset"}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ConfigError(
                f"unknown {method} option(s) {unknown}; valid options are {sorted(known)} "
                "(plus discriminator=, eval_inputs=, on_epoch_end= in Python)."
            )
        paper = PAPER_DEFAULTS[preset]
        values: dict[str, Any] = {
            "epochs": paper.epochs,
            "ma_epochs": paper.ma_epochs,
            "batch_size": paper.batch_size,
            "lr_weights": paper.lr_weights,
            "lr_quant": paper.lr_quant,
            "num_train": paper.num_train,
            "schedule": "ma" if method == "ma-qat" else paper.lsq_schedule,
        }
        if "epochs" in overrides and "ma_epochs" not in overrides:
            epochs = overrides["epochs"]
            if _is_number(epochs) and not isinstance(epochs, bool) and int(epochs) == epochs and epochs > 0:
                share = round(int(epochs) * paper.ma_epochs / paper.epochs)
                values["ma_epochs"] = min(max(share, 1), int(epochs))
                if values["schedule"] == "ma-lsq" and int(epochs) > 1:
                    values["ma_epochs"] = min(values["ma_epochs"], int(epochs) - 1)
        if "betas" in overrides and isinstance(overrides["betas"], list):
            overrides = {**overrides, "betas": tuple(overrides["betas"])}
        values.update(overrides)
        return cls(method=method, preset=preset, **values)  # type: ignore[arg-type]


def detect_preset(model: Any) -> str:
    """The paper model a generator is ("stylegan", "sagan", "cyclegan"), else "generic"."""
    from gan_brevitas.models.registry import architecture_of

    family = architecture_of(model)
    return family.name if family is not None else "generic"
