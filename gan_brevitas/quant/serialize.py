"""Saving and loading quantized generators: one safetensors file.

The file holds the quantized state_dict (weights, biases, activation scales and zero points,
learned weight scales) and, in its metadata, the `QuantConfig`, the method that produced it
and the generator architecture (name + constructor arguments) when it is one of ours. Loading
rebuilds the float architecture, folds and converts it with the same config, and loads the
state strictly, so outputs are bit-identical. Nothing is unpickled, and nothing is trusted
before `gan_brevitas.quant.file_schema` has checked it (schema, size bounds, dtypes, finite
positive scales, content hash).
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

from gan_brevitas.atomic_files import atomic_write, check_output_path
from gan_brevitas.errors import CheckpointError, ConfigError
from gan_brevitas.quant.file_schema import (
    FIX,
    FORMAT,
    HASH_KEY,
    build_bounded,
    check_hash,
    check_tensors,
    content_sha256,
    parse_metadata,
    tensor_bytes,
)
from gan_brevitas.quant.config import QuantConfig
from gan_brevitas.quant.convert import fold_for_quantization, quantize_model



@dataclass(frozen=True)
class QuantInfo:
    """What produced a quantized model; attached to it as ``model.gan_brevitas``."""

    method: str
    config: QuantConfig
    generator: Optional[dict[str, Any]] = None  # {"name": ..., "kwargs": {...}} for our generators
    input_shape: Optional[tuple[int, ...]] = None  # one calibration input, no batch axis (export uses it)

    def to_metadata(self, state: dict[str, Any]) -> dict[str, str]:
        """The file's metadata, with the content hash over it and ``state``."""
        fields = {
            "format": FORMAT,
            "method": self.method,
            "config": self.config.to_json(),
            "generator": json.dumps(self.generator),
            "input_shape": json.dumps(None if self.input_shape is None else list(self.input_shape)),
        }
        return {**fields, HASH_KEY: content_sha256(fields, state)}

    @classmethod
    def from_metadata(cls, metadata: dict[str, str], path: Path) -> "QuantInfo":
        values = parse_metadata(metadata, path)
        try:
            # files written before `quantize_tail` existed quantized the tail
            config = QuantConfig.from_dict({"quantize_tail": True, **values["config"]})
        except (ConfigError, TypeError) as err:
            raise CheckpointError(f"{path}: its QuantConfig metadata is invalid ({err}); {FIX}.") from None
        return cls(
            method=values["method"],
            config=config,
            generator=values["generator"],
            input_shape=_input_shape(metadata.get("input_shape"), path),
        )


def _input_shape(text: Optional[str], path: Path) -> Optional[tuple[int, ...]]:
    """The recorded input shape (files written before it was recorded have none)."""
    try:
        shape = json.loads(text) if text else None
    except ValueError:
        raise CheckpointError(f"{path}: metadata 'input_shape' is not valid JSON ({text[:80]!r}); {FIX}.") from None
    if shape is None:
        return None
    if not (isinstance(shape, list) and shape and all(isinstance(s, int) and s > 0 for s in shape)):
        raise CheckpointError(f"{path}: metadata 'input_shape' must be a list of positive integers, got {shape!r}.")
    return tuple(shape)


def save_quantized(qmodel: nn.Module, path: str | os.PathLike) -> Path:
    """Write ``qmodel`` (made by `recipes.quantize`) to ``path`` atomically."""
    info = getattr(qmodel, "gan_brevitas", None)
    if not isinstance(info, QuantInfo):
        raise CheckpointError(
            "this model carries no quantization record: save models returned by recipes.quantize."
        )
    path = check_output_path(path)  # the directory must exist: a typo is not silently created
    state = {k: v.detach().contiguous().clone() for k, v in qmodel.state_dict().items()}
    metadata = info.to_metadata(state)
    return atomic_write(path, lambda temporary: save_file(state, temporary, metadata=metadata))


def _read_header(path: Path) -> tuple[dict[str, str], int]:
    """The metadata and the total tensor bytes of a safetensors file (no tensor is read)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            shapes = {k: (tuple(handle.get_slice(k).get_shape()), handle.get_slice(k).get_dtype())
                      for k in handle.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path} is not a readable safetensors file: {err}") from None
    return metadata, tensor_bytes(shapes)


def read_quant_info(path: str | os.PathLike) -> QuantInfo:
    """The metadata of a saved quantized generator, checked, without building it."""
    path = Path(path)
    metadata, _ = _read_header(path)
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
    metadata, file_bytes = _read_header(path)
    info = QuantInfo.from_metadata(metadata, path)
    if model is None:
        if info.generator is None:
            raise CheckpointError(
                f"{path} holds a user generator: pass its float architecture, "
                "load_quantized(path, model=MyGenerator())."
            )
        model = build_bounded(info.generator["name"], info.generator["kwargs"], file_bytes, path)
    qmodel = quantize_model(fold_for_quantization(model), info.config)
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path} is not a readable safetensors file: {err}") from None
    check_hash(metadata, parse_metadata(metadata, path)[HASH_KEY], state, path)
    expected = _full_state_dict(qmodel)
    _check_matches(expected, state, path)
    check_tensors(expected, state, path)
    qmodel.load_state_dict(state, strict=True)
    qmodel.gan_brevitas = info
    return qmodel.eval()
