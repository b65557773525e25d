"""Generator blocks for block reconstruction (paper §3.5, eq. 3) and the data they train on.

A generator is cut into sequential blocks ``f = f_n ∘ ... ∘ f_1``. A `Block` is a chain of
named modules: the first receives the block input X_i exactly as the model calls it (all
positional and keyword arguments, e.g. StyleGAN's ``(x, style, noise)``), each next module
receives the previous one's output, and the last module's output is Y_i. A module output that
is a tuple (SAGAN's self-attention returns ``(features, attention map)``) passes on its first
tensor.

Block lists (`default_blocks`), the families' from their `Architecture.brecq_blocks`
(`gan_brevitas.models.registry`):

* StyleGAN: each mapping layer with its LeakyReLU (PixelNorm joins the first), each
  progression block used at the model's ``step``, and ``to_rgb[step]`` (§4.1);
* SAGAN: l1, l2, l3 + attn1, l4 + attn2, last;
* CycleGAN (the generic rule on its one ``nn.Sequential``): stem, each downsampling conv, each
  residual block, each upsampling layer, head;
* a user ``nn.Sequential``: one block per compute layer (with the padding before it and the
  norm / activation after it); any other user model: its top-level children holding compute
  layers. A user can instead name the blocks (`blocks_from_spec`).

Block data (`capture_block_data`) is recorded once per run by forward hooks on the
full-precision model, batch by batch, and kept by a `BlockDataCache`: in memory while small,
streamed to ``.pt`` files in a temporary directory (loaded with ``weights_only=True``) when the
estimate exceeds a memory budget. Every forward runs under a fixed per-batch seed, so models
with random noise (StyleGAN's "random" noise mode) see the same noise in every pass.
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import math
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import torch
from brevitas.nn.quant_layer import QuantWeightBiasInputOutputLayer
from torch import Tensor, nn
from tqdm.auto import tqdm

from gan_brevitas.errors import ConfigError, ConversionError
from gan_brevitas.models.registry import architecture_of
from gan_brevitas.quant.convert import QUANT_LAYER_TABLE

log = logging.getLogger(__name__)

#: What a user passes as a block list: module names, each a one-module block, or lists of
#: module names that run one after the other.
BlockSpec = Sequence[Union[str, Sequence[str]]]

#: Layers that only pad; in a Sequential they belong to the block of the layer they pad for.
_PADDING = (nn.ReflectionPad2d, nn.ReplicationPad2d, nn.ZeroPad2d, nn.ConstantPad2d)

#: Keys of the per-batch records a `BlockDataCache` holds.
INPUTS_KEY = "inputs"


@dataclass(frozen=True)
class Block:
    """A chain of modules reconstructed together.

    Attributes:
        name: a label for logs and reports (the module names joined by "+").
        modules: the module names in the order they run.
    """

    name: str
    modules: tuple[str, ...]

    @classmethod
    def of(cls, *modules: str) -> "Block":
        return cls("+".join(modules), tuple(modules))

    def contains(self, layer_name: str) -> bool:
        """True when ``layer_name`` is one of the block's modules or inside one."""
        return any(layer_name == m or layer_name.startswith(m + ".") for m in self.modules)


# --------------------------------------------------------------------------- block lists


def _is_compute(module: nn.Module) -> bool:
    """A float compute layer the converter quantizes, or a Brevitas layer it produced."""
    return type(module) in QUANT_LAYER_TABLE or isinstance(module, QuantWeightBiasInputOutputLayer)


def _holds_compute(module: nn.Module) -> bool:
    return any(_is_compute(m) for m in module.modules())


def sequential_blocks(sequential: nn.Sequential, prefix: str = "") -> list[Block]:
    """One block per child that holds compute layers, starting at the padding children just
    before it and running up to the next block (so norms and activations after a layer join
    it); children before the first compute layer join the first block.

    CycleGAN's ``model`` gives: stem (pad, conv, norm, ReLU), each downsampling conv (conv,
    norm, ReLU), each residual block, each upsampling layer (conv-T, norm, ReLU), head (pad,
    conv, Tanh).
    """
    children = list(sequential.named_children())
    compute = [i for i, (_, child) in enumerate(children) if _holds_compute(child)]
    if not compute:
        raise ConfigError(
            f"{prefix.rstrip('.') or 'the model'} holds no Conv2d, ConvTranspose2d or Linear layer: "
            "nothing to reconstruct."
        )
    starts = [0]
    for previous, index in zip(compute, compute[1:]):
        start = index
        while start - 1 > previous and isinstance(children[start - 1][1], _PADDING):
            start -= 1
        starts.append(start)
    ends = starts[1:] + [len(children)]
    return [
        Block.of(*(f"{prefix}{name}" for name, _ in children[start:end]))
        for start, end in zip(starts, ends)
    ]


