"""Saving and loading quantized generators: one safetensors file.

The file holds the quantized state_dict (weights, biases, activation scales and zero points,
learned weight scales) and, in its metadata, the `QuantConfig`, the method that produced it
and the generator architecture (name + constructor arguments) when it is one of ours. Loading
rebuilds the float architecture, folds and converts it with the same config, and loads the
state strictly, so outputs are bit-identical. Nothing is unpickled.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from gan_brevitas.atomic_files import atomic_write
from gan_brevitas.errors import CheckpointError
from gan_brevitas.models import build_generator
from gan_brevitas.quant.config import QuantConfig
from gan_brevitas.quant.convert import fold_for_quantization, quantize_model

FORMAT = "gan-brevitas/quantized-generator/1"


@dataclass(frozen=True)
class QuantInfo:
    """What produced a quantized model; attached to it as ``model.gan_brevitas``."""

    method: str
    config: QuantConfig
    generator: Optional[dict[str, Any]] = None  # {"name": ..., "kwargs": {...}} for our generators
    input_shape: Optional[tuple[int, ...]] = None  # one calibration input, no batch axis (export uses it)

    def to_metadata(self) -> dict[str, str]:
        return {
            "format": FORMAT,
            "method": self.method,
            "config": self.config.to_json(),
            "generator": json.dumps(self.generator),
            "input_shape": json.dumps(None if self.input_shape is None else list(self.input_shape)),
        }

    @classmethod
    def from_metadata(cls, metadata: dict[str, str], path: Path) -> "QuantInfo":
        if metadata.get("format") != FORMAT:
            raise CheckpointError(
                f"{path} is a safetensors file but not a gan-brevitas quantized generator "
                f"(format {metadata.get('format')!r}, expected {FORMAT!r})."
            )
        return cls(
            method=metadata["method"],
            config=QuantConfig.from_json(metadata["config"]),
            generator=json.loads(metadata["generator"]),
            input_shape=_input_shape(metadata.get("input_shape"), path),
        )


def _input_shape(text: Optional[str], path: Path) -> Optional[tuple[int, ...]]:
    """The recorded input shape (files written before it was recorded have none)."""
    shape = json.loads(text) if text else None
    if shape is None:
        return None
    if not (isinstance(shape, list) and shape and all(isinstance(s, int) and s > 0 for s in shape)):
        raise CheckpointError(f"{path}: metadata 'input_shape' must be a list of positive integers, got {shape!r}.")
    return tuple(shape)


def check_output_path(path: str | os.PathLike) -> Path:
    """The output path as a Path; CheckpointError if its directory does not exist."""
    path = Path(path)
    if not path.parent.exists():
        raise CheckpointError(
            f"cannot write {path}: directory {path.parent} does not exist; create it first."
        )
    return path


def save_quantized(qmodel: nn.Module, path: str | os.PathLike) -> Path:
    """Write ``qmodel`` (made by `recipes.quantize`) to ``path`` atomically."""
    from gan_brevitas.plugins import is_modelopt_model

    if is_modelopt_model(qmodel):
        raise CheckpointError(
            "this model was quantized by ModelOpt: save it with modelopt.torch.opt.save(qmodel, path) "
            "and restore it with modelopt.torch.opt.restore(fold_for_quantization(float_model), path)."
        )
    info = getattr(qmodel, "gan_brevitas", None)
    if not isinstance(info, QuantInfo):
        raise CheckpointError(
            "this model carries no quantization record: save models returned by recipes.quantize."
        )
    path = check_output_path(path)
    state = {k: v.detach().contiguous().clone() for k, v in qmodel.state_dict().items()}
    atomic_write(path, lambda temporary: save_file(state, temporary, metadata=info.to_metadata()))
    return path


def read_quant_info(path: str | os.PathLike) -> QuantInfo:
    """The metadata of a saved quantized generator, without building it."""
    from safetensors import safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path} is not a readable safetensors file: {err}") from None
    return QuantInfo.from_metadata(metadata, path)


def _full_state_dict(model: nn.Module) -> dict[str, Any]:
    """The state_dict with every Brevitas parameter, initialised or not.

    A fresh model's learned weight scales (weight_scaling="learned") are left out of its
    state_dict until their first forward; the saved file has them.
    """
    import brevitas.config

    previous = brevitas.config._FULL_STATE_DICT
    brevitas.config._FULL_STATE_DICT = True
    try:
        return model.state_dict()
    finally:
        brevitas.config._FULL_STATE_DICT = previous


def _check_matches(expected: dict[str, Any], found: dict[str, Any], path: Path) -> None:
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    wrong_shape = sorted(
        f"{k} {tuple(found[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in set(expected) & set(found)
        if found[k].shape != expected[k].shape
    )
    if missing or unexpected or wrong_shape:
        raise CheckpointError(
            f"{path} does not match the architecture: missing keys {missing[:10]} ({len(missing)}), "
            f"unexpected keys {unexpected[:10]} ({len(unexpected)}), wrong shapes {wrong_shape[:10]} "
            f"({len(wrong_shape)}). Pass the same float architecture that was quantized."
        )


def load_quantized(path: str | os.PathLike, model: Optional[nn.Module] = None) -> nn.Module:
    """Rebuild a quantized generator saved by `save_quantized`.

    ``model`` is the float architecture for user generators (any weights: they are replaced);
    our generators are rebuilt from the file's record.
    """
    path = Path(path)
    info = read_quant_info(path)
    if model is None:
        if info.generator is None:
            raise CheckpointError(
                f"{path} holds a user generator: pass its float architecture, "
                "load_quantized(path, model=MyGenerator())."
            )
        model = build_generator(info.generator["name"], **info.generator["kwargs"])
    qmodel = quantize_model(fold_for_quantization(model), info.config)
    state = load_file(str(path))
    _check_matches(_full_state_dict(qmodel), state, path)
    qmodel.load_state_dict(state, strict=True)
    qmodel.gan_brevitas = info
    return qmodel.eval()
