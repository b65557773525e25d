"""Point 5: a tampered or careless quantized file fails loudly on load, with our error, before
any large allocation; it never loads into a model that makes silently different images."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from gan_brevitas import recipes
from gan_brevitas.errors import CheckpointError
from gan_brevitas.quant.file_schema import HASH_KEY, content_sha256

SCALE = "l1.0.output_quant.fused_activation_quant_proxy.tensor_quant.scaling_impl.value"
WEIGHT = "l1.0.weight"


def _read(path: Path) -> tuple[dict, bytes]:
    raw = path.read_bytes()
    (size,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + size]), raw[8 + size :]


def _write(path: Path, header: dict, data: bytes) -> None:
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)


def _edit(source: Path, target: Path, metadata=None, tensors=None, rehash: bool = False, data_edit=None) -> Path:
    """Copy ``source`` with metadata keys / tensor header entries / data bytes changed; with
    ``rehash`` the content hash is recomputed, as a deliberate attacker would."""
    header, data = _read(source)
    header["__metadata__"].update(metadata or {})
    for name, change in (tensors or {}).items():
        header[name].update(change)
    if data_edit is not None:
        data = data_edit(header, bytearray(data))
    _write(target, header, bytes(data))
    if rehash:
        state = load_file(str(target))
        header["__metadata__"][HASH_KEY] = content_sha256(header["__metadata__"], state)
        _write(target, header, bytes(data))
    return target


def _set_float(name: str, value: float):
    def edit(header: dict, data: bytearray) -> bytearray:
        start, end = header[name]["data_offsets"]
        for offset in range(start, end, 4):
            data[offset : offset + 4] = struct.pack("<f", value)
        return data

    return edit


@pytest.fixture(scope="module")
def saved(quantized_sagan, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("q") / "q.safetensors"
    recipes.save(quantized_sagan[0], path)
    return path


def test_an_untouched_file_loads_bit_identically(saved: Path, quantized_sagan) -> None:
    qmodel, z = quantized_sagan
    with torch.no_grad():
        assert torch.equal(recipes.load(saved)(z)[0], qmodel(z)[0])


@pytest.mark.parametrize("key", ["method", "config", "generator"])
def test_missing_metadata_key(saved: Path, tmp_path: Path, key: str) -> None:
    header, data = _read(saved)
    del header["__metadata__"][key]
    _write(tmp_path / "q.safetensors", header, data)
    with pytest.raises(CheckpointError, match=f"metadata key '{key}' is missing; re-create it with recipes.save"):
        recipes.load(tmp_path / "q.safetensors")


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("config", "[1, 2]", "metadata key 'config' must be an object, got list"),
        ("config", "{not json", "metadata key 'config' is not valid JSON"),
        ("generator", '"sagan"', "metadata key 'generator' must be an object or null, got str"),
        ("generator", '{"name": 3, "kwargs": {}}', 'metadata "generator" must be'),
        ("config", '{"weight_bits": "eight"}', "its QuantConfig metadata is invalid"),
    ],
)
def test_wrong_json_types(saved: Path, tmp_path: Path, key: str, value: str, message: str) -> None:
    target = _edit(saved, tmp_path / "q.safetensors", metadata={key: value})
    with pytest.raises(CheckpointError, match=message):
        recipes.load(target)


def test_a_small_file_cannot_ask_for_a_huge_generator(saved: Path, tmp_path: Path) -> None:
    huge = json.dumps({"name": "sagan", "kwargs": {"image_size": 1024, "z_dim": 32, "conv_dim": 4096}})
    target = _edit(saved, tmp_path / "q.safetensors", metadata={"generator": huge}, rehash=True)
    with pytest.raises(CheckpointError, match=r"asks for a sagan generator with \d+\.\d MiB of weights .* holds only 0\.\d MiB"):
        recipes.load(target)


@pytest.mark.parametrize(
    "edit, message",
    [
        ({"config": json.dumps({"weight_bits": 8, "per_channel": True})}, "content hash does not match"),
        ({"config": json.dumps({"weight_bits": 4, "per_channel": False})}, "content hash does not match"),
        ({"method": "ste-brecq"}, "content hash does not match"),
    ],
)
def test_edited_bits_per_channel_or_method_fail(saved: Path, tmp_path: Path, edit: dict, message: str) -> None:
    target = _edit(saved, tmp_path / "q.safetensors", metadata=edit)
    with pytest.raises(CheckpointError, match=message):
        recipes.load(target)


@pytest.mark.parametrize(
    "name, value, message",
    [
        (SCALE, float("nan"), f"tensor {SCALE} holds NaN or Inf"),
        (SCALE, 0.0, f"quantizer scale {SCALE} is zero or negative"),
        (SCALE, -1.0, f"quantizer scale {SCALE} is zero or negative"),
        (WEIGHT, float("inf"), f"tensor {WEIGHT} holds NaN or Inf"),
    ],
)
@pytest.mark.parametrize("rehash", [False, True])
def test_bad_quantizer_state_or_weights(saved: Path, tmp_path: Path, name: str, value: float, message: str,
                                        rehash: bool) -> None:
    target = _edit(saved, tmp_path / "q.safetensors", data_edit=_set_float(name, value), rehash=rehash)
    with pytest.raises(CheckpointError, match="content hash does not match" if not rehash else message):
        recipes.load(target)


@pytest.mark.parametrize("rehash", [False, True])
def test_dtype_relabelled_in_the_header(saved: Path, tmp_path: Path, rehash: bool) -> None:
    target = _edit(saved, tmp_path / "q.safetensors", tensors={WEIGHT: {"dtype": "I32"}}, rehash=rehash)
    message = f"tensor dtypes differ from the model: \\['{WEIGHT} torch.int32 vs model torch.float32'\\]"
    with pytest.raises(CheckpointError, match=message if rehash else "content hash does not match"):
        recipes.load(target)


def test_truncated_and_foreign_files(saved: Path, tmp_path: Path) -> None:
    truncated = tmp_path / "cut.safetensors"
    truncated.write_bytes(saved.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="is not a readable safetensors file"):
        recipes.load(truncated)
    foreign = tmp_path / "other.safetensors"
    _edit(saved, foreign, metadata={"format": "someone-else/1"})
    with pytest.raises(CheckpointError, match="not a gan-brevitas quantized generator"):
        recipes.load(foreign)
