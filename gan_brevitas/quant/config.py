"""`QuantConfig`: how a generator is quantized, as one validated dataclass.

The defaults are the W8A8 post-training scheme that measured best on the packaged demo
generators and the real-generator suite (benchmarks/default_recipe.py): signed symmetric 8-bit
weights per output channel with MSE-optimal clipping, asymmetric unsigned 8-bit activations
with an integer zero point and MSE-optimal per-tensor ranges, bias correction, and a float
tail (the layers whose result reaches the output only through float ops are not re-quantized
at their output; `gan_brevitas.quant.tail`).
`QuantConfig.paper()` is the paper's scheme (§3.4, §4.1): per-tensor weights from their
0.0001/0.9999 quantiles, activations from the 0.001/0.999 quantiles averaged over samples with
momentum 0.99, no bias correction, every output quantized.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from gan_brevitas.errors import ConfigError
from gan_brevitas.option_checks import check_flags

ActScheme = Literal["asymmetric", "symmetric"]
RangeKind = Literal["minmax", "quantile", "mse"]
WeightRangeKind = Literal["minmax", "quantile", "mse", "auto"]

RANGE_KINDS: tuple[str, ...] = ("minmax", "quantile", "mse")
#: weight_range also takes "auto": per layer, the kind of least layer-output error.
WEIGHT_RANGE_KINDS: tuple[str, ...] = RANGE_KINDS + ("auto",)
#: The fields a per-layer entry of ``QuantConfig.layers`` may set.
LAYER_FIELDS: tuple[str, ...] = ("weight_bits", "weight_range", "weight_quantiles", "per_channel")
WeightScaling = Literal["stats", "learned"]

#: Methods that round weights onto a grid that must not move while they do (AR-BRECQ, GPTQ and
#: its Qronos variant): they cannot run with step sizes recomputed from the weights.
FIXED_GRID_METHODS: frozenset[str] = frozenset({"ar-brecq", "gptq", "qronos"})
#: Methods that need the weight step sizes as stored (learned) parameters: the fixed-grid
#: methods, LSQ-QAT (defined by learned step sizes) and bound distillation (learns them; the
#: weights stay fixed). They set ``weight_scaling="learned"`` themselves.
LEARNED_WEIGHT_STEP_METHODS: frozenset[str] = FIXED_GRID_METHODS | {"lsq-qat", "bound-distill"}
MIN_BITS = 2
MAX_BITS = 8

#: The quantile pairs the paper examines (§4.1), as (low, high).
PAPER_QUANTILE_PAIRS: tuple[tuple[float, float], ...] = (
    (0.0, 1.0),
    (0.0001, 0.9999),
    (0.001, 0.999),
    (0.01, 0.99),
)


def _check_bits(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be an integer number of bits, got {value!r}.")
    if not MIN_BITS <= value <= MAX_BITS:
        raise ConfigError(
            f"{name}={value} is outside the supported range {MIN_BITS}..{MAX_BITS}: "
            f"use e.g. {name}=8 or {name}=4."
        )


def _check_quantiles(name: str, value: Any) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"{name} must be a (low, high) pair of quantiles such as (0.001, 0.999), got {value!r}."
        ) from None
    if not (math.isfinite(low) and math.isfinite(high)) or not (0.0 <= low <= 1.0 and 0.0 <= high <= 1.0):
        raise ConfigError(f"{name}={value!r}: both quantiles must lie in [0, 1], e.g. (0.001, 0.999).")
    if low >= high:
        raise ConfigError(
            f"{name}={value!r}: the low quantile must be below the high one, e.g. (0.001, 0.999)."
        )
    return low, high


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name}={value!r} is not one of {', '.join(map(repr, choices))}.")


@dataclass(frozen=True)
class QuantConfig:
    """How a generator is quantized. Validated on construction; JSON round-trippable.

    Attributes:
        weight_bits: bits of the signed symmetric weight grid, t in [-2^(n-1), 2^(n-1)-1].
        per_channel: one weight scale per output channel instead of one per tensor.
        act_bits: bits of every activation quantizer.
        act_scheme: "asymmetric" (unsigned with an integer zero point, the paper's choice) or
            "symmetric" (signed, zero point 0: the only form TensorRT runs).
        act_range: "minmax" or "quantile" statistics for activation ranges, or "mse": the
            per-tensor range minimising the quantization error over a histogram of all
            calibration activations.
        act_quantiles: (low, high) activation quantiles used when act_range is "quantile".
        weight_range: "minmax" or "quantile" statistics for weight ranges, or "mse": the
            clipping of the min-max step minimising ``||W - Q(W)||^2`` (per channel when
            per_channel), or "auto": per layer, whichever of the three gives the least
            layer-output error on the calibration inputs (vanilla PTQ writes its choice into
            ``layers``; a layer without an entry uses "mse").
        weight_quantiles: (low, high) weight quantiles used when weight_range is "quantile".
        quantile_momentum: weight of the OLD value in the moving average of per-sample
            activation quantiles (the paper: 0.99).
        weight_scaling: "stats" (scale recomputed from the weights) or "learned" (an LSQ
            parameter initialised from those statistics).
        quantize_bias: quantize biases to int32 with scale = input scale x weight scale, as the
            integer kernels of ONNX Runtime and TensorRT do.
        bias_correction: after calibration, subtract from each layer's bias the mean shift
            of its output that quantization causes (per output channel, layers in network
            order, earlier ones already quantized and corrected).
        layers: per-layer settings, ``{"name or fnmatch pattern": {"weight_bits": 4, ...}}``
            or a list of such (pattern, settings) pairs (fields in `LAYER_FIELDS`); entries
            that match a layer apply in order. Mixed
            precision and weight_range="auto" write their choices here, so they are saved.
        quantize_tail: also quantize the outputs that reach the model output only through
            float operations (the last conv before a float Tanh or the image, see
            `gan_brevitas.quant.tail`). False (default): those layers run from int8 inputs
            and weights and hand their result on in float (OpenVINO runs them as int8
            kernels with a float output; the ONNX Runtime export as an int8 ConvInteger,
            which for a narrow full-resolution conv is no faster than float); True quantizes
            them too (ONNX Runtime's faster QLinearConv, a little lower quality). The paper's
            scheme quantizes them.
        skip: layers kept in float: fnmatch patterns of module names ("model.26") or class
            names ("ConvTranspose2d").
    """

    weight_bits: int = 8
    per_channel: bool = True
    act_bits: int = 8
    act_scheme: ActScheme = "asymmetric"
    act_range: RangeKind = "mse"
    act_quantiles: tuple[float, float] = (0.001, 0.999)
    weight_range: WeightRangeKind = "mse"
    weight_quantiles: tuple[float, float] = (0.0001, 0.9999)
    quantile_momentum: float = 0.99
    weight_scaling: WeightScaling = "stats"
    quantize_bias: bool = True
    bias_correction: bool = True
    quantize_tail: bool = False
    skip: tuple[str, ...] = field(default_factory=tuple)
    layers: Any = field(default_factory=tuple)

    def __post_init__(self) -> None:
        _check_bits("weight_bits", self.weight_bits)
        _check_bits("act_bits", self.act_bits)
        _check_choice("act_scheme", self.act_scheme, ("asymmetric", "symmetric"))
        _check_choice("act_range", self.act_range, RANGE_KINDS)
        _check_choice("weight_range", self.weight_range, WEIGHT_RANGE_KINDS)
        _check_choice("weight_scaling", self.weight_scaling, ("stats", "learned"))
        object.__setattr__(self, "act_quantiles", _check_quantiles("act_quantiles", self.act_quantiles))
        object.__setattr__(
            self, "weight_quantiles", _check_quantiles("weight_quantiles", self.weight_quantiles)
        )
        momentum = self.quantile_momentum
        if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) or not 0.0 <= momentum < 1.0:
            raise ConfigError(
                f"quantile_momentum={momentum!r} must be in [0, 1): the paper uses 0.99."
            )
        check_flags(self, "per_channel", "quantize_bias", "bias_correction", "quantize_tail")
        if isinstance(self.skip, str) or not isinstance(self.skip, (list, tuple)) or not all(
            isinstance(s, str) for s in self.skip
        ):
            raise ConfigError(
                f"skip must be a list of module-name patterns or class names, got {self.skip!r}."
            )
        object.__setattr__(self, "skip", tuple(self.skip))
        object.__setattr__(self, "layers", self._checked_layers(self.layers))

    def _checked_layers(self, layers: Any) -> tuple[tuple[str, tuple[tuple[str, Any], ...]], ...]:
        """``layers`` as a hashable tuple of (pattern, ((field, validated value), ...))."""
        items = layers.items() if isinstance(layers, dict) else layers
        try:
            entries = [(pattern, dict(values)) for pattern, values in items]
        except (TypeError, ValueError):
            raise ConfigError(
                f"layers must map layer names to settings, e.g. {{'net.0': {{'weight_bits': 4}}}}, got {layers!r}."
            ) from None
        checked = []
        for pattern, values in entries:
            if not isinstance(pattern, str):
                raise ConfigError(f"layers: {pattern!r} is not a layer name or pattern.")
            unknown = sorted(set(values) - set(LAYER_FIELDS))
            if unknown:
                raise ConfigError(
                    f"layers[{pattern!r}]: {unknown} cannot be set per layer; the per-layer fields are {list(LAYER_FIELDS)}."
                )
            try:
                resolved = dataclasses.replace(self, layers=(), **values)
            except ConfigError as err:
                raise ConfigError(f"layers[{pattern!r}]: {err}") from None
            checked.append((pattern, tuple((key, getattr(resolved, key)) for key in sorted(values))))
        return tuple(checked)

    def for_layer(self, name: str) -> "QuantConfig":
        """The config of layer ``name``: this one with the matching ``layers`` entries applied."""
        changes: dict[str, Any] = {}
        for pattern, values in self.layers:
            if fnmatch.fnmatchcase(name, pattern):
                changes.update(values)
        return dataclasses.replace(self, layers=(), **changes)

    @classmethod
    def paper(cls, **changes: Any) -> "QuantConfig":
        """The paper's scheme (§3.4, §4.1): per-tensor 8-bit weights from their 0.0001/0.9999
        quantiles, asymmetric 8-bit activations from the momentum-0.99 average of per-sample
        0.001/0.999 quantiles, no bias correction; ``changes`` replace fields."""
        paper = cls(
            weight_bits=8, per_channel=False, act_bits=8, act_scheme="asymmetric",
            act_range="quantile", act_quantiles=(0.001, 0.999), weight_range="quantile",
            weight_quantiles=(0.0001, 0.9999), quantile_momentum=0.99, weight_scaling="stats",
            quantize_bias=True, bias_correction=False, quantize_tail=True,
        )
        return paper.replace(**changes) if changes else paper

    @property
    def effective_act_quantiles(self) -> tuple[float, float]:
        """The activation quantile pair the EMA statistic uses: (0, 1) for min-max (and mse,
        whose search starts from the full range)."""
        return self.act_quantiles if self.act_range == "quantile" else (0.0, 1.0)

    @property
    def effective_weight_quantiles(self) -> tuple[float, float]:
        """The weight quantile pair used: (0, 1) for min-max (and mse, searched from there)."""
        return self.weight_quantiles if self.weight_range == "quantile" else (0.0, 1.0)

    def replace(self, **changes: Any) -> "QuantConfig":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for key in ("act_quantiles", "weight_quantiles", "skip"):
            data[key] = list(data[key])
        # a list of [pattern, settings] pairs: their order matters and JSON keeps it
        data["layers"] = [
            [pattern, {key: list(value) if isinstance(value, tuple) else value for key, value in values}]
            for pattern, values in self.layers
        ]
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "QuantConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"unknown QuantConfig key(s) {unknown}; valid keys are {sorted(known)}."
            )
        values = dict(data)
        for key in ("act_quantiles", "weight_quantiles", "skip"):
            if key in values and isinstance(values[key], list):
                values[key] = tuple(values[key])
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> "QuantConfig":
        try:
            data = json.loads(text)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"a QuantConfig must be a JSON object; this text is not JSON ({err}).") from None
        if not isinstance(data, dict):
            raise ConfigError(f"a QuantConfig must be a JSON object of fields, got {type(data).__name__}.")
        return cls.from_dict(data)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> "QuantConfig":
        """A QuantConfig from a JSON file; ConfigError naming the file for any problem."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            reason = getattr(err, "strerror", None) or err
            raise ConfigError(f"cannot read the config file {path}: {reason}; give a JSON file of QuantConfig fields.") from None
        try:
            return cls.from_json(text)
        except ConfigError as err:
            raise ConfigError(f"config file {path}: {err}") from None
