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
    return recipes.quantize(generator, method, config=QuantConfig(**W4_LEARNED), inputs=latents, **options).state_dict()


def run_rank(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    """Join a gloo group like a torchrun process, make every run, save this rank's weights."""
    import warnings

    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    os.environ["LOCAL_RANK"] = str(rank)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        for name in RUNS:
            state = run(name, Path(out_dir) / name)
            torch.save(state, Path(out_dir) / f"{name}-rank{rank}.pt")
    finally:
        dist.destroy_process_group()
