"""The openvino target end to end: IR files, the int8 check, the one runner API on both
engines, `bench --engine`, and evaluate on an exported file."""

from __future__ import annotations

import pytest
import torch

from gan_brevitas import recipes
from gan_brevitas.deploy import EngineModule, open_runner
from gan_brevitas.deploy.bench import bench
from gan_brevitas.errors import ExportError
from tests.export.test_patterns import PATTERNS, _images
from gan_brevitas.cpu_features import int8_pairs_saturate
from tests.helpers import engine_exact_config

pytest.importorskip("openvino")


@pytest.fixture(scope="module")
def residual():
    torch.manual_seed(0)
    model = PATTERNS["add"]().eval()
    qmodel = recipes.quantize(model, inputs=_images(8, 0), num_samples=8, progress=False, config=engine_exact_config())
    return model, qmodel


def test_ir_export_runs_every_conv_in_int8(residual, tmp_path):
    from gan_brevitas.export.openvino import precision_report

    _, qmodel = residual
    path = tmp_path / "g.xml"
    report = recipes.export(qmodel, path, "openvino", inputs=_images(8, 0), num_samples=8, profile=True)
    assert path.is_file() and path.with_suffix(".bin").is_file()
    assert "profile: OpenVINO:" in report.format() and "outside int8 kernels" in report.time_share
    assert report.file_bytes > path.stat().st_size
    assert not report.warnings
    precision = precision_report(path)
    assert precision.all_int8 and len(precision.int8) == 4, precision.format()
    assert not list(tmp_path.glob(".g.xml*")), "no temporary files left"


def test_interleaved_profiles_split_each_model_between_int8_kernels_and_the_rest(residual, tmp_path):
    from gan_brevitas.export.openvino import profile_time_shares

    model, qmodel = residual
    recipes.export(qmodel, tmp_path / "q.xml", "openvino", inputs=_images(8, 0), num_samples=8)
    recipes.export(model, tmp_path / "f.onnx", "float", example_input=_images(1, 0))
    x = _images(1, 1).numpy()
    quantized, floating = profile_time_shares([tmp_path / "q.xml", tmp_path / "f.onnx"], x, runs=2, threads=1)
    assert quantized.int8_ms > 0.0 and quantized.outside_int8 < 0.5, quantized
    assert floating.int8_ms == 0.0 and floating.other_ms > 0.0 and floating.outside_int8 == 1.0, floating


def test_precision_report_names_the_convs_that_stay_float(residual, tmp_path):
    from gan_brevitas.export.openvino import precision_report

    model, _ = residual
    path = tmp_path / "fp32.onnx"
    recipes.export(model, path, "float", example_input=_images(1, 0))
    precision = precision_report(path)
    assert not precision.int8 and len(precision.not_int8) == 4
    assert all(p not in ("u8", "i8") for _, p in precision.not_int8)


def test_one_runner_api_on_both_engines(residual, tmp_path):
    _, qmodel = residual
    path = tmp_path / "g.onnx"
    report = recipes.export(qmodel, path, "onnxruntime", example_input=_images(1, 0), profile=True)
    assert report.time_share.startswith("ONNX Runtime:")
    share = float(report.time_share.split(": ")[1].split("%")[0])
    assert 0 <= share < 100  # the four convs are int8 kernels: they are not all of it
    x = _images(2, 1)
    outputs = {engine: open_runner(path, engine, threads=1)(x) for engine in ("onnxruntime", "openvino")}
    step = 0.05  # both engines run the same int8 graph: they agree far below a visible step
    assert abs(outputs["onnxruntime"] - outputs["openvino"]).mean() < step
    assert open_runner(path, "openvino").generate(_images(5, 2), n=5, batch_size=2).shape == (5, 16, 16, 16)
    with pytest.raises(ExportError, match="unknown engine 'tflite'"):
        open_runner(path, "tflite")
    with pytest.raises(ExportError, match="OpenVINO IR: run it with engine='openvino'"):
        open_runner(tmp_path / "g.xml", "onnxruntime")


def test_bench_on_openvino_and_cli(residual, tmp_path, capsys):
    from gan_brevitas.cli import main
    from gan_brevitas.deploy.runner import ENGINES
    from gan_brevitas.export_commands import BENCH_ENGINES

    assert BENCH_ENGINES == ENGINES

    model, qmodel = residual
    int8, fp32 = tmp_path / "g.xml", tmp_path / "f.onnx"
    recipes.export(qmodel, int8, "openvino", inputs=_images(8, 0), num_samples=8)
    recipes.export(model, fp32, "float", example_input=_images(1, 0))
    report = bench(int8, fp32, batch_sizes=(1, 2), threads=1, warmup=1, runs=2, engine="openvino")
    assert [row.batch for row in report.rows] == [1, 2] and report.engine == "openvino"
    assert all(row.model.runs == 2 and row.speedup > 0 for row in report.rows)
    assert main(["bench", str(int8), "--engine", "openvino", "--batch", "1", "--runs", "2", "--warmup", "0"]) == 0
    assert "engine openvino" in capsys.readouterr().out


def test_evaluate_measures_the_exported_file(tmp_path):
    torch.manual_seed(0)
    model = recipes.build_generator("cyclegan", ngf=8, n_blocks=1, image_size=16).eval()
    x = _images(8, 3)
    qmodel = recipes.quantize(model, inputs=x, num_samples=8, progress=False, config=engine_exact_config())
    path = tmp_path / "g.onnx"
    recipes.export(qmodel, path, "onnxruntime")
    deployed = EngineModule(open_runner(path, "onnxruntime"))
    assert torch.allclose(deployed(x), qmodel(x), atol=0.05)
    result = recipes.evaluate(str(path), model, x, n=8, progress=False, engine="openvino", extractor="demo-cnn")
    assert result.psnr is not None and result.psnr > 20