def default_blocks(model: nn.Module) -> list[Block]:
    """The block list of a generator (see the module docstring)."""
    family = architecture_of(model)
    if family is not None and family.brecq_blocks is not None:
        return [Block.of(*chain) for chain in family.brecq_blocks(model)]
    if isinstance(model, nn.Sequential):
        return sequential_blocks(model)
    children = [(name, child) for name, child in model.named_children() if _holds_compute(child)]
    if len(children) == 1 and isinstance(children[0][1], nn.Sequential):
        return sequential_blocks(children[0][1], f"{children[0][0]}.")
    if not children:
        raise ConfigError(
            f"{type(model).__name__} has no child module holding a Conv2d, ConvTranspose2d or "
            "Linear layer: pass blocks=[...] naming the modules to reconstruct."
        )
    return [Block.of(name) for name, _ in children]


def _suggest(name: str, model: nn.Module) -> str:
    names = [n for n, _ in model.named_modules() if n]
    close = difflib.get_close_matches(name, names, n=3)
    if close:
        return f"did you mean {', '.join(map(repr, close))}?"
    top = [n for n, _ in model.named_children()]
    return f"top-level modules are {', '.join(map(repr, top))}."


def blocks_from_spec(model: nn.Module, spec: BlockSpec) -> list[Block]:
    """Blocks named by the user: each entry a module name or a list of names run in order.

    Raises ConfigError for an empty list, an entry that is neither, or a missing module.
    """
    if isinstance(spec, str) or not isinstance(spec, Sequence) or len(spec) == 0:
        raise ConfigError(
            f"blocks must be a non-empty list of module names (or lists of names), got {spec!r}; "
            'e.g. blocks=["l1", "l2", ["l3", "attn1"]].'
        )
    blocks = []
    for entry in spec:
        names = (entry,) if isinstance(entry, str) else tuple(entry) if isinstance(entry, Sequence) else ()
        if not names or not all(isinstance(n, str) and n for n in names):
            raise ConfigError(f"block entry {entry!r} must be a module name or a non-empty list of names.")
        blocks.append(Block.of(*names))
    check_blocks_exist(model, blocks)
    return blocks


def check_blocks_exist(model: nn.Module, blocks: Sequence[Block]) -> None:
    """ConfigError if a block names a missing module or two blocks share (or nest) a module."""
    for block in blocks:
        for name in block.modules:
            try:
                model.get_submodule(name)
            except AttributeError:
                raise ConfigError(
                    f"block {block.name!r} names module {name!r}, which the model does not have; "
                    f"{_suggest(name, model)}"
                ) from None
    owners: dict[str, str] = {}
    for block in blocks:
        for name in block.modules:
            for other, owner in owners.items():
                if name == other or name.startswith(other + ".") or other.startswith(name + "."):
                    raise ConfigError(
                        f"module {name!r} of block {block.name!r} overlaps {other!r} of block "
                        f"{owner!r}: every module may belong to one block only."
                    )
            owners[name] = block.name


def check_coverage(blocks: Sequence[Block], layers: Iterable[str]) -> None:
    """ConfigError naming the quantized layers (that ran) which no block contains."""
    uncovered = [name for name in layers if not any(b.contains(name) for b in blocks)]
    if uncovered:
        shown = ", ".join(uncovered[:6]) + (", ..." if len(uncovered) > 6 else "")
        raise ConfigError(
            f"the blocks do not cover {len(uncovered)} quantized layer(s) that run in the forward: "
            f"{shown}. Add them (or a module containing them) to a block."
        )


# --------------------------------------------------------------------------- running a block


def first_tensor(output: Any) -> Tensor:
    """A module output as the tensor the next module of a block receives."""
    if isinstance(output, Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], Tensor):
        return output[0]
    raise ConversionError(
        f"a block module returned {type(output).__name__}, not a tensor or a tuple starting with one."
    )


def run_block(model: nn.Module, block: Block, args: tuple, kwargs: dict[str, Any]) -> Tensor:
    """Run ``block`` of ``model`` on a recorded input (args and kwargs of its first module)."""
    out = model.get_submodule(block.modules[0])(*args, **kwargs)
    for name in block.modules[1:]:
        out = model.get_submodule(name)(first_tensor(out))
    return first_tensor(out)


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run with the global RNG seeded, restoring its state after (for models drawing noise)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


# --------------------------------------------------------------------------- data cache


def _nbytes(obj: Any) -> int:
    if isinstance(obj, Tensor):
        return obj.element_size() * obj.nelement()
    if isinstance(obj, dict):
        return sum(_nbytes(v) for v in obj.values())
    if isinstance(obj, (tuple, list)):
        return sum(_nbytes(v) for v in obj)
    return 0


