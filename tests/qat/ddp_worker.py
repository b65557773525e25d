"""The process body of the DDP test (importable by torch.multiprocessing's spawn)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

W4_LEARNED = {"weight_bits": 4, "weight_scaling": "learned"}

#: name -> (method, options): the runs every process (and then one process alone) makes.
#: "ma": MA ranges only (weights frozen), "lsq": one LSQ epoch, "ma-lsq": both phases with the
#: DDP wrapper rebuilt when the quantizer parameters start to learn.
RUNS: dict[str, tuple[str, dict[str, Any]]] = {
    "ma": ("ma-qat", dict(epochs=1, ma_epochs=1, lr_weights=0.0)),
    "lsq": ("lsq-qat", dict(epochs=1, lr_weights=1e-4, lr_quant=1e-5)),
    "ma-lsq": ("lsq-qat", dict(epochs=2, schedule="ma-lsq", ma_epochs=1, lr_weights=1e-4, lr_quant=1e-5)),
}


def tiny_problem():
    from tests.helpers import dcgan_generator

    return dcgan_generator(z_dim=16, width=16, seed=0), torch.randn(96, 16, generator=torch.Generator().manual_seed(1))


def run(name: str, out_dir: Path) -> dict[str, torch.Tensor]:
    """Run ``RUNS[name]`` with a global batch of 8 and return the final weights."""
    from gan_brevitas import QuantConfig, recipes
    from tests.qat.conftest import small_options

    method, changes = RUNS[name]
    generator, latents = tiny_problem()
    options = small_options(batch_size=8, eval_samples=0, out_dir=str(out_dir), **changes)
    return recipes.quantize(generator, method, config=QuantConfig.paper(**W4_LEARNED), inputs=latents, **options).state_dict()


def run_rank(rank: int, world_size: int, ports: list[int], out_dir: str) -> None:
    """Behave like a process that torchrun started: only the environment says it is
    distributed, and each run initialises (and tears down) the gloo group itself."""
    import warnings

    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size), MASTER_ADDR="127.0.0.1")
    for name, port in zip(RUNS, ports):
        os.environ["MASTER_PORT"] = str(port)
        state = run(name, Path(out_dir) / name)
        assert not dist.is_initialized()  # the run closed the group it opened
        torch.save(state, Path(out_dir) / f"{name}-rank{rank}.pt")


def free_ports(count: int) -> list[int]:
    import socket

    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports
