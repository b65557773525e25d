"""What a new user meets first: a fast --help, the checkpoint's own size, their own generator on
the command line, exit codes, methods that set what they need, images cropped not squashed,
files that follow the umask, and a quantized model that remembers its input shape."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gan_brevitas import QuantConfig, cli, recipes
from gan_brevitas.atomic_files import atomic_write
from gan_brevitas.demo.zoo import checkpoint_paths
from gan_brevitas.errors import CheckpointError, ConfigError
from gan_brevitas.inputs import load_image_folder

REPO = Path(__file__).resolve().parents[1]
STYLEGAN_DEMO = checkpoint_paths("stylegan")["generator"]


def _python(code: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env,
                          cwd=REPO, check=True)
    return done.stdout.strip()


# --------------------------------------------------------------------------- --help


def test_help_of_every_command_imports_no_torch() -> None:
    """--help is answered by argparse alone: no torch, Brevitas or demo import (an import budget,
    not a timing: those imports are what took 5-13 s)."""
    out = _python("""
        import sys
        from gan_brevitas import cli
        parser = cli.build_parser()
        commands = ["quantize", "evaluate", "demo", "reproduce", "export", "check-trt", "bench", "info"]
        for argv in [["--help"]] + [[c, "--help"] for c in commands]:
            try:
                parser.parse_args(argv)
            except SystemExit as stop:
                assert stop.code == 0, argv
        heavy = sorted(m for m in ("torch", "brevitas", "torch_fidelity", "onnx", "PIL", "numpy") if m in sys.modules)
        print(",".join(heavy) or "none", len(sys.modules))
    """)
    heavy, count = out.splitlines()[-1].split()
    assert heavy == "none"
    assert int(count) < 250  # the stdlib's argparse / json / logging and our small modules


def test_parser_names_match_the_registries() -> None:
    from gan_brevitas.demo.run import SECTIONS
    from gan_brevitas import export_commands as commands
    from gan_brevitas.export.qcdq import CONV_TRANSPOSE_MODES, TARGETS
    from gan_brevitas.methods import DEFAULT_METHOD, PAPER_METHOD, method_names
    from gan_brevitas.models import GENERATORS

    assert cli.GENERATOR_NAMES == tuple(sorted(GENERATORS))
    assert all(name in method_names() for name in cli.METHOD_EXAMPLES.split(", "))
    assert (cli.DEFAULT_METHOD, cli.PAPER_METHOD) == (DEFAULT_METHOD, PAPER_METHOD)
    assert cli.DEMO_SECTIONS == tuple(SECTIONS)
    assert commands.EXPORT_TARGETS == tuple(TARGETS)
    assert commands.CONV_TRANSPOSE_NAMES == tuple(CONV_TRANSPOSE_MODES)


# --------------------------------------------------------------------------- sizes from the file


def test_stylegan_size_comes_from_the_checkpoint(tmp_path: Path, capsys) -> None:
    """The 32 px demo checkpoint without --size builds the 32 px model (was: 128 px, untrained blocks)."""
    out = tmp_path / "q.safetensors"
    code = cli.main(["quantize", "--model", "stylegan", "--checkpoint", str(STYLEGAN_DEMO), "--num-samples", "2",
                     "--out", str(out), "--quiet"])
    assert code == 0
    info = recipes.load(out).gan_brevitas
    assert info.generator["kwargs"]["size"] == 32 and info.input_shape == (128,)
    capsys.readouterr()
    code = cli.main(["quantize", "--model", "stylegan", "--checkpoint", str(STYLEGAN_DEMO), "--size", "128",
                     "--out", str(tmp_path / "q128.safetensors")])
    assert code == 1
    err = capsys.readouterr().err
    assert "you passed size=128, the file records size=32" in err and "Traceback" not in err
    assert not (tmp_path / "q128.safetensors").exists()


def test_stylegan_size_is_read_off_the_weights_without_a_record(tmp_path: Path) -> None:
    """A bare .pth (no JSON beside it): the highest block that ever trained gives the size."""
    from safetensors.torch import load_file

    path = tmp_path / "g.pth"
    torch.save(load_file(str(STYLEGAN_DEMO)), path)
    model = recipes.load_generator("stylegan", path)
    assert model.image_size == 32 and model.generator_spec["kwargs"]["size"] == 32
    assert recipes.load_generator("stylegan", path, size=16).image_size == 16  # below: its trained blocks
    with pytest.raises(CheckpointError, match=r"trained up to 32 px .* size=128 would produce images from untrained"):
        recipes.load_generator("stylegan", path, size=128)


def test_a_record_naming_another_architecture_is_refused(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    path = tmp_path / "g.pth"
    torch.save(load_file(str(STYLEGAN_DEMO)), path)
    (tmp_path / "g.json").write_text('{"generator": {"name": "sagan", "kwargs": {}}}')
    with pytest.raises(CheckpointError, match="is a 'sagan' generator .*recorded in g.json"):
        recipes.load_generator("stylegan", path)


# --------------------------------------------------------------------------- the user's own generator

USER_MODULE = '''
import torch
from torch import nn


class TinyGenerator(nn.Module):
    def __init__(self, latent=8, width=4):
        super().__init__()
        self.fc = nn.Linear(latent, width * 4 * 4)
        self.width = width
        self.up = nn.ConvTranspose2d(width, 3, 4, 2, 1)

    def forward(self, z):
        return torch.tanh(self.up(torch.relu(self.fc(z)).view(-1, self.width, 4, 4)))
'''


@pytest.fixture()
def user_generator(tmp_path: Path, monkeypatch):
    package = tmp_path / "userpkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "nets.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    from userpkg.nets import TinyGenerator  # noqa: E402  (made just above)

    torch.manual_seed(0)
    model = TinyGenerator(width=6)
    checkpoint = tmp_path / "g.pth"
    torch.save(model.state_dict(), checkpoint)
    return model, checkpoint


def test_quantize_a_user_class_from_the_command_line(user_generator, tmp_path: Path, capsys) -> None:
    model, checkpoint = user_generator
    out = tmp_path / "q.safetensors"
    argv = ["quantize", "--model", "userpkg.nets:TinyGenerator", "--checkpoint", str(checkpoint),
            "--model-kwargs", '{"width": 6}', "--input-shape", "8", "--num-samples", "4", "--out", str(out), "-q"]
    assert cli.main(argv) == 0
    capsys.readouterr()
    assert cli.main(["info", str(out)]) == 0
    assert "input shape: [8]" in capsys.readouterr().out
    from userpkg.nets import TinyGenerator

    qmodel = recipes.load(out, TinyGenerator(width=6))
    z = torch.randn(5, 8)
    with torch.no_grad():
        assert torch.nn.functional.mse_loss(qmodel(z), model(z)) < 1e-3  # the user's weights, quantized
    # the same class without its constructor argument: the shapes say what is wrong
    assert cli.main(argv[:5] + argv[7:]) == 1
    assert "shape mismatches" in capsys.readouterr().err
    # no --input-shape: a usage error naming the option
    assert cli.main(argv[:7] + argv[9:]) == 2
    assert "--input-shape" in capsys.readouterr().err
    assert cli.main(["quantize", "--model", "userpkg.nope:G", "--checkpoint", str(checkpoint), "--input-shape", "8",
                     "--out", str(out)]) == 2
    assert "cannot import module 'userpkg.nope'" in capsys.readouterr().err


def test_export_remembers_the_calibration_shape(user_generator, tmp_path: Path) -> None:
    model, _ = user_generator
    qmodel = recipes.quantize(model, "vanilla-ptq", inputs=torch.randn(8, 8), num_samples=4, progress=False)
    assert qmodel.gan_brevitas.input_shape == (8,)
    recipes.save(qmodel, tmp_path / "q.safetensors")
    from userpkg.nets import TinyGenerator

    loaded = recipes.load(tmp_path / "q.safetensors", TinyGenerator(width=6))
    assert loaded.gan_brevitas.input_shape == (8,)
    report = recipes.export(loaded, tmp_path / "g.onnx")  # no example_input, no inputs
    assert (tmp_path / "g.onnx").is_file() and report is not None
    import onnx

    graph = onnx.load(str(tmp_path / "g.onnx")).graph
    assert [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim][1:] == [8]


# --------------------------------------------------------------------------- exit codes and messages


def test_exit_codes_and_no_tracebacks(tmp_path: Path, capsys) -> None:
    base = ["quantize", "--model", "stylegan", "--out", str(tmp_path / "q.safetensors")]
    assert cli.main(base + ["--checkpoint", str(tmp_path / "missing.pth")]) == 1
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:  # argparse: an unknown option is bad usage
        cli.main(base + ["--checkpoint", str(STYLEGAN_DEMO), "--metod", "x"])
    assert stop.value.code == 2
    capsys.readouterr()
    assert cli.main(base + ["--checkpoint", str(STYLEGAN_DEMO), "--set", "steps"]) == 2
    assert "--set expects KEY=VALUE" in capsys.readouterr().err
    assert cli.main(base + ["--checkpoint", str(STYLEGAN_DEMO), "--config", str(tmp_path / "none.json")]) == 2
    assert "--config" in capsys.readouterr().err
    assert cli.main(["info", str(tmp_path / "missing.safetensors")]) == 1
    err = capsys.readouterr().err
    assert "missing.safetensors" in err and "Traceback" not in err


def test_fid_on_own_images_needs_inception_or_an_explicit_demo_cnn(tmp_path: Path, capsys, monkeypatch) -> None:
    from gan_brevitas.metrics import extractors

    monkeypatch.delenv(extractors.INCEPTION_ENV_VAR, raising=False)
    monkeypatch.setattr(extractors, "inception_cache_path", lambda: tmp_path / "no-weights.pth")
    q = tmp_path / "q.safetensors"
    assert cli.main(["quantize", "--model", "stylegan", "--checkpoint", str(STYLEGAN_DEMO), "--num-samples", "2",
                     "--out", str(q), "-q"]) == 0
    capsys.readouterr()
    argv = ["evaluate", str(q), "--checkpoint", str(STYLEGAN_DEMO), "--n", "16", "-q"]
    assert cli.main(argv) == 2
    assert "--extractor demo-cnn" in capsys.readouterr().err
    assert cli.main(argv + ["--extractor", "demo-cnn", "--grid", str(tmp_path / "g.png")]) == 0
    printed = capsys.readouterr().out
    assert "extractor gan-brevitas-demo-cnn" in printed and "n=16" in printed
    assert (tmp_path / "g.png").is_file()


def test_recipes_evaluate_refuses_the_demo_cnn_silently_and_accepts_it_by_name(tmp_path: Path, monkeypatch) -> None:
    from gan_brevitas.metrics import extractors

    monkeypatch.delenv(extractors.INCEPTION_ENV_VAR, raising=False)
    monkeypatch.setattr(extractors, "inception_cache_path", lambda: tmp_path / "no-weights.pth")
    gen = recipes.load_generator("stylegan", STYLEGAN_DEMO)
    latents = torch.randn(8, gen.latent_dim, generator=torch.Generator().manual_seed(0))
    qgen = recipes.quantize(gen, inputs=latents, num_samples=4)
    with pytest.raises(ConfigError, match='extractor="demo-cnn"') as refused:
        recipes.evaluate(qgen, gen, inputs=latents, n=8, progress=False)
    assert "inception_weights=FILE" in str(refused.value)
    with pytest.raises(ConfigError, match="unknown extractor 'inceptoin'"):
        recipes.evaluate(qgen, gen, inputs=latents, n=8, progress=False, extractor="inceptoin")
    result = recipes.evaluate(qgen, gen, inputs=latents, n=8, progress=False, extractor="demo-cnn")
    assert result.extractor.startswith("gan-brevitas-demo-cnn") and result.n == 8


# --------------------------------------------------------------------------- recipes set what they need


def test_ar_brecq_sets_learned_weight_scaling_itself_and_says_so() -> None:
    model = recipes.build_generator("sagan", z_dim=8, conv_dim=8, image_size=16)
    qmodel = recipes.quantize(model, "ar-brecq", config=QuantConfig(weight_bits=4), inputs=torch.randn(8, 8),
                              num_samples=8, calibration_samples=8, steps=2, batch_size=4, progress=False)
    assert qmodel.gan_brevitas.config.weight_scaling == "learned"
    assert "weight_scaling='learned': set by ar-brecq" in recipes.describe(qmodel)
    with pytest.raises(ConfigError, match="ar-brecq .* needs weight_scaling='learned'"):
        recipes.quantize(model, "ar-brecq", inputs=torch.randn(8, 8), weight_scaling="stats")


def test_lsq_qat_learns_weight_steps_by_default() -> None:
    from gan_brevitas.recipes import _method_config  # the rule recipes.quantize applies

    assert _method_config("lsq-qat", QuantConfig(), {}).weight_scaling == "learned"
    kept = _method_config("lsq-qat", QuantConfig(weight_scaling="stats"), {"weight_scaling": "stats"})
    assert kept.weight_scaling == "stats"  # asked for by name: kept
    assert _method_config("ma-qat", QuantConfig(), {}).weight_scaling == "stats"


def test_qat_retry_after_a_bad_option_is_not_refused(tmp_path: Path) -> None:
    model = recipes.build_generator("sagan", z_dim=8, conv_dim=8, image_size=16)
    run = tmp_path / "run"
    common = dict(out_dir=str(run), num_train=8, eval_samples=0, batch_size=4, num_samples=4, loss="mse",
                  progress=False)
    with pytest.raises(ConfigError):
        recipes.quantize(model, "lsq-qat", inputs=torch.randn(16, 8), epochs=-1, **common)
    assert not run.exists()
    (run).mkdir()
    (run / "run.json").write_text('{"fingerprint": {"options": "other"}}')  # a run stopped before epoch 1
    recipes.quantize(model, "lsq-qat", inputs=torch.randn(16, 8), epochs=1, **common)
    assert (run / "checkpoint.pt").is_file()


# --------------------------------------------------------------------------- files


def test_image_folder_is_cropped_not_squashed(tmp_path: Path) -> None:
    """A 60x20 photo of red | green | blue stripes -> 16x16: scale to 48x16, keep the green centre."""
    stripes = np.zeros((20, 60, 3), dtype=np.uint8)
    stripes[:, :20, 0] = stripes[:, 20:40, 1] = stripes[:, 40:, 2] = 255
    Image.fromarray(stripes).save(tmp_path / "wide.png")
    image = load_image_folder(str(tmp_path), 16)[0]
    assert image.shape == (3, 16, 16)
    centre = image[:, :, 2:14]
    assert float(centre[1].min()) > 0.9 and float(centre[0].max()) < -0.9 and float(centre[2].max()) < -0.9
    rect = load_image_folder(str(tmp_path), (8, 12))[0]
    assert rect.shape == (3, 8, 12)
    with pytest.raises(Exception, match="does not exist"):
        load_image_folder(str(tmp_path / "nope"), 16)


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_written_files_follow_the_umask(tmp_path: Path, umask: int) -> None:
    previous = os.umask(umask)
    try:
        target = tmp_path / f"out{umask:o}.txt"
        atomic_write(target, lambda temporary: Path(temporary).write_text("x"))
        model = recipes.build_generator("sagan", z_dim=8, conv_dim=8, image_size=16)
        qmodel = recipes.quantize(model, inputs=torch.randn(4, 8), num_samples=4, progress=False)
        saved = tmp_path / f"q{umask:o}.safetensors"
        recipes.save(qmodel, saved)
    finally:
        os.umask(previous)
    for path in (target, saved):
        assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~umask)


def test_committed_demo_results_are_strict_json() -> None:
    """docs/demo/results.json (what the README's demo table quotes) parses as standard JSON."""
    import json

    def refuse(constant):
        raise ValueError(f"non-standard JSON constant {constant}")

    results = json.loads((REPO / "docs" / "demo" / "results.json").read_text(), parse_constant=refuse)
    assert isinstance(results["settings"]["n"], int) and isinstance(results["settings"]["models"], list)
    assert all(r["psnr"] is None or r["psnr"] > 0 for r in results["results"])


def test_a_typo_in_an_architecture_name_is_named_with_the_close_match(capsys) -> None:
    argv = ["quantize", "--model", "stylgan", "--checkpoint", str(STYLEGAN_DEMO), "--out", "q.safetensors", "-q"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "did you mean 'stylegan'" in err and "package.module:Class" in err and "--input-shape" not in err
