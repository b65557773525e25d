"""`gan-brevitas export | check-trt | bench` through the real CLI entry point."""

from __future__ import annotations

import contextlib
import io
import json

import onnx
import pytest
import torch
from onnx import TensorProto, helper

from gan_brevitas import recipes
from gan_brevitas.cli import main


@pytest.fixture(scope="module")
def cli_exports(exported, tmp_path_factory):
    """The three targets exported through the CLI from a saved quantized SAGAN: (folder,
    onnxruntime file, printed output, exit codes)."""
    qmodel, _, _ = exported["sagan"]
    folder = tmp_path_factory.mktemp("cli")
    source = str(folder / "q.safetensors")
    recipes.save(qmodel, source)
    runs = [
        ["export", source, "--out", str(folder / "g_int8.onnx")],
        ["export", source, "--out", str(folder / "g_fp32.onnx"), "--target", "float"],
        # The paper's asymmetric activations: re-calibrated on generated latents for TensorRT.
        ["export", source, "--out", str(folder / "g_trt.onnx"), "--target", "tensorrt", "--num-samples", "8", "--fp16"],
    ]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        codes = [main(argv) for argv in runs]
    return folder, codes, printed.getvalue()


def test_export_targets_from_a_quantized_file(cli_exports):
    folder, codes, out = cli_exports
    assert codes == [0, 0, 0]
    assert "wrote" in out and "re-calibrated on 8 samples" in out and "fp16" in out
    meta = {p.key: p.value for p in onnx.load(folder / "g_trt.onnx").metadata_props}
    assert meta["gan_brevitas.act_scheme"] == "symmetric" and meta["gan_brevitas.target"] == "tensorrt"
    meta = {p.key: p.value for p in onnx.load(folder / "g_fp32.onnx").metadata_props}
    assert meta["gan_brevitas.target"] == "float"


def test_check_trt_exit_codes(cli_exports, capsys):
    folder, _, _ = cli_exports
    assert main(["check-trt", str(folder / "g_int8.onnx")]) == 1  # asymmetric uint8: breaks the rules
    out = capsys.readouterr().out
    assert "symmetric-zero-point" in out and "int8-type" in out and "fix:" in out
    assert main(["check-trt", str(folder / "g_trt.onnx")]) == 0
    assert "TensorRT accepts this graph" in capsys.readouterr().out
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    onnx.save(helper.make_model(graph), folder / "float.onnx")
    assert main(["check-trt", str(folder / "float.onnx")]) == 0
    assert "nothing to check" in capsys.readouterr().out


def test_bench_against_fp32(cli_exports, capsys):
    folder, _, _ = cli_exports
    json_path = folder / "bench.json"
    code = main(["bench", str(folder / "g_int8.onnx"), "--against", str(folder / "g_fp32.onnx"),
                 "--batch", "1", "2", "--runs", "2", "--warmup", "0", "--threads", "1", "--json", str(json_path)])
    assert code == 0
    assert "speed-up" in capsys.readouterr().out
    data = json.loads(json_path.read_text())
    assert [row["batch"] for row in data["rows"]] == [1, 2]
    assert all(row["speedup"] > 0 for row in data["rows"])


def test_bad_inputs_are_clear_errors(tmp_path, capsys):
    not_a_model = tmp_path / "x.onnx"
    not_a_model.write_bytes(b"\x00garbage")
    assert main(["check-trt", str(not_a_model)]) == 1  # a bad file: the run failed
    assert "is not an ONNX model" in capsys.readouterr().err
    assert main(["export", "--out", str(tmp_path / "g.onnx")]) == 2  # nothing named: bad usage
    assert "nothing to export" in capsys.readouterr().err
    assert main(["bench", str(not_a_model)]) == 1
    assert not (tmp_path / "g.onnx").exists()


def test_the_recalibration_note_counts_the_samples_it_had():
    from gan_brevitas.export.qcdq import ExportOptions, _samples_used

    options = ExportOptions(target="tensorrt", num_samples=128)
    assert _samples_used(torch.zeros(8, 3, 4, 4), options) == "8 samples"  # fewer images than asked for
    assert _samples_used(lambda n: torch.zeros(n, 16), options) == "128 samples"  # a sampler never runs out
    assert _samples_used([torch.zeros(4, 16)], options) == "up to 128 samples"  # batches may end early
