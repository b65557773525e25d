"""Distillation data (Appendix A): N (input, full-precision output) pairs generated once.

The full-precision generator runs once over N inputs (latents, or images for CycleGAN); the
pairs go to safetensors shards in a directory named by their fingerprint (float generator +
inputs), so a second run on the same generator and inputs reuses them and a different one
never overwrites them. A held-out set (the first ``eval_samples`` inputs) is stored the same
way for the per-epoch PSNR / qFID.

Training reads the shards through `ShardedPairs` (memory-mapped, one row at a time) and a
`DataLoader` with a `DistributedSampler`, whose order depends only on (seed, epoch): the
same in a resumed run, and split across processes under DDP.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm.auto import tqdm

from gan_brevitas.atomic_files import atomic_write_bytes
from gan_brevitas.errors import CalibrationError, ConfigError
from gan_brevitas.inputs import InputSource, iter_batches
from gan_brevitas.qat.checkpoint import tensor_sha256

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
EVAL_NAME = "eval.safetensors"
FORMAT = "gan-brevitas/distillation-data/1"
#: The generation batch: outputs only, no gradients.
GENERATION_BATCH = 32


def generator_image(output: Any) -> Tensor:
    """The image of a generator call (SAGAN returns (image, attention1, attention2))."""
    image = output[0] if isinstance(output, (tuple, list)) else output
    if not torch.is_tensor(image):
        raise ConfigError(f"the generator returned {type(image).__name__}, not an image tensor.")
    return image


@dataclass(frozen=True)
class Manifest:
    """What a distillation directory holds."""

    format: str
    num_train: int
    num_eval: int
    shard_size: int
    shards: list[str]
    input_shape: list[int]
    output_shape: list[int]
    model_sha256: str
    inputs_sha256: str


def draw_inputs(inputs: InputSource, num_train: int, num_eval: int) -> tuple[Tensor, Tensor]:
    """(held-out inputs, training inputs): the first ``num_eval`` rows are held out.

    Finite inputs may end early (logged by `iter_batches`); at least one training batch must
    remain.
    """
    rows = torch.cat([b.detach().cpu() for b in iter_batches(inputs, num_eval + num_train, GENERATION_BATCH)])
    if rows.shape[0] <= num_eval:
        raise CalibrationError(
            f"the inputs hold only {rows.shape[0]} rows but {num_eval} are held out for evaluation: "
            "give more inputs or lower eval_samples."
        )
    return rows[:num_eval], rows[num_eval:]


def inputs_fingerprint(eval_inputs: Tensor, train_inputs: Tensor) -> str:
    return tensor_sha256([("eval", eval_inputs), ("train", train_inputs)])


@torch.no_grad()
def _generate(model: nn.Module, inputs: Tensor, device: torch.device, progress: bool, desc: str) -> Tensor:
    outputs = []
    for batch in tqdm(inputs.split(GENERATION_BATCH), desc=desc, disable=not progress):
        outputs.append(generator_image(model(batch.to(device))).detach().float().cpu())
    return torch.cat(outputs)


def _write_pairs(float_model: nn.Module, eval_inputs: Tensor, train_inputs: Tensor, directory: Path, shard_size: int,
                 device: torch.device, progress: bool) -> tuple[list[str], list[int]]:
    """The held-out pairs and the training shards into ``directory``; returns the shard names
    and the output shape."""
    eval_targets = _generate(float_model, eval_inputs, device, progress, "held-out outputs") if len(eval_inputs) else None
    eval_state = {"inputs": eval_inputs.contiguous()}
    if eval_targets is not None:
        eval_state["targets"] = eval_targets.contiguous()
    save_file(eval_state, str(directory / EVAL_NAME))
    shards, output_shape = [], []
    starts = range(0, train_inputs.shape[0], shard_size)
    for index, start in enumerate(starts):
        chunk = train_inputs[start : start + shard_size].contiguous()
        targets = _generate(float_model, chunk, device, progress, f"distillation shard {index + 1}/{len(starts)}")
        name = f"shard_{index:05d}.safetensors"
        save_file({"inputs": chunk, "targets": targets.contiguous()}, str(directory / name))
        shards.append(name)
        output_shape = list(targets.shape[1:])
    return shards, output_shape


def prepare_distillation_data(
    float_model: nn.Module,
    eval_inputs: Tensor,
    train_inputs: Tensor,
    root: Path,
    model_sha256: str,
    shard_size: int,
    device: torch.device,
    write: bool = True,
    progress: bool = True,
) -> Path:
    """Generate (or find) the shards of these inputs under ``root``; returns their directory.

    ``write=False`` (the non-main processes under DDP) only computes the directory; the main
    process writes it before the others read it.
    """
    inputs_sha = inputs_fingerprint(eval_inputs, train_inputs)
    directory = root / f"{model_sha256[:12]}-{inputs_sha[:12]}"
    manifest_path = directory / MANIFEST_NAME
    if not write:
        return directory
    if manifest_path.exists():
        manifest = Manifest(**json.loads(manifest_path.read_text()))
        if manifest.model_sha256 == model_sha256 and manifest.inputs_sha256 == inputs_sha:
            log.info("reusing %d distillation pairs in %s", manifest.num_train, directory)
            return directory
    directory.mkdir(parents=True, exist_ok=True)
    was_training = float_model.training
    float_model.eval()
    try:
        shards, output_shape = _write_pairs(float_model, eval_inputs, train_inputs, directory, shard_size, device,
                                            progress)
    finally:
        float_model.train(was_training)
    manifest = Manifest(
        format=FORMAT,
        num_train=int(train_inputs.shape[0]),
        num_eval=int(eval_inputs.shape[0]),
        shard_size=shard_size,
        shards=shards,
        input_shape=list(train_inputs.shape[1:]),
        output_shape=output_shape,
        model_sha256=model_sha256,
        inputs_sha256=inputs_sha,
    )
    # The manifest is written last: a directory without one is incomplete and regenerated.
    atomic_write_bytes(manifest_path, json.dumps(asdict(manifest), indent=2).encode())
    log.info("wrote %d distillation pairs in %d shard(s) to %s", manifest.num_train, len(shards), directory)
    return directory


class ShardedPairs(Dataset):
    """(input, full-precision output) pairs read row by row from memory-mapped shards."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        manifest_path = self.directory / MANIFEST_NAME
        if not manifest_path.exists():
            raise CalibrationError(f"{self.directory} holds no distillation data ({MANIFEST_NAME} missing).")
        self.manifest = Manifest(**json.loads(manifest_path.read_text()))
        self._handles: dict[int, Any] = {}

    def __len__(self) -> int:
        return self.manifest.num_train

    def _handle(self, shard: int) -> Any:
        if shard not in self._handles:
            self._handles[shard] = safe_open(str(self.directory / self.manifest.shards[shard]), framework="pt")
        return self._handles[shard]

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        shard, row = divmod(index, self.manifest.shard_size)
        handle = self._handle(shard)
        return handle.get_slice("inputs")[row : row + 1][0], handle.get_slice("targets")[row : row + 1][0]

    def __getstate__(self) -> dict[str, Any]:  # open handles do not cross process boundaries
        return {"directory": self.directory, "manifest": self.manifest, "_handles": {}}

    def held_out(self) -> tuple[Tensor, Optional[Tensor]]:
        """(inputs, full-precision outputs) of the held-out set; outputs None when empty."""
        with safe_open(str(self.directory / EVAL_NAME), framework="pt") as handle:
            inputs = handle.get_tensor("inputs")
            targets = handle.get_tensor("targets") if "targets" in handle.keys() else None
        return inputs, targets


def make_loader(
    dataset: ShardedPairs, batch_size: int, rank: int, world_size: int, seed: int
) -> tuple[DataLoader, DistributedSampler]:
    """A loader over this process's share of the pairs; call ``sampler.set_epoch(e)`` per epoch.

    ``batch_size`` is the per-process batch; incomplete last batches are dropped so every step
    averages the same number of samples on every process.
    """
    sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed)
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=True, num_workers=0)
    if len(loader) == 0:
        raise ConfigError(
            f"{len(dataset)} distillation pairs make no full batch of {batch_size * world_size} "
            f"(batch_size {batch_size} x {world_size} process(es)): raise num_train or lower batch_size."
        )
    return loader, sampler
