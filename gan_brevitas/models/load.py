"""Read generator checkpoints safely and load them strictly into our modules.

Files are read with ``torch.load(..., weights_only=True)`` (or safetensors): a file that
needs arbitrary code to unpickle is refused, never executed. Accepted contents:

* a bare state_dict (name -> tensor): SAGAN ``{step}_G.pth``, CycleGAN ``latest_net_G.pth``,
  StyleGAN ``NNNNNN.model``;
* rosinality's ``train_step-N.model`` dict, whose ``g_running`` entry is the generator;
* either of them saved from ``nn.DataParallel`` (keys prefixed ``module.``).

Loading is strict. The only keys dropped are stale InstanceNorm ``running_mean`` /
``running_var`` / ``num_batches_tracked`` entries that old CycleGAN files carry for norms that
track no statistics.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import Tensor, nn

from gan_brevitas.errors import CheckpointError, GanBrevitasError
from gan_brevitas.models.registry import ARCHITECTURES, GENERATORS, architecture, build_generator, weight_bytes

logger = logging.getLogger(__name__)

#: Entry of a training checkpoint dict that holds the generator to use (StyleGAN's EMA copy).
GENERATOR_ENTRIES = ("g_running",)
DATA_PARALLEL_PREFIX = "module."
STALE_NORM_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")
MAX_KEYS_SHOWN = 10

# --------------------------------------------------------------------------- reading


def _read_file(path: Path) -> object:
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path), device="cpu")
        except Exception as err:  # safetensors raises its own error types
            raise CheckpointError(
                f"{path} could not be read as a safetensors file ({err}); is it a .safetensors "
                "file written by safetensors?"
            ) from err
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes): the file was not written completely; save it again.")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch.load raises UnpicklingError, KeyError, EOFError, ...
        raise CheckpointError(f"{path}: {_torch_load_problem(err, path)}") from err


def _torch_load_problem(err: Exception, path: Path) -> str:
    """What is wrong with a file that torch.load(weights_only=True) refused, in the file's terms."""
    text = str(err)
    with path.open("rb") as handle:
        zipped = handle.read(2) == b"PK"  # torch.save's format is a zip archive
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if found:
        return (f"it holds a pickled Python object ({found.group(1)}) that would run code to load, which "
                "we refuse. Re-save only the weights from trusted code: torch.save(generator.state_dict(), path).")
    if isinstance(err, EOFError) or "EOF" in text or (zipped and "central directory" in text):
        return "the file ends early (truncated or still being written); copy or save it again."
    if not zipped and (isinstance(err, KeyError) or "invalid load key" in text or "magic number" in text):
        return ("this is not a PyTorch checkpoint (neither torch.save's zip format nor a legacy pickle); "
                "give the generator's .pth/.pt/.model file or a .safetensors file.")
    return (f"not a PyTorch checkpoint of tensors that can be read safely ({type(err).__name__}: "
            f"{text.splitlines()[0][:200] if text else 'no detail'}). Re-save generator.state_dict() from trusted code.")


def _select_state_dict(content: object, path: Path) -> Mapping[str, object]:
    if not isinstance(content, Mapping):
        raise CheckpointError(
            f"{path} holds a {type(content).__name__}, not a state_dict; save "
            "generator.state_dict() (a dict of name -> tensor)"
        )
    for entry in GENERATOR_ENTRIES:
        if entry in content:
            selected = content[entry]
            if not isinstance(selected, Mapping):
                raise CheckpointError(f"{path}: entry {entry!r} is not a state_dict")
            return selected
    return content


def strip_prefix(state: Mapping[str, Tensor], prefix: str = DATA_PARALLEL_PREFIX) -> dict[str, Tensor]:
    """Remove ``prefix`` from every key when all keys carry it (DataParallel checkpoints)."""
    if state and all(key.startswith(prefix) for key in state):
        return {key[len(prefix) :]: value for key, value in state.items()}
    return dict(state)


