"""benchmarks/deploy_cpu.py: one deployment that fails becomes a row marked failed, with its
error, and the run goes on."""

from __future__ import annotations


import pytest
import torch
from torch import nn

from gan_brevitas import recipes

pytest.importorskip("openvino")


def test_a_failing_deployment_is_a_failed_row_not_a_crash(tmp_path):
    from benchmarks import deploy_cpu

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Tanh()).eval()
    fp32 = tmp_path / "f.onnx"
    recipes.export(model, fp32, "float", example_input=torch.zeros(1, 3, 8, 8))
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx file")
    case = deploy_cpu.Case("tiny", model, torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8) * 2 - 1)
    case.files = {label: fp32 for label in deploy_cpu.DEPLOYMENTS}
    case.files["quantize_static OpenVINO"] = broken

    psnr, qfid = deploy_cpu.quality(case)
    rows = deploy_cpu.latency(case, [(1, 1)], runs=1, warmup=0)
    assert "quantize_static OpenVINO" in case.failed and "OpenVINO" in case.failed["quantize_static OpenVINO"]
    assert "quantize_static OpenVINO" not in psnr and psnr["ours ORT"] == float("inf")
    assert qfid == {}  # qFID only for noise-to-image generators
    assert {r["deployment"] for r in rows} == set(deploy_cpu.DEPLOYMENTS) - {"quantize_static OpenVINO"}

    result = {"model": "tiny", "note": "test", "input_shape": [3, 8, 8], "n_calib": 2, "n_test": 2,
              "build_s": {}, "psnr_db": psnr, "latency": rows, "outside_int8": {}, "failed": dict(case.failed)}
    result["targets"] = [deploy_cpu.targets(result, 1, 1)]
    report = {"command": "test", "machine": "m", "cpu_features": [], "load_before": 0, "load_after": 0,
              "wall_s": 1.0, "results": [result]}
    text = deploy_cpu.markdown(report)
    assert "| quantize_static OpenVINO | failed | compile / run" in text
    assert "threads): ours ORT n/a" in text and "ours OpenVINO / NNCF n/a" not in text  # not profiled; all timed
    assert not result["targets"][0]["outside_int8_met"]
    figure = deploy_cpu.figure(report)  # the failed rows are left out of the bars, not plotted as zero
    labels = [label.get_text() for label in figure.axes[0].get_yticklabels()]
    assert "fp32 ORT" in labels and "quantize_static OpenVINO" not in labels, labels
    import matplotlib.pyplot as plt

    plt.close(figure)
