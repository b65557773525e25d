"""What a quantized-generator file must hold, checked before and after its tensors are read.

A file written by `gan_brevitas.quant.serialize.save_quantized` is trusted only as far as these
checks go; anything else fails with a CheckpointError naming the key and the fix, never with a
raw KeyError, a huge allocation or silently wrong images:

- the metadata schema (:data:`FIELDS`): every key present, each of its JSON type;
- the size of the generator the metadata asks for, computed on PyTorch's ``meta`` device (no
  memory), against the tensor bytes the file actually holds (a 3 MB file cannot ask for a
  64 GB model);
- every tensor: the dtype the rebuilt model expects (a dtype relabelled in the header is
  refused), finite values, and quantizer scales that are positive;
- a sha256 over the metadata and every tensor (:func:`content_sha256`), written on save and
  compared on load, so an edited bit width, per-channel flag, scale or weight fails loudly.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from gan_brevitas.errors import CheckpointError

FORMAT = "gan-brevitas/quantized-generator/2"
#: Files written before the content hash existed; loaded with every check but the hash.
OLD_FORMATS = ("gan-brevitas/quantized-generator/1",)
HASH_KEY = "sha256"
#: metadata key -> JSON type of its decoded value ("text": the raw string itself).
FIELDS: dict[str, tuple[type, ...] | str] = {
    "format": "text",
    "method": "text",
    "config": (dict,),
    "generator": (dict, type(None)),
}
#: The rebuilt float generator may need at most this many bytes more than the file's tensors
#: hold (the file stores every float weight plus the quantizer state, so it is never smaller).
SIZE_SLACK_BYTES = 1 << 20
SCALE_SUFFIXES = ("scaling_impl.value", "scale")
FIX = "re-create it with recipes.save / `gan-brevitas quantize`"


def _bad(path: Path, problem: str) -> CheckpointError:
    return CheckpointError(f"{path} is not a valid gan-brevitas quantized generator: {problem}; {FIX}.")


def parse_metadata(metadata: Mapping[str, str], path: Path) -> dict[str, Any]:
    """The decoded metadata fields (see :data:`FIELDS`); CheckpointError for any deviation."""
    found = metadata.get("format")
    if found != FORMAT and found not in OLD_FORMATS:
        raise CheckpointError(
            f"{path} is a safetensors file but not a gan-brevitas quantized generator "
            f"(format {found!r}, expected {FORMAT!r})."
        )
    values: dict[str, Any] = {}
    for key, kind in FIELDS.items():
        if key not in metadata:
            raise _bad(path, f"metadata key {key!r} is missing")
        text = metadata[key]
        if kind == "text":
            values[key] = text
            continue
        try:
            value = json.loads(text)
        except (TypeError, ValueError):
            raise _bad(path, f"metadata key {key!r} is not valid JSON ({str(text)[:80]!r})") from None
        if not isinstance(value, kind):
            names = " or ".join("null" if k is type(None) else "an object" for k in kind)
            raise _bad(path, f"metadata key {key!r} must be {names}, got {type(value).__name__}")
        values[key] = value
    generator = values["generator"]
    if generator is not None and not (
        isinstance(generator.get("name"), str) and isinstance(generator.get("kwargs"), dict)
    ):
        raise _bad(path, 'metadata "generator" must be {"name": text, "kwargs": {...}}')
    if found != FORMAT:
        values[HASH_KEY] = None
    elif not isinstance(metadata.get(HASH_KEY), str):
        raise _bad(path, f"metadata key {HASH_KEY!r} (the content hash) is missing")
    else:
        values[HASH_KEY] = metadata[HASH_KEY]
    return values


def build_bounded(name: str, kwargs: dict[str, Any], file_tensor_bytes: int, path: Path) -> nn.Module:
    """Build generator ``name(**kwargs)``, after checking on the meta device that its weights fit
    in the tensor bytes the file holds."""
    from gan_brevitas.errors import GanBrevitasError
    from gan_brevitas.models import build_generator
    from gan_brevitas.models.registry import weight_bytes

    try:
        needed = weight_bytes(name, **kwargs)
    except GanBrevitasError as err:
        raise _bad(path, f"its generator record {name}({kwargs}) cannot be built ({err})") from None
    except Exception as err:  # noqa: BLE001 - any constructor failure means a bad record
        raise _bad(path, f"its generator record {name}({kwargs}) cannot be built ({type(err).__name__}: {err})") from None
    if needed > file_tensor_bytes + SIZE_SLACK_BYTES:
        raise _bad(
            path,
            f"its metadata asks for a {name} generator with {needed / 2**20:.1f} MiB of weights "
            f"({kwargs}), but the file holds only {file_tensor_bytes / 2**20:.1f} MiB of tensors "
            "(the metadata was edited or belongs to another file)",
        )
    return build_generator(name, **kwargs)


def check_tensors(expected: Mapping[str, Tensor], found: Mapping[str, Tensor], path: Path) -> None:
    """Same dtypes as the rebuilt model, finite values, positive quantizer scales."""
    wrong_dtype = sorted(
        f"{k} {found[k].dtype} vs model {expected[k].dtype}"
        for k in set(expected) & set(found)
        if found[k].dtype != expected[k].dtype
    )
    if wrong_dtype:
        raise _bad(path, f"tensor dtypes differ from the model: {wrong_dtype[:5]} ({len(wrong_dtype)})")
    for key, tensor in sorted(found.items()):
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise _bad(path, f"tensor {key} holds NaN or Inf")
        if key.endswith(SCALE_SUFFIXES) and tensor.is_floating_point() and not bool((tensor > 0).all()):
            raise _bad(path, f"quantizer scale {key} is zero or negative ({float(tensor.min()):.3g})")


def content_sha256(metadata: Mapping[str, str], state: Mapping[str, Tensor]) -> str:
    """sha256 over every metadata entry but the hash itself and every tensor (name, dtype, shape,
    bytes), in name order."""
    digest = hashlib.sha256()
    for key in sorted(k for k in metadata if k != HASH_KEY):
        digest.update(f"{len(key)}:{key}={len(metadata[key])}:{metadata[key]}\n".encode())
    for name in sorted(state):
        tensor = state[name].detach().to("cpu").contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def check_hash(metadata: Mapping[str, str], expected: str | None, state: Mapping[str, Tensor], path: Path) -> None:
    if expected is None:
        return
    actual = content_sha256(metadata, state)
    if actual != expected:
        raise _bad(
            path,
            "its content hash does not match (metadata or tensors were changed after saving, e.g. an "
            "edited bit width, per-channel flag, scale or weight)",
        )


def tensor_bytes(shapes: Mapping[str, tuple[tuple[int, ...], str]]) -> int:
    """Bytes of the file's tensors from their header shapes and dtypes (nothing is read)."""
    sizes = {"F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2, "BF16": 2, "I16": 2,
             "U16": 2, "I8": 1, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}
    return sum(math.prod(shape) * sizes.get(dtype, 8) for shape, dtype in shapes.values())
