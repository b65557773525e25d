"""qFID of the suite's noise-to-image generator (benchmarks/suite/qfid.py) and how the quality
benchmark reports it: zero for identical images, growing with the error, a target row that must
hold on the whole set and on each half."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from benchmarks import quality_suite
from benchmarks.suite import SOURCES, SuiteEntry
from benchmarks.suite.qfid import qfid_scores


def _images(n: int = 64, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 28, 28, generator=generator) * 2 - 1


def test_qfid_is_zero_for_identical_images_and_grows_with_the_error():
    reference = _images()
    noise = torch.randn(reference.shape, generator=torch.Generator().manual_seed(1))
    same = qfid_scores(reference, reference)
    small = qfid_scores((reference + 0.02 * noise).clamp(-1, 1), reference)
    large = qfid_scores((reference + 0.2 * noise).clamp(-1, 1), reference)
    assert same == {"qfid": 0.0, "qfid_halves": [0.0, 0.0]}
    assert 0 < small["qfid"] < large["qfid"]
    assert all(0 < a < b for a, b in zip(small["qfid_halves"], large["qfid_halves"]))


def test_qfid_rejects_sets_that_do_not_pair():
    with pytest.raises(ValueError, match="same shape"):
        qfid_scores(_images(16), _images(32))


def test_quality_suite_scores_a_noise_to_image_generator_by_qfid(monkeypatch, tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 28 * 28), nn.Tanh(), nn.Unflatten(1, (1, 28, 28))).eval()
    entry = SuiteEntry("latents", "noise-to-image", model, torch.randn(4, 8), torch.randn(32, 8), 28, (-1.0, 1.0),
                       SOURCES["dcgan_mnist"])
    monkeypatch.setattr(quality_suite, "load_suite", lambda names, sizes: [entry])
    monkeypatch.setattr(quality_suite, "_versions", lambda: {"torch": "fake"})
    monkeypatch.setattr(quality_suite, "export_fp32_onnx", lambda model, example, path: None)
    monkeypatch.setattr(quality_suite, "_ort_run", lambda path, inputs, threads: quality_suite._run_torch(model, inputs))

    def table(ws, brecq_steps=0):
        def noisy(scale: float):
            def quantize(e: SuiteEntry) -> quality_suite.Outcome:
                noise = torch.randn(ws.reference().shape, generator=torch.Generator().manual_seed(2))
                return quality_suite.Outcome((ws.reference() + scale * noise).clamp(-1, 1), [])
            return quantize

        return {"ours-default": noisy(0.01), "nncf": noisy(0.1)}

    monkeypatch.setattr(quality_suite, "method_table", table)
    quality_suite.main(["--methods", "ours-default,nncf", "--out", str(tmp_path), "--cache", str(tmp_path / "c"),
                        "--threads", "1"])
    report = json.loads((tmp_path / "quality_suite.json").read_text())
    ours, nncf = report["rows"]
    assert 0 < ours["qfid"] < nncf["qfid"] and len(ours["qfid_halves"]) == 2
    assert report["meta"]["latents"]["fp32_ort_vs_torch_qfid"] == 0.0
    qfid_target = next(t for t in report["targets"] if "qFID" in t["target"])
    assert qfid_target["anchor"] == "nncf" and qfid_target["met"]
    markdown = (tmp_path / "quality_suite.md").read_text()
    assert f"qFID {ours['qfid']:.4f} vs {nncf['qfid']:.4f}" in markdown


def test_a_deployment_whose_images_cannot_be_scored_fails_alone(monkeypatch, tmp_path):
    from benchmarks import deploy_cpu

    reference = _images(16)
    broken = reference.clone()
    broken[3, 0, 5, 5] = float("nan")
    outputs = {"ours ORT": broken.numpy()}

    class Runner:
        def __init__(self, label):
            self.label, self.calls = label, 0

        def __call__(self, x):
            self.calls += 1
            return outputs.get(self.label, reference.numpy())[self.calls - 1 : self.calls]

    case = deploy_cpu.Case("latents", nn.Identity(), torch.randn(4, 8), torch.randn(16, 8), note="noise-to-image")
    case.files = {label: tmp_path / label for label in deploy_cpu.DEPLOYMENTS}
    monkeypatch.setattr(deploy_cpu, "open_runner", lambda path, engine, threads, shape: Runner(path.name))
    psnr, qfid = deploy_cpu.quality(case)
    assert "qFID" in case.failed["ours ORT"] and "NaN" in case.failed["ours ORT"]
    assert "ours ORT" not in psnr and "ours ORT" not in qfid
    assert qfid["ours OpenVINO"]["qfid"] == 0.0 and psnr["ours OpenVINO"] == float("inf")


def test_the_quality_suite_keeps_a_row_whose_images_cannot_be_scored():
    broken = _images(16)
    broken[0, 0, 0, 0] = float("nan")
    fields = quality_suite._qfid_fields(broken, _images(16))
    assert fields["qfid"] is None and "NaN" in fields["qfid_error"]


@pytest.mark.parametrize("a, b, verdict", [
    ((0.1, [0.2, 0.2]), (0.3, [0.4, 0.5]), "holds"),
    ((0.3, [0.4, 0.5]), (0.1, [0.2, 0.2]), "reversed"),
    ((0.1, [0.2, 0.6]), (0.3, [0.4, 0.5]), "tie"),  # one half disagrees
])
def test_a_finding_holds_by_qfid_only_on_the_whole_set_and_both_halves(a, b, verdict):
    from benchmarks import quality_findings
    from gan_brevitas.harness import ResultRow

    def row(scores):
        return ResultRow("m", "vanilla-ptq", "x", {}, 8, 0.0, {"qfid": scores[0], "qfid_halves": scores[1]})

    assert quality_findings._qfid_verdict(row(a), row(b))["qfid_verdict"] == verdict
    assert quality_findings._qfid_verdict(row(a), ResultRow("m", "v", "x", {}, 8, 0.0, {})) == {}