def _map_tensors(obj: Any, fn: Callable[[Tensor], Tensor]) -> Any:
    """``obj`` with ``fn`` applied to every tensor in it (nested tuples, lists, dicts)."""
    if isinstance(obj, Tensor):
        return fn(obj)
    if isinstance(obj, dict):
        return {k: _map_tensors(v, fn) for k, v in obj.items()}
    if isinstance(obj, (tuple, list)):
        return type(obj)(_map_tensors(v, fn) for v in obj)
    return obj


def _to_cpu(obj: Any) -> Any:
    return _map_tensors(obj, lambda t: t.detach().to("cpu").clone())


def to_device(obj: Any, device: torch.device) -> Any:
    """Tensors of a (nested) record moved to ``device``."""
    return _map_tensors(obj, lambda t: t.to(device))


class BlockDataCache:
    """Per-batch records (model inputs, block inputs, outputs, gradients) of one run.

    Kept in memory until `decide` sees that the whole run would exceed ``max_bytes``; from then
    on every record goes to a ``.pt`` file in a temporary directory (under ``directory`` when
    given), read back with ``torch.load(weights_only=True)``. Use as a context manager: the
    directory is removed on exit.
    """

    def __init__(self, max_bytes: float, directory: Optional[str] = None) -> None:
        self.max_bytes = max_bytes
        self.parent = directory
        self.path: Optional[Path] = None
        self._memory: dict[tuple[str, int], Any] = {}
        self._keys: dict[str, int] = {}
        self.num_batches = 0

    def __enter__(self) -> "BlockDataCache":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def on_disk(self) -> bool:
        return self.path is not None

    def decide(self, estimated_bytes: float) -> None:
        """Move to disk when the run's estimated size exceeds the budget."""
        if self.on_disk or estimated_bytes <= self.max_bytes:
            return
        self.path = Path(tempfile.mkdtemp(prefix="gan_brevitas_blocks_", dir=self.parent))
        log.info(
            "block data (~%.0f MB) exceeds the %.0f MB memory budget: streaming to %s",
            estimated_bytes / 2**20, self.max_bytes / 2**20, self.path,
        )
        for (key, index), record in list(self._memory.items()):
            self._write(key, index, record)
        self._memory.clear()

    def _file(self, key: str, index: int) -> Path:
        assert self.path is not None
        slot = self._keys.setdefault(key, len(self._keys))
        return self.path / f"{slot:04d}_{index:06d}.pt"

    def _write(self, key: str, index: int, record: Any) -> None:
        torch.save(record, self._file(key, index))

    def put(self, key: str, index: int, record: Any) -> None:
        """Store a copy of ``record`` (tensors on the CPU)."""
        record = _to_cpu(record)
        self.num_batches = max(self.num_batches, index + 1)
        if self.on_disk:
            self._write(key, index, record)
        else:
            self._memory[(key, index)] = record

    def get(self, key: str, index: int) -> Any:
        """A fresh copy of a record: callers may modify it (in-place ops in a block)."""
        if not self.on_disk:
            return _to_cpu(self._memory[(key, index)])
        return torch.load(self._file(key, index), weights_only=True)

    def close(self) -> None:
        self._memory.clear()
        if self.path is not None:
            shutil.rmtree(self.path, ignore_errors=True)
            self.path = None


def block_key(index: int, what: str) -> str:
    """Cache key of block ``index``'s "args", "kwargs", "output", "quant_args"... record."""
    return f"block{index}/{what}"


# --------------------------------------------------------------------------- capture


class _StopForward(Exception):
    """Raised by a hook to end a forward once the wanted block input is recorded."""


