import numpy as np
import pytest
import torch
from PIL import Image

from gan_brevitas import cli, recipes

CYCLE = dict(ngf=8, n_blocks=2, image_size=32)


@pytest.fixture()
def cyclegan_files(tmp_path):
    model = recipes.build_generator("cyclegan", **CYCLE)
    checkpoint = tmp_path / "latest_net_G.pth"
    torch.save(model.state_dict(), checkpoint)
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(images / f"{i}.png")
    return checkpoint, images


def test_quantize_then_info(cyclegan_files, tmp_path, capsys):
    checkpoint, images = cyclegan_files
    out = tmp_path / "q.safetensors"
    code = cli.main([
        "quantize", "--model", "cyclegan", "--checkpoint", str(checkpoint), "--images", str(images),
        "--size", "32", "--weight-bits", "4", "--per-channel", "--num-samples", "4", "--out", str(out),
    ])
    assert code == 0
    assert out.exists()
    printed = capsys.readouterr().out
    assert "QuantConv2d" in printed and "InstanceNorm" in printed
    assert cli.main(["info", str(out)]) == 0
    info = capsys.readouterr().out
    assert '"weight_bits": 4' in info and "method:      gptq" in info and "QuantConvTranspose2d" in info


def test_paper_without_a_method_runs_the_papers_vanilla_ptq(cyclegan_files, tmp_path, capsys):
    checkpoint, images = cyclegan_files
    out = tmp_path / "paper.safetensors"
    assert cli.main(["quantize", "--model", "cyclegan", "--checkpoint", str(checkpoint), "--images", str(images),
                     "--size", "32", "--paper", "--num-samples", "4", "--out", str(out), "-q"]) == 0
    capsys.readouterr()
    assert cli.main(["info", str(out)]) == 0
    info = capsys.readouterr().out
    assert "method:      vanilla-ptq" in info and '"weight_scaling": "stats"' in info


def test_errors_exit_1_or_2_with_a_message_and_write_nothing(cyclegan_files, tmp_path, capsys):
    checkpoint, images = cyclegan_files
    missing_dir = tmp_path / "nope" / "q.safetensors"
    code = cli.main(["quantize", "--model", "cyclegan", "--checkpoint", str(checkpoint), "--images", str(images),
                     "--out", str(missing_dir)])
    assert code == 1
    assert "does not exist" in capsys.readouterr().err
    code = cli.main(["quantize", "--model", "cyclegan", "--checkpoint", str(checkpoint), "--weight-bits", "9",
                     "--images", str(images), "--out", str(tmp_path / "q.safetensors")])
    assert code == 2
    assert "weight_bits=9" in capsys.readouterr().err
    code = cli.main(["quantize", "--model", "sagan", "--checkpoint", str(checkpoint),
                     "--out", str(tmp_path / "q.safetensors")])
    assert code == 1
    assert "cyclegan" in capsys.readouterr().err  # the loader names the architecture the keys look like
    assert not (tmp_path / "q.safetensors").exists()


def test_help_reads_well(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    text = capsys.readouterr().out
    assert "quantize" in text and "info" in text