def test_conv_transpose_is_kept_and_runs_int8_without_weight_zero_points(tmp_path):
    import onnx

    from gan_brevitas.export import passes
    from gan_brevitas.export.openvino import precision_report
    from tests.export.test_patterns import PATTERNS

    torch.manual_seed(0)
    qmodel = recipes.quantize(PATTERNS["conv_transpose"]().eval(), inputs=_images(8, 0), num_samples=8, progress=False, config=engine_exact_config())
    path = tmp_path / "ct.onnx"
    report = recipes.export(qmodel, path, "openvino", inputs=_images(8, 0), num_samples=8)
    graph = onnx.load(str(path)).graph
    weights = {init.name for init in graph.initializer}
    assert [n.op_type for n in graph.node].count("ConvTranspose") == 1
    assert not [n for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] in weights and len(n.input) > 2]
    assert any("weight zero point" in c for c in report.conversions), report.conversions
    precision = precision_report(path)
    assert precision.all_int8 and len(precision.int8) == 3, precision.format()
    # its input follows a ReLU: unsigned uint8 (the signed int8 kernel ran 2-4x slower on a real
    # translator). Without VNNI, OpenVINO picks its signed deconvolution kernel whatever the input.
    kernel = "Deconvolution i8" if int8_pairs_saturate() else "Deconvolution u8"
    assert precision.precisions.get(kernel, 0) == 1, precision.format()
    model = onnx.load(str(path))
    assert passes.drop_zero_weight_zero_points(model) == 0  # nothing left to drop


def test_signed_conv_inputs_run_in_the_uint8_kernel_with_the_same_output(tmp_path, monkeypatch):
    """CycleGAN's residual convs read the signed residual stream through a reflection pad:
    held as uint8 with zero point 128 they take OpenVINO's uint8 kernel, with the same values."""
    from gan_brevitas.export import passes, qcdq
    from gan_brevitas.export.openvino import precision_report

    torch.manual_seed(0)
    model = recipes.build_generator("cyclegan", ngf=8, n_blocks=2, image_size=16).eval()
    x = _images(8, 3)
    qmodel = recipes.quantize(model, inputs=x, num_samples=8, progress=False, config=engine_exact_config())
    report = recipes.export(qmodel, tmp_path / "u8.onnx", "openvino", inputs=x, num_samples=8)
    assert any("held as uint8 with zero point 128" in c for c in report.conversions), report.conversions
    with monkeypatch.context() as patch:
        without = tuple((run, note) for run, note in qcdq.OPENVINO_REWRITES if run is not passes.signed_conv_inputs_as_uint8)
        patch.setattr(qcdq, "OPENVINO_REWRITES", without)
        recipes.export(qmodel, tmp_path / "i8.onnx", "openvino", inputs=x, num_samples=8)
    signed = precision_report(tmp_path / "i8.onnx").precisions.get("Convolution i8", 0)
    assert signed > 0  # without the pass, the residual convs run the signed kernel
    assert precision_report(tmp_path / "u8.onnx").precisions.get("Convolution i8", 0) == 0
    outputs = [open_runner(tmp_path / f"{name}.onnx", "openvino", threads=1)(x[:2]) for name in ("u8", "i8")]
    with torch.no_grad():
        expected = qmodel(x[:2]).numpy()
    # the uint8 kernel is never farther from the model; with VNNI both kernels compute the same
    # values, without it the signed one saturates (`gan_brevitas.cpu_features`)
    assert abs(outputs[0] - expected).mean() <= abs(outputs[1] - expected).mean() + 1e-6
    if not int8_pairs_saturate():
        assert abs(outputs[0] - outputs[1]).max() < 1e-5


def test_narrow_output_conv_runs_blocked_in_int8_with_the_same_output(tmp_path, monkeypatch):
    """The RGB conv (8 -> 3, 7x7) is computed on 4x4 pixel blocks for OpenVINO too: every conv
    still runs in int8, and the output is the plain export's."""
    from gan_brevitas.export import qcdq
    from gan_brevitas.export.openvino import precision_report
    from tests.export.test_space_to_depth import RgbHead

    torch.manual_seed(0)
    x = torch.rand(6, 3, 16, 16) * 2 - 1
    qmodel = recipes.quantize(RgbHead().eval(), inputs=x, num_samples=6, progress=False, config=engine_exact_config())
    report = recipes.export(qmodel, tmp_path / "blocked.onnx", "openvino", inputs=x, num_samples=6)
    assert any("pixel blocks" in c for c in report.conversions), report.conversions
    with monkeypatch.context() as patch:
        patch.setattr(qcdq, "narrow_convs_as_space_to_depth", lambda model_proto: [])
        recipes.export(qmodel, tmp_path / "plain.onnx", "openvino", inputs=x, num_samples=6)
    precision = precision_report(tmp_path / "blocked.onnx")
    assert precision.all_int8 and len(precision.int8) == 2, precision.format()
    outputs = [open_runner(tmp_path / f"{name}.onnx", "openvino", threads=1)(x[:3]) for name in ("blocked", "plain")]
    assert abs(outputs[0] - outputs[1]).max() < 1e-5
