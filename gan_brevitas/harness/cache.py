"""Finished runs on disk: one JSON record per run and its sample images, written atomically.

A run's key is a sha256 of everything its numbers depend on (the run's config plus the
caller's context: model content hashes, feature extractor, code). A changed input gets a new
key and runs again; anything else is found and skipped.
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
from gan_brevitas.harness.writer import strict_json

log = logging.getLogger(__name__)

KEY_LENGTH = 20


def run_key(parts: Mapping[str, Any], format: str) -> str:
    """A short sha256 of ``parts`` (JSON data) and the record ``format``, as canonical JSON."""
    text = json.dumps({"format": format, **parts}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:KEY_LENGTH]


class RunCache:
    """``<key>.json`` (the record) and ``<key>.safetensors`` (samples) in one directory.

    The samples are written first and the record last, so a record on disk always has its
    samples: an interrupted run leaves no record and runs again. A record written in another
    ``format`` (or unreadable) is ignored: its run runs again.
    """

    def __init__(self, directory: Path, format: str) -> None:
        self.directory = Path(directory)
        self.format = format

    def key(self, parts: Mapping[str, Any]) -> str:
        return run_key(parts, self.format)

    def _record_path(self, key: str) -> Path:
        return self.directory / f"{key}.json"

    def _samples_path(self, key: str) -> Path:
        return self.directory / f"{key}.safetensors"

    def load(self, key: str) -> dict[str, Any] | None:
        """The record of a finished run, or None."""
        path = self._record_path(key)
        if not path.is_file():
            return None
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            log.warning("ignoring unreadable cached run %s (%s): it runs again", path, err)
            return None
        if record.get("format") != self.format or record.get("key") != key:
            log.warning("ignoring cached run %s written in another format: it runs again", path)
            return None
        return record

    def store(self, key: str, record: Mapping[str, Any], samples: Mapping[str, torch.Tensor]) -> dict[str, Any]:
        """Write a finished run; returns the record as stored (strict JSON: NaN / Infinity as
        None, tuples as lists), which is what a later `load` returns."""
        self.directory.mkdir(parents=True, exist_ok=True)
        tensors = {name: tensor.detach().to("cpu").contiguous() for name, tensor in samples.items()}
        atomic_write_bytes(self._samples_path(key), save(tensors))
        stored = strict_json({"format": self.format, "key": key, **record})
        text = json.dumps(stored, indent=2, sort_keys=True, allow_nan=False) + "\n"
        atomic_write_bytes(self._record_path(key), text.encode())
        return stored

    def samples(self, key: str) -> dict[str, torch.Tensor]:
        """The sample images of a finished run ("images"; "inputs" for image-to-image models)."""
        path = self._samples_path(key)
        return load_file(path) if path.is_file() else {}


def package_fingerprint() -> str:
    """A sha256 over the package's own files (code, packaged checkpoints, extractor weights):
    a key part for runs that must rerun whenever the package changes."""
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:KEY_LENGTH]
