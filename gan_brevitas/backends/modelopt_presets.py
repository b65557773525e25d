"""ModelOpt presets as plain data: which quantizers a scheme turns on, without importing ModelOpt.

`ModelOptPreset.modelopt_config` writes the ``quant_cfg`` given to ``mtq.quantize``;
`PRESETS` holds the three schemes the methods "modelopt-int8", "modelopt-int8-percentile" and
"modelopt-w4a8" name; `ModelOptRecord` is what a quantization used (kept on the model and in
its file). The backend that runs them is `gan_brevitas.backends.modelopt`.
"""

from __future__ import annotations

import fnmatch
import glob
import json
from dataclasses import dataclass
from typing import Any, Literal, Optional

from torch import nn

from gan_brevitas.errors import ConfigError
from gan_brevitas.option_checks import check_flags
from gan_brevitas.quant.config import QuantConfig

Calibration = Literal["max", "percentile"]

#: Registry keys of the generator modules this backend teaches ModelOpt (``parent_class`` names).
ATTENTION_KEY = "gan_brevitas.SelfAttention"
BLUR_KEY = "gan_brevitas.Blur"
#: The bmm operand quantizers of `QuantSelfAttention`, named as in ModelOpt's attention plugins.
BMM_QUANTIZERS = ("q_bmm_quantizer", "k_bmm_quantizer", "v_bmm_quantizer", "softmax_quantizer")
#: Where a quantization records its `ModelOptRecord` on the quantized model.
RECORD_ATTR = "gan_brevitas_modelopt"
#: ModelOpt's registry keys of the compute layers whose outputs ``quantize_outputs`` quantizes.
COMPUTE_KEYS = ("nn.Conv1d", "nn.Conv2d", "nn.ConvTranspose1d", "nn.ConvTranspose2d", "nn.Linear")


@dataclass(frozen=True)
class ModelOptPreset:
    """One ModelOpt scheme for generators; `modelopt_config` turns it into ModelOpt's config.

    Every preset is symmetric (ModelOpt's integer quantizers have no zero point), with
    per-output-channel weight scales (axis 0; for ConvTranspose axis 0 is the input-channel
    axis of its [C_in, C_out, k, k] weight, the axis TensorRT accepts) and per-tensor
    activation scales on every quantized layer's input.

    Attributes:
        name: the preset name; the recipes method is ``"modelopt-" + name``.
        conv_weight_bits: bits of Conv / ConvTranspose weights (4 or 8).
        linear_weight_bits: bits of Linear weights (the mapping network, AdaIN styles).
        act_bits: bits of every activation quantizer.
        calibration: "max" (ModelOpt's max calibrator on every quantizer) or "percentile"
            (ModelOpt's histogram calibrator on activations, amax = the ``act_percentile``
            percentile of |x| over all calibration data; weights keep max).
        act_percentile: percentile of |x| used when calibration is "percentile".
        quantize_attention: quantize the operands of SAGAN's two attention bmm products.
        quantize_blur: quantize StyleGAN's fixed Blur filter (input and weight).
        quantize_outputs: also quantize the output of every Conv / ConvTranspose / Linear
            (ModelOpt's ``output_quantizer``, off in its defaults). The paper quantizes
            outputs too, and ONNX Runtime fuses a Conv into an int8 kernel only when its
            output carries Q/DQ; TensorRT does not need it.
        summary: one line for reports.
    """

    name: str
    conv_weight_bits: int = 8
    linear_weight_bits: int = 8
    act_bits: int = 8
    calibration: Calibration = "max"
    act_percentile: float = 99.9
    quantize_attention: bool = True
    quantize_blur: bool = False
    quantize_outputs: bool = False
    summary: str = ""

    def __post_init__(self) -> None:
        for attr in ("conv_weight_bits", "linear_weight_bits", "act_bits"):
            value = getattr(self, attr)
            if isinstance(value, bool) or not isinstance(value, int) or not 2 <= value <= 8:
                raise ConfigError(f"{attr}={value!r} must be an integer number of bits in 2..8.")
        if self.calibration not in ("max", "percentile"):
            raise ConfigError(f"calibration={self.calibration!r} must be 'max' or 'percentile'.")
        if not 0.0 < float(self.act_percentile) <= 100.0:
            raise ConfigError(f"act_percentile={self.act_percentile!r} must be in (0, 100], e.g. 99.9.")
        check_flags(self, "quantize_attention", "quantize_blur", "quantize_outputs")

    def to_dict(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in self.__dataclass_fields__}

    def act_cfg(self) -> dict[str, Any]:
        """ModelOpt quantizer attributes of every activation quantizer."""
        cfg: dict[str, Any] = {"num_bits": self.act_bits, "axis": None}
        if self.calibration == "percentile":
            cfg["calibrator"] = "histogram"
        return cfg

    def modelopt_config(self, model: nn.Module, skip: tuple[str, ...] = ()) -> dict[str, Any]:
        """The ``{"quant_cfg": [...], "algorithm": ...}`` dict given to ``mtq.quantize``.

        The generic entries come first (INT8_DEFAULT_CFG's weight and input settings, without
        its LLM module-name exclusions such as ``*output_layer*`` or ``*proj_out.*`` that could
        silently drop a generator layer); then per-module entries for conv weights (so
        subclasses of nn.Conv2d get the conv bits too) and for ``skip``.
        """
        weight = {"num_bits": self.linear_weight_bits, "axis": 0}
        entries: list[dict[str, Any]] = [
            {"quantizer_name": "*", "enable": False},
            {"quantizer_name": "*weight_quantizer", "cfg": weight},
            {"quantizer_name": "*input_quantizer", "cfg": self.act_cfg()},
            # ModelOpt's CNN defaults: no Q/DQ in front of activations and BatchNorm.
            {"quantizer_name": "*", "parent_class": "nn.LeakyReLU", "enable": False},
            {"quantizer_name": "*", "parent_class": "nn.BatchNorm1d", "enable": False},
            {"quantizer_name": "*", "parent_class": "nn.BatchNorm2d", "enable": False},
        ]
        if self.quantize_attention:
            entries += [
                {"quantizer_name": f"*{name}", "parent_class": ATTENTION_KEY, "cfg": self.act_cfg()}
                for name in BMM_QUANTIZERS
            ]
        if self.quantize_outputs:
            entries += [
                {"quantizer_name": "*output_quantizer", "parent_class": parent, "cfg": self.act_cfg()}
                for parent in COMPUTE_KEYS
            ]
        blur_weight = {"num_bits": 8, "axis": 0}
        entries.append(
            {"quantizer_name": "*weight_quantizer", "parent_class": BLUR_KEY, "cfg": blur_weight}
        )
        if not self.quantize_blur:
            entries.append({"quantizer_name": "*", "parent_class": BLUR_KEY, "enable": False})
        if self.conv_weight_bits != self.linear_weight_bits:
            entries += [
                {"quantizer_name": f"{_escape(name)}.weight_quantizer",
                 "cfg": {"num_bits": self.conv_weight_bits, "axis": 0}}
                for name, module in model.named_modules()
                if isinstance(module, nn.modules.conv._ConvNd) and name
            ]
        entries += [{"quantizer_name": f"{_escape(name)}.*", "enable": False} for name in skipped_modules(model, skip)]
        return {"quant_cfg": entries, "algorithm": "max" if self.calibration == "max" else None}


