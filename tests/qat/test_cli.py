"""`gan-brevitas quantize --method lsq-qat --set ...`: options reach QAT, a second run into
the same directory is refused, ``--set resume=true`` continues it."""

import json

import torch

from gan_brevitas import recipes
from gan_brevitas.cli import main
from gan_brevitas.qat.checkpoint import CHECKPOINT_NAME, LOG_NAME


def test_cli_lsq_qat_with_resume(tmp_path, capsys):
    generator = recipes.build_generator("sagan", image_size=16, z_dim=32, conv_dim=8)
    torch.save(generator.state_dict(), tmp_path / "g.pth")
    run_dir = tmp_path / "run"

    def quantize(*extra: str) -> int:
        return main([
            "quantize", "--model", "sagan", "--checkpoint", str(tmp_path / "g.pth"), "--method", "lsq-qat",
            "--weight-bits", "4", "--num-samples", "16", "--out", str(tmp_path / "q.safetensors"),
            "--set", "epochs=2", "--set", "loss=mse", "--set", f"out_dir={run_dir}", "--set", "num_train=32",
            "--set", "eval_samples=0", "--set", "batch_size=8", "--set", "weight_scaling=learned",
            "--set", "progress=false", *extra,
        ])

    assert quantize() == 0
    log = [json.loads(line) for line in (run_dir / LOG_NAME).read_text().splitlines()]
    assert [r["phase"] for r in log] == ["ptq-init", "lsq", "lsq"]  # SAGAN preset: plain LSQ
    checkpoint = (run_dir / CHECKPOINT_NAME).read_bytes()
    assert quantize() == 1  # refused: the run failed, with the reason
    assert "pass resume=True (CLI: --set resume=true)" in capsys.readouterr().err
    assert (run_dir / CHECKPOINT_NAME).read_bytes() == checkpoint
    assert quantize("--set", "resume=true") == 0  # finished run: nothing left to train
    assert (run_dir / CHECKPOINT_NAME).read_bytes() == checkpoint