def load_state_dict_file(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """Read a checkpoint file and return the generator's state_dict (name -> tensor, on CPU).

    Handles bare state_dicts, ``train_step`` dicts (their ``g_running`` entry) and
    DataParallel ``module.`` prefixes. Raises CheckpointError naming the file when it is
    missing, cannot be read safely, or does not hold a state_dict.
    """
    file = Path(path)
    if not file.is_file():
        raise CheckpointError(f"checkpoint file {file} does not exist (or is not a file)")
    state = _select_state_dict(_read_file(file), file)
    bad = [key for key, value in state.items() if not isinstance(key, str) or not isinstance(value, Tensor)]
    if bad:
        shown = ", ".join(repr(key) for key in bad[:MAX_KEYS_SHOWN])
        raise CheckpointError(
            f"{file} is not a state_dict: {len(bad)} entries are not name -> tensor ({shown}); "
            f"expected generator.state_dict() or a dict with one of {GENERATOR_ENTRIES}"
        )
    return strip_prefix(state)  # type: ignore[arg-type]


def drop_stale_instance_norm_keys(state: Mapping[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """Drop running-statistics keys of InstanceNorms in ``model`` that track no statistics.

    Old CycleGAN files carry them; PyTorch >= 0.4 InstanceNorms without tracking have no
    such buffers. Keys of any other module are kept (a strict load then reports them).
    """
    kept: dict[str, Tensor] = {}
    dropped: list[str] = []
    for key, value in state.items():
        owner, _, leaf = key.rpartition(".")
        if leaf in STALE_NORM_SUFFIXES and _is_untracked_instance_norm(model, owner):
            dropped.append(key)
        else:
            kept[key] = value
    if dropped:
        logger.info("dropped %d stale InstanceNorm keys, e.g. %s", len(dropped), dropped[0])
    return kept


def _is_untracked_instance_norm(model: nn.Module, name: str) -> bool:
    try:
        module = model.get_submodule(name)
    except AttributeError:
        return False
    return isinstance(module, nn.modules.instancenorm._InstanceNorm) and not module.track_running_stats


# --------------------------------------------------------------------------- inference


#: Constructor arguments that choose how a generator runs, not what its file holds.
RUNTIME_KWARGS = frozenset({"noise_mode", "noise_seed"})


def _sidecar_candidates(path: Path) -> list[Path]:
    """``g.json`` beside ``g.pth``; ``stylegan.json`` beside ``stylegan_G.safetensors`` (the demo)."""
    candidates = [path.with_suffix(".json")]
    if path.stem.endswith("_G"):
        candidates.append(path.with_name(path.stem[:-2] + ".json"))
    return candidates


def _spec_from(record: object, path: Path) -> dict[str, Any] | None:
    spec = record.get("generator") if isinstance(record, dict) else None
    if not isinstance(spec, dict):
        return None
    if not isinstance(spec.get("name"), str) or not isinstance(spec.get("kwargs"), dict):
        raise CheckpointError(
            f"{path}: its 'generator' record must be {{\"name\": str, \"kwargs\": {{...}}}}, got {spec!r}."
        )
    return spec


def recorded_spec(path: str | os.PathLike[str]) -> tuple[dict[str, Any], Path] | None:
    """The generator record a checkpoint carries about itself, and where it was found.

    Read from the safetensors metadata entry ``generator`` or from a JSON file beside the
    checkpoint (``g.json`` for ``g.pth``; ``NAME.json`` for ``NAME_G.safetensors``, as the demo
    trainer writes) whose ``generator`` is ``{"name": ..., "kwargs": {...}}``. A JSON that
    names a different generator file (``files.generator.file``) is not this file's record.
    """
    import json

    file = Path(path)
    if file.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(file), framework="pt") as handle:
                text = (handle.metadata() or {}).get("generator")
        except Exception:  # unreadable files are reported by the loader itself
            text = None
        if text:
            try:
                spec = _spec_from({"generator": json.loads(text)}, file)
            except json.JSONDecodeError:
                raise CheckpointError(f"{file}: its 'generator' metadata is not JSON.") from None
            if spec is not None:
                return spec, file
    for sidecar in _sidecar_candidates(file):
        if not sidecar.is_file():
            continue
        try:
            record = json.loads(sidecar.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue  # not a record of ours
        named = record.get("files", {}).get("generator", {}).get("file") if isinstance(record, dict) else None
        if isinstance(named, str) and named != file.name:
            continue
        spec = _spec_from(record, sidecar)
        if spec is not None:
            return spec, sidecar
    return None


def infer_build_kwargs(name: str, state: Mapping[str, Tensor]) -> dict[str, Any]:
    """Constructor arguments of generator ``name`` that the state_dict's shapes reveal.

    Returns only what it can read; missing keys leave the defaults in place (the strict
    load then reports the mismatch).
    """
    return architecture(name).infer_kwargs(state)


def guess_architecture(state: Mapping[str, Tensor]) -> str | None:
    """The architecture whose signature key the state_dict has, if any."""
    for name, family in ARCHITECTURES.items():
        if family.signature_key in state:
            return name
    return None


# --------------------------------------------------------------------------- strict loading


def _shown(keys: list[str]) -> str:
    listed = ", ".join(keys[:MAX_KEYS_SHOWN])
    more = f", ... ({len(keys) - MAX_KEYS_SHOWN} more)" if len(keys) > MAX_KEYS_SHOWN else ""
    return listed + more


def _mismatch_message(
    name: str,
    path: Path,
    kwargs: Mapping[str, Any],
    missing: list[str],
    unexpected: list[str],
    wrong_shape: list[str],
    guessed: str | None,
    conflicts: Mapping[str, tuple[Any, Any]],
) -> str:
    lines = [f"{path} does not match the {name!r} generator built with {dict(kwargs)}:"]
    if missing:
        lines.append(f"  {len(missing)} missing keys (in the model, not in the file): {_shown(missing)}")
    if unexpected:
        lines.append(
            f"  {len(unexpected)} unexpected keys (in the file, not in the model): {_shown(unexpected)}"
        )
    if wrong_shape:
        lines.append(f"  {len(wrong_shape)} shape mismatches (file vs model): {_shown(wrong_shape)}")
    for key, (passed, inferred) in conflicts.items():
        lines.append(f"How to fix: you passed {key}={passed!r} but the file's shapes say {key}={inferred!r}.")
    if guessed is not None and guessed != name:
        lines.append(
            f"How to fix: the keys look like a {guessed!r} checkpoint; load it with name={guessed!r}."
        )
    else:
        lines.append(
            "How to fix: check the model name (one of "
            f"{sorted(GENERATORS)}) and the size/width arguments (pass the ones the checkpoint "
            "was trained with, or leave them out so they are read off the file); a renamed key "
            "means the file comes from a different implementation or was edited."
        )
    return "\n".join(lines)


def _compare(model: nn.Module, state: Mapping[str, Tensor]) -> tuple[list[str], list[str], list[str]]:
    expected = model.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    wrong_shape = [
        f"{key} {list(state[key].shape)} vs {list(expected[key].shape)}"
        for key in expected
        if key in state and state[key].shape != expected[key].shape
    ]
    return missing, unexpected, wrong_shape


def _recorded_kwargs(name: str, file: Path, passed: Mapping[str, Any]) -> dict[str, Any]:
    """The constructor arguments ``file`` records; CheckpointError if ``passed`` contradicts them."""
    found = recorded_spec(file)
    if found is None:
        return {}
    spec, source = found
    if spec["name"] != name:
        raise CheckpointError(
            f"{file} is a {spec['name']!r} generator (recorded in {source.name}), not {name!r}: "
            f"load it as {spec['name']!r} (CLI: --model {spec['name']})."
        )
    kwargs = dict(spec["kwargs"])
    clashes = {
        key: (value, kwargs[key]) for key, value in passed.items()
        if key in kwargs and key not in RUNTIME_KWARGS and kwargs[key] != value
    }
    if clashes:
        said = "; ".join(f"you passed {k}={p!r}, the file records {k}={r!r}" for k, (p, r) in clashes.items())
        raise CheckpointError(
            f"{file} was trained as a different {name} generator ({said}; from {source.name}). "
            "Leave those options out to build the recorded generator."
        )
    return kwargs


#: A generator may hold this much more than its checkpoint's tensors (buffers a file leaves out).
FIT_SLACK = 1.05
#: Below this a too-big generator is simply built and the strict load names what differs.
FIT_FLOOR_BYTES = 256 * 2**20


def _check_fits(name: str, kwargs: Mapping[str, Any], state: Mapping[str, Any], file: Path) -> None:
    """Refuse, before anything is allocated, a generator of more than 256 MiB that is larger than
    the checkpoint's tensors (a record beside the file or an option asking for sizes the weights
    cannot fill); smaller mismatches are left to the strict load, which names the keys."""
    held = sum(t.numel() * t.element_size() for t in state.values() if isinstance(t, torch.Tensor))
    try:
        needed = weight_bytes(name, **kwargs)
    except GanBrevitasError:
        raise
    except Exception as err:  # noqa: BLE001 - a constructor failure means bad arguments
        raise CheckpointError(f"{name}({kwargs}) cannot be built for {file}: {type(err).__name__}: {err}.") from None
    if needed > max(held * FIT_SLACK, FIT_FLOOR_BYTES):
        raise CheckpointError(
            f"{file} holds {held / 2**20:.1f} MiB of weights, but {name}({kwargs}) would need "
            f"{needed / 2**20:.1f} MiB: the sizes recorded beside it or given as options do not belong to "
            "this file. Leave the options out (the file's shapes give them), or fix its record."
        )


def load_generator(name: str, path: str | os.PathLike[str], **build_kwargs: Any) -> nn.Module:
    """Build generator ``name`` and load checkpoint ``path`` into it strictly.

    Constructor arguments that the file's shapes reveal (StyleGAN channels / code_dim /
    n_mlp / fused, SAGAN z_dim / conv_dim / image_size / upsample, CycleGAN ngf / n_blocks /
    norm / channels) are inferred, and so is StyleGAN's output size (the highest block that was
    ever trained); what the file records about itself (`recorded_spec`: safetensors metadata or
    a JSON beside it) comes next; ``build_kwargs`` may add to them but not contradict them.
    Returns the model in eval mode on the CPU. Raises CheckpointError listing missing,
    unexpected and mis-shaped keys, or naming the recorded / trained value a kwarg contradicts.
    """
    file = Path(path)
    state = load_state_dict_file(file)
    inferred = infer_build_kwargs(name, state)
    recorded = _recorded_kwargs(name, file, build_kwargs)
    check = architecture(name).check_kwargs
    if check is not None:
        check(file, {**inferred, **recorded, **build_kwargs}, inferred)
    kwargs = {**inferred, **recorded, **build_kwargs}
    _check_fits(name, kwargs, state, file)
    model = build_generator(name, **kwargs)
    state = drop_stale_instance_norm_keys(state, model)
    missing, unexpected, wrong_shape = _compare(model, state)
    if missing or unexpected or wrong_shape:
        conflicts = {
            key: (value, inferred[key])
            for key, value in build_kwargs.items()
            if key in inferred and inferred[key] != value
        }
        raise CheckpointError(
            _mismatch_message(
                name, file, kwargs, missing, unexpected, wrong_shape, guess_architecture(state), conflicts
            )
        )
    model.load_state_dict(state, strict=True)
    logger.info("loaded %s generator from %s (%s)", name, file, kwargs)
    return model.eval()