def _record_inputs(store: dict[str, Any], counts: dict[str, int], key: str, stop: bool):
    def hook(module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
        counts[key] = counts.get(key, 0) + 1
        # Copied now: a later in-place op (ReLU(inplace=True)) may overwrite these tensors.
        store[key] = (_to_cpu(args), _to_cpu(kwargs))
        store.setdefault("order", []).append(key)
        if stop:
            raise _StopForward

    return hook


def _record_output(store: dict[str, Any], counts: dict[str, int], key: str):
    def hook(module: nn.Module, args: tuple, output: Any) -> None:
        counts[key] = counts.get(key, 0) + 1
        store[key] = _to_cpu(first_tensor(output))

    return hook


@contextlib.contextmanager
def hooks_removed_on_exit(handles: list) -> Iterator[None]:
    """Remove the given forward-hook handles when the block ends, however it ends."""
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _check_once(counts: dict[str, int], blocks: Sequence[Block]) -> None:
    for index, block in enumerate(blocks):
        for side in ("in", "out"):
            calls = counts.get(f"{index}/{side}", 0)
            module = block.modules[0] if side == "in" else block.modules[-1]
            if calls == 0:
                raise ConfigError(
                    f"block {block.name!r} never ran in the model's forward (module {module!r}); "
                    "remove it from the block list (StyleGAN: blocks above the model's step do not run)."
                )
            if calls > 1:
                raise ConfigError(
                    f"module {module!r} of block {block.name!r} runs {calls} times per forward; "
                    "block reconstruction needs each block to run once: choose other block boundaries."
                )


@dataclass(frozen=True)
class CaptureInfo:
    """What the first recorded forward showed.

    Attributes:
        block_order: block indices in the order the blocks run.
        ran_layers: the watched layers that ran, in the order they first ran.
    """

    block_order: tuple[int, ...]
    ran_layers: tuple[str, ...]


def capture_block_data(
    model: nn.Module,
    blocks: Sequence[Block],
    batches: Iterable[Tensor],
    cache: BlockDataCache,
    expected_batches: int,
    seed: int,
    watch_layers: Sequence[str] = (),
    progress: bool = True,
) -> CaptureInfo:
    """Record every block's input and output over ``batches`` with the model's own forward.

    Stores per batch ``inputs`` (the model input) and, per block i, ``block_key(i, "args")``
    (args, kwargs of its first module) and ``block_key(i, "output")`` (its last module's
    output). Batch b runs under seed ``seed + b``. Blocks are checked to run exactly once
    per forward; the first batch gives the `CaptureInfo`.
    """
    store: dict[str, Any] = {}
    counts: dict[str, int] = {}
    order: list[str] = []
    block_order: tuple[int, ...] = ()
    handles = []
    for index, block in enumerate(blocks):
        first = model.get_submodule(block.modules[0])
        last = model.get_submodule(block.modules[-1])
        handles.append(first.register_forward_pre_hook(_record_inputs(store, counts, f"{index}/in", False), with_kwargs=True))
        handles.append(last.register_forward_hook(_record_output(store, counts, f"{index}/out")))
    watch_handles = []
    for name in watch_layers:
        def ran(module: nn.Module, args: tuple, output: Any, name: str = name) -> None:
            if name not in order:
                order.append(name)
        watch_handles.append(model.get_submodule(name).register_forward_hook(ran))
    device = next(model.parameters()).device
    with hooks_removed_on_exit(handles + watch_handles), torch.no_grad():
        for b, batch in enumerate(tqdm(batches, total=expected_batches, desc="recording block data", disable=not progress)):
            store.clear()
            counts.clear()
            with seeded(seed + b):
                model(batch.to(device))
            _check_once(counts, blocks)
            records = {INPUTS_KEY: batch}
            for index in range(len(blocks)):
                args, kwargs = store[f"{index}/in"]
                records[block_key(index, "args")] = (tuple(args), dict(kwargs))
                records[block_key(index, "output")] = store[f"{index}/out"]
            if b == 0:
                block_order = tuple(int(key.split("/")[0]) for key in store["order"])
                cache.decide(sum(_nbytes(r) for r in records.values()) * expected_batches)
                for handle in watch_handles:  # the first batch shows which layers run
                    handle.remove()
            for key, record in records.items():
                cache.put(key, b, record)
    if not block_order:
        raise ConfigError("no input batch reached the model: check the inputs.")
    return CaptureInfo(block_order=block_order, ran_layers=tuple(order))


def capture_quant_inputs(
    qmodel: nn.Module,
    block: Block,
    index: int,
    cache: BlockDataCache,
    seed: int,
) -> None:
    """Record block ``index``'s input as the QUANTIZED model produces it (the blocks before it
    already reconstructed), stored as ``block_key(index, "quant_args")``. Each forward stops
    at the block, and runs under the same per-batch seed as the float capture."""
    store: dict[str, Any] = {}
    counts: dict[str, int] = {}
    first = qmodel.get_submodule(block.modules[0])
    handle = first.register_forward_pre_hook(_record_inputs(store, counts, "in", True), with_kwargs=True)
    device = next(qmodel.parameters()).device
    with hooks_removed_on_exit([handle]), torch.no_grad():
        for b in range(cache.num_batches):
            batch = cache.get(INPUTS_KEY, b)
            with seeded(seed + b), contextlib.suppress(_StopForward):
                qmodel(batch.to(device))
            args, kwargs = store["in"]
            cache.put(block_key(index, "quant_args"), b, (tuple(args), dict(kwargs)))


def batch_count(num_samples: int, batch_size: int) -> int:
    return max(1, math.ceil(num_samples / batch_size))
