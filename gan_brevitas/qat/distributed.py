"""Process-group plumbing for QAT under ``torchrun`` (PyTorch DistributedDataParallel).

A run joins the process group that already exists (the caller set it up), or initialises one
itself when ``torchrun`` set WORLD_SIZE > 1 (and tears it down at the end), or runs as a
single process. The training step itself is PyTorch's DDP; this module only holds the few
collectives the loop needs besides it (barriers, mean of logged losses, gathering the
per-sample quantiles of MA-QAT, the RNG states for the checkpoint).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.distributed as dist
from torch import Tensor

log = logging.getLogger(__name__)


@dataclass
class DistContext:
    """Rank, world size and device of this process; collectives that are no-ops alone."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    initialized_here: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """Average scalars over processes (same keys on every rank)."""
        if not self.active or not values:
            return values
        keys = sorted(values)
        tensor = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=self._device())
        dist.all_reduce(tensor)
        return {k: float(v) / self.world_size for k, v in zip(keys, tensor.tolist())}

    def gather_rows(self, tensor: Tensor) -> Tensor:
        """All-gather [T, B, ...] from every rank as [T, world * B, ...] in GLOBAL sample order.

        `DistributedSampler` gives rank r the samples r, r + W, r + 2W, ... of the epoch's
        order, so sample j of rank r is global sample j * W + r: interleaving restores the
        order one process would have seen on the same global batch.
        """
        if not self.active:
            return tensor
        parts = [torch.empty_like(tensor) for _ in range(self.world_size)]
        dist.all_gather(parts, tensor.contiguous())
        stacked = torch.stack(parts, dim=2)  # [T, B, W, ...]
        return stacked.reshape(tensor.shape[0], -1, *tensor.shape[2:])

    def gather_objects(self, obj: Any) -> list[Any]:
        if not self.active:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def _device(self) -> torch.device:
        if dist.get_backend() == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")

    def close(self) -> None:
        if self.initialized_here and dist.is_initialized():
            dist.destroy_process_group()


def setup_distributed(backend: Optional[str] = None) -> DistContext:
    """Join the existing process group, start one under torchrun, or run alone."""
    if dist.is_available() and dist.is_initialized():
        return DistContext(
            rank=dist.get_rank(),
            world_size=dist.get_world_size(),
            local_rank=int(os.environ.get("LOCAL_RANK", dist.get_rank())),
        )
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        if not dist.is_available():
            raise RuntimeError("WORLD_SIZE > 1 but this PyTorch build has no torch.distributed.")
        chosen = backend or ("nccl" if torch.cuda.is_available() else "gloo")
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if chosen == "nccl":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=chosen)
        log.info("initialised process group (%s): rank %d of %d", chosen, dist.get_rank(), world)
        return DistContext(dist.get_rank(), dist.get_world_size(), local_rank, initialized_here=True)
    return DistContext()
