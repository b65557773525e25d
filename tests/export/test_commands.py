"""`gan-brevitas export | check-trt | bench` through the real CLI entry point."""

from __future__ import annotations

import json

import onnx
import pytest
from onnx import TensorProto, helper

from gan_brevitas import recipes
from gan_brevitas.cli import main


@pytest.fixture(scope="module")
def saved_sagan(exported, tmp_path_factory):
    qmodel, _, ort_report = exported["sagan"]
    folder = tmp_path_factory.mktemp("cli")
    recipes.save(qmodel, folder / "q.safetensors")
    return folder, ort_report.path


def test_export_targets_from_a_quantized_file(saved_sagan, capsys):
    folder, _ = saved_sagan
    source = str(folder / "q.safetensors")
    assert main(["export", source, "--out", str(folder / "g_int8.onnx")]) == 0
    assert main(["export", source, "--out", str(folder / "g_fp32.onnx"), "--target", "float"]) == 0
    # The paper's asymmetric activations: re-calibrated on generated latents for TensorRT.
    assert main(["export", source, "--out", str(folder / "g_trt.onnx"), "--target", "tensorrt",
                 "--num-samples", "8", "--fp16"]) == 0
    out = capsys.readouterr().out
    assert "wrote" in out and "re-calibrated on 8 samples" in out and "fp16" in out
    meta = {p.key: p.value for p in onnx.load(folder / "g_trt.onnx").metadata_props}
    assert meta["gan_brevitas.act_scheme"] == "symmetric" and meta["gan_brevitas.target"] == "tensorrt"


def test_check_trt_exit_codes(saved_sagan, capsys):
    folder, ort_file = saved_sagan
    assert main(["check-trt", str(ort_file)]) == 1  # asymmetric uint8: breaks the rules
    out = capsys.readouterr().out
    assert "symmetric-zero-point" in out and "int8-type" in out and "fix:" in out
    if (folder / "g_trt.onnx").exists():
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


def test_bench_against_fp32(saved_sagan, capsys):
    folder, ort_file = saved_sagan
    fp32 = folder / "fp32_bench.onnx"
    main(["export", str(folder / "q.safetensors"), "--out", str(fp32), "--target", "float"])
    json_path = folder / "bench.json"
    code = main(["bench", str(ort_file), "--against", str(fp32), "--batch", "1", "2", "--runs", "2",
                 "--warmup", "0", "--threads", "1", "--json", str(json_path)])
    assert code == 0
    out = capsys.readouterr().out
    assert "speed-up" in out
    data = json.loads(json_path.read_text())
    assert [row["batch"] for row in data["rows"]] == [1, 2]
    assert all(row["speedup"] > 0 for row in data["rows"])


def test_bad_inputs_are_clear_errors(tmp_path, capsys):
    not_a_model = tmp_path / "x.onnx"
    not_a_model.write_bytes(b"\x00garbage")
    assert main(["check-trt", str(not_a_model)]) == 2
    assert "is not an ONNX model" in capsys.readouterr().err
    assert main(["export", "--out", str(tmp_path / "g.onnx")]) == 2
    assert "nothing to export" in capsys.readouterr().err
    assert main(["bench", str(not_a_model)]) == 2
    assert not (tmp_path / "g.onnx").exists()
