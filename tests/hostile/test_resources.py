"""Point 9: requests that would run for days or exhaust memory are refused up front with the
estimate and the override; graph readers do not load external data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from gan_brevitas import cli, limits, recipes
from gan_brevitas.errors import ExportError, ResourceLimitError
from gan_brevitas.deploy.bench import bench
from gan_brevitas.export.rules import check_tensorrt
from gan_brevitas.inputs import iter_batches, latent_sampler
from gan_brevitas.metrics.evaluate import evaluate
from tests.hostile.conftest import SAGAN


def test_one_hundred_million_samples_are_refused_before_the_first() -> None:
    with pytest.raises(ResourceLimitError, match=r"100,000,000 samples requested, above the limit of 200,000 .* GAN_BREVITAS_NO_LIMITS=1"):
        next(iter_batches(latent_sampler(8), 100_000_000, 1))


def test_the_limit_can_be_lifted(monkeypatch) -> None:
    monkeypatch.setenv(limits.OVERRIDE_ENV_VAR, "1")
    assert next(iter_batches(latent_sampler(8), 100_000_000, 2)).shape == (2, 8)


def test_cli_quantize_with_1e8_samples_exits_1(tmp_path: Path, capsys) -> None:
    checkpoint = tmp_path / "g.pth"
    torch.save(recipes.build_generator("sagan", **SAGAN).state_dict(), checkpoint)
    code = cli.main(["quantize", "--model", "sagan", "--checkpoint", str(checkpoint), "--size", "32",
                     "--num-samples", "100000000", "--out", str(tmp_path / "q.safetensors")])
    assert code == 1
    assert "100,000,000 samples requested" in capsys.readouterr().err
    assert not (tmp_path / "q.safetensors").exists()


def test_evaluate_estimates_memory_before_generating(quantized_sagan, monkeypatch) -> None:
    qmodel, _ = quantized_sagan
    model = recipes.build_generator("sagan", **SAGAN)
    monkeypatch.setattr(limits, "available_memory_bytes", lambda: 2**30)
    with pytest.raises(ResourceLimitError, match=r"evaluating 100,000 images of 32x32 px would need about 3\.4 GiB"):
        evaluate(qmodel, model, latent_sampler(32), n=100_000)


def _huge_input_model(path: Path, side: int) -> Path:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, side, side])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, side, side])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_bench_refuses_a_huge_declared_input(tmp_path: Path) -> None:
    path = _huge_input_model(tmp_path / "huge.onnx", 100_000)
    with pytest.raises(ResourceLimitError, match=r"the input 'x' \[8, 3, 100000, 100000\] that .* declares would need about"):
        bench(path, batch_sizes=(1, 8))


@pytest.mark.parametrize("batches", [(0,), (-1, 8), ()])
def test_bench_batch_sizes_must_be_positive(tmp_path: Path, batches) -> None:
    path = _huge_input_model(tmp_path / "small.onnx", 4)
    with pytest.raises(ExportError, match="batch sizes must be integers >= 1"):
        bench(path, batch_sizes=batches)


def test_cli_bench_batch_zero_exits_1(tmp_path: Path, capsys) -> None:
    path = _huge_input_model(tmp_path / "small.onnx", 4)
    assert cli.main(["bench", str(path), "--batch", "0"]) == 1
    assert "batch sizes must be integers >= 1, got [0]" in capsys.readouterr().err


def test_rules_checker_reads_the_graph_without_external_data(tmp_path: Path, monkeypatch) -> None:
    weight = numpy_helper.from_array(np.ones((4, 3, 1, 1), np.float32), "w")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 4, 4])
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"])], "g", [x], [y], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "m.onnx"
    onnx.save(model, path, save_as_external_data=True, location="m.data", size_threshold=0)
    assert (tmp_path / "m.data").exists()
    loads: list[bool] = []
    real_load = onnx.load

    def spy(*args, **kwargs):
        loads.append(kwargs.get("load_external_data", True))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(onnx, "load", spy)
    report = check_tensorrt(path)
    assert loads == [False]
    assert not report.quantized


def test_bench_threads_must_be_positive(tmp_path: Path) -> None:
    path = _huge_input_model(tmp_path / "small.onnx", 4)
    with pytest.raises(ExportError, match="threads must be an integer >= 1"):
        bench(path, batch_sizes=(1,), threads=-1)


def test_reproduce_threads_zero_exits_2(tmp_path: Path, capsys) -> None:
    recipe = Path(__file__).resolve().parents[2] / "recipes" / "figure1" / "sagan_act_quantiles.toml"
    assert cli.main(["reproduce", str(recipe), "--threads", "0", "--out", str(tmp_path)]) == 2
    assert "--threads must be >= 1, got 0" in capsys.readouterr().err