PRESETS: dict[str, ModelOptPreset] = {
    preset.name: preset
    for preset in (
        ModelOptPreset(
            "int8",
            summary="ModelOpt INT8: symmetric int8, per-channel weights, max calibration",
        ),
        ModelOptPreset(
            "int8-percentile",
            calibration="percentile",
            act_percentile=99.9,
            summary=(
                "ModelOpt INT8 with histogram calibration: activation amax = 99.9th percentile "
                "of |x| (clips at most the paper's 0.1% on either side)"
            ),
        ),
        ModelOptPreset(
            "w4a8",
            conv_weight_bits=4,
            summary="ModelOpt W4A8: 4-bit per-channel conv weights, int8 linears and activations, max",
        ),
    )
}


def resolve_preset(preset: str | ModelOptPreset) -> ModelOptPreset:
    """The preset named ``preset`` (or ``preset`` itself); ConfigError listing the names."""
    if isinstance(preset, ModelOptPreset):
        return preset
    found = PRESETS.get(preset)
    if found is None:
        raise ConfigError(
            f"unknown ModelOpt preset {preset!r}; choose one of {sorted(PRESETS)} "
            f"(recipes methods {', '.join('modelopt-' + p for p in sorted(PRESETS))})."
        )
    return found


def _escape(name: str) -> str:
    """A module name as a literal fnmatch pattern (ModelOpt matches quantizer names with fnmatch)."""
    return glob.escape(name)


def _is_skipped(name: str, module: nn.Module, skip: tuple[str, ...]) -> bool:
    """QuantConfig.skip semantics: an fnmatch pattern of the module name, or its class name."""
    return any(fnmatch.fnmatchcase(name, pattern) or type(module).__name__ == pattern for pattern in skip)


def skipped_modules(model: nn.Module, skip: tuple[str, ...]) -> list[str]:
    """Names of the modules ``skip`` keeps float (a match's children are covered by it)."""
    names: list[str] = []
    for name, module in model.named_modules():
        if name and _is_skipped(name, module, skip) and not any(name.startswith(n + ".") for n in names):
            names.append(name)
    return names


@dataclass(frozen=True)
class ModelOptRecord:
    """What `modelopt_ptq` did, kept on the quantized model for reports and export."""

    preset: ModelOptPreset
    skipped: tuple[str, ...]
    unused: tuple[str, ...]
    num_samples: int

    def to_json(self) -> str:
        return json.dumps(
            {"preset": self.preset.to_dict(), "skipped": list(self.skipped), "unused": list(self.unused),
             "num_samples": self.num_samples},
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> "ModelOptRecord":
        data = json.loads(text)
        return cls(ModelOptPreset(**data["preset"]), tuple(data["skipped"]), tuple(data["unused"]),
                   int(data["num_samples"]))


def skip_patterns(config: Optional[QuantConfig], preset: ModelOptPreset) -> tuple[str, ...]:
    """QuantConfig.skip; any other non-default QuantConfig field is a ConfigError (ModelOpt
    presets fix the scheme, a silently ignored field would be a lie in the report)."""
    if config is None:
        return ()
    if not isinstance(config, QuantConfig):
        raise ConfigError(f"config must be a QuantConfig, got {type(config).__name__}.")
    default = QuantConfig()
    changed = [
        f"{name}={getattr(config, name)!r}"
        for name in config.to_dict()
        if name != "skip" and getattr(config, name) != getattr(default, name)
    ]
    if changed:
        raise ConfigError(
            f"method 'modelopt-{preset.name}' uses ModelOpt's fixed scheme ({preset.summary}); "
            f"QuantConfig field(s) {', '.join(changed)} do not apply to it (only skip does). Pick "
            f"another preset ({', '.join('modelopt-' + p for p in sorted(PRESETS))}) or a Brevitas "
            "method such as 'vanilla-ptq'."
        )
    return config.skip
