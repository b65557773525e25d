"""Run directory of a QAT run: fingerprint, atomic per-epoch checkpoint, RNG states, log.

A run directory holds

* ``run.json``: the run fingerprint, i.e. what decides the trained weights (training options,
  QuantConfig, float generator, distillation inputs, initial discriminator, VGG weights), each
  part hashed separately so a mismatch names what changed;
* ``checkpoint.pt``: after every epoch, the quantized model (weights and quantizer
  parameters), the discriminator, optimisers, scheduler, moving-average range statistics,
  every process's RNG states, the epoch and the history; written to a temporary file and
  renamed, so a crash never leaves half a checkpoint. Read with ``weights_only=True``;
* ``log.jsonl``: one JSON line per epoch (losses, learning rates, PSNR, qFID).
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from pathlib import Path
from typing import Any, Iterable, Optional

import numpy as np
import torch
from torch import Tensor

from gan_brevitas.atomic_files import atomic_write_bytes, remove_stale_temporaries
from gan_brevitas.errors import CheckpointError

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"
RUN_NAME = "run.json"
LOG_NAME = "log.jsonl"
FORMAT = "gan-brevitas/qat-checkpoint/1"


def tensor_sha256(tensors: Iterable[tuple[str, Tensor]]) -> str:
    """sha256 over (name, dtype, shape, bytes) of named tensors: a content fingerprint."""
    digest = hashlib.sha256()
    for name, tensor in tensors:
        data = tensor.detach().to("cpu").contiguous()
        if data.dtype == torch.bfloat16:
            data = data.float()
        digest.update(f"{name}|{data.dtype}|{tuple(data.shape)}|".encode())
        digest.update(data.numpy().tobytes())
    return digest.hexdigest()


def module_sha256(module: torch.nn.Module) -> str:
    """Content fingerprint of a module's state dict (sorted by name)."""
    return tensor_sha256(sorted(module.state_dict().items()))


def json_sha256(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def check_run_dir(out_dir: Path, fingerprint: dict[str, str], resume: bool) -> bool:
    """Decide whether a run starts fresh or resumes; raise before anything is overwritten.

    Returns True when a checkpoint exists and matches (resume). Raises CheckpointError when
    ``out_dir`` holds a checkpoint and ``resume`` is False, or one with another fingerprint.
    A run record without a checkpoint (a run that stopped before its first epoch ended, e.g.
    on a bad option) is started afresh, so a retry after a typo is not refused.
    """
    run_file, checkpoint = out_dir / RUN_NAME, out_dir / CHECKPOINT_NAME
    for stale in remove_stale_temporaries(out_dir, (RUN_NAME, CHECKPOINT_NAME, LOG_NAME)):
        log.info("removed %s, left by a run that was killed mid-write", stale)
    if not checkpoint.exists():
        # No epoch was saved (a run that stopped during setup): nothing would be lost.
        if resume or run_file.exists():
            log.info("%s holds no checkpoint yet: starting a new run there.", out_dir)
        return False
    if not resume:
        raise CheckpointError(
            f"{out_dir} already holds a QAT run: pass resume=True (CLI: --set resume=true) to "
            "continue it, or choose another out_dir. Nothing was overwritten."
        )
    try:
        saved = json.loads(run_file.read_text())["fingerprint"]
    except (OSError, ValueError, KeyError) as err:
        raise CheckpointError(f"cannot read the run record {run_file}: {err}") from None
    changed = sorted(k for k in set(saved) | set(fingerprint) if saved.get(k) != fingerprint.get(k))
    if changed:
        raise CheckpointError(
            f"{out_dir} holds a run with a different configuration ({', '.join(changed)} "
            "changed): resume it with the same generator, inputs, QuantConfig and options, or "
            "start a new run in another out_dir. Nothing was overwritten."
        )
    return checkpoint.exists()


def write_run_record(out_dir: Path, fingerprint: dict[str, str], details: dict[str, Any]) -> None:
    record = {"format": FORMAT, "fingerprint": fingerprint, **details}
    atomic_write_bytes(out_dir / RUN_NAME, json.dumps(record, indent=2, sort_keys=True).encode())


# --------------------------------------------------------------------------- RNG


def rng_state() -> dict[str, Any]:
    """This process's RNG states as tensors and plain values (loadable with weights_only)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# --------------------------------------------------------------------------- checkpoint


def save_checkpoint(out_dir: Path, state: dict[str, Any]) -> Path:
    """Atomically write the per-epoch checkpoint."""
    import io

    buffer = io.BytesIO()
    torch.save({"format": FORMAT, **state}, buffer)
    path = out_dir / CHECKPOINT_NAME
    atomic_write_bytes(path, buffer.getvalue())
    return path


def load_checkpoint(out_dir: Path, map_location: Optional[str | torch.device] = "cpu") -> dict[str, Any]:
    path = out_dir / CHECKPOINT_NAME
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - unreadable for any reason: one clear error
        raise CheckpointError(f"cannot read the QAT checkpoint {path}: {err}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a gan-brevitas QAT checkpoint ({FORMAT}).")
    return state


def write_log(out_dir: Path, history: list[dict[str, Any]]) -> None:
    """Rewrite ``log.jsonl`` from the history (so it always agrees with the checkpoint)."""
    text = "".join(json.dumps(record, sort_keys=True) + "\n" for record in history)
    atomic_write_bytes(out_dir / LOG_NAME, text.encode())
