"""Finished rows on disk: one JSON record per row, and its sample images, written atomically.

A row's key is a hash of everything its numbers depend on: the profile, the row's resolved
config (model, method, QuantConfig, method options, evaluation settings), the model's content
hashes and the feature extractor. An edited recipe, another profile, a retrained checkpoint or
another extractor therefore gets a new key and runs again; anything else is found and skipped.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save

from gan_brevitas.atomic_files import atomic_write_bytes

log = logging.getLogger(__name__)

FORMAT = "gan-brevitas/reproduce-row/1"
KEY_LENGTH = 20


def row_key(parts: Mapping[str, Any]) -> str:
    """A short sha256 of ``parts`` as canonical JSON (sorted keys)."""
    text = json.dumps({"format": FORMAT, **parts}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:KEY_LENGTH]


class RowCache:
    """``<key>.json`` (the record) and ``<key>.safetensors`` (samples) in one directory.

    The samples are written first and the record last, so a record on disk always has its
    samples: an interrupted row leaves no record and runs again.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def _record_path(self, key: str) -> Path:
        return self.directory / f"{key}.json"

    def _samples_path(self, key: str) -> Path:
        return self.directory / f"{key}.safetensors"

    def load(self, key: str) -> dict[str, Any] | None:
        """The record of a finished row, or None (also for an unreadable one, which then reruns)."""
        path = self._record_path(key)
        if not path.is_file():
            return None
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            log.warning("ignoring unreadable cached row %s (%s): it runs again", path, err)
            return None
        if record.get("format") != FORMAT or record.get("key") != key:
            log.warning("ignoring cached row %s written in another format: it runs again", path)
            return None
        return record

    def store(self, key: str, record: Mapping[str, Any], samples: Mapping[str, torch.Tensor]) -> dict[str, Any]:
        """Write a finished row; returns the record as stored."""
        self.directory.mkdir(parents=True, exist_ok=True)
        tensors = {name: tensor.detach().to("cpu").contiguous() for name, tensor in samples.items()}
        atomic_write_bytes(self._samples_path(key), save(tensors))
        stored = {"format": FORMAT, "key": key, **record}
        atomic_write_bytes(self._record_path(key), (json.dumps(stored, indent=2, sort_keys=True) + "\n").encode())
        return stored

    def samples(self, key: str) -> dict[str, torch.Tensor]:
        """The sample images of a finished row ("images"; "inputs" for image-to-image models)."""
        path = self._samples_path(key)
        return load_file(path) if path.is_file() else {}
