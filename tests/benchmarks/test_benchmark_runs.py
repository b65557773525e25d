"""benchmarks/quality_suite.py and benchmarks/deploy_cpu.py measure through the harness: every
measurement is a cached run, an interrupted benchmark resumes, a repeated one measures nothing
(unless --fresh), and the report renders from the rows. The expensive measurements are fakes."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from benchmarks import deploy_cpu, quality_suite
from benchmarks.suite import SOURCES, SuiteEntry


class Interrupt(BaseException):
    """Stands for Ctrl-C in the middle of a benchmark."""


# ----------------------------------------------------------------------------- quality_suite


def _entry(name: str) -> SuiteEntry:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), nn.Tanh()).eval()
    return SuiteEntry(name, "translator", model, torch.rand(2, 3, 8, 8) * 2 - 1, torch.rand(3, 3, 8, 8) * 2 - 1,
                      8, (-1.0, 1.0), SOURCES["sketch_translator"])


class FakeQuality:
    """Fake quantizers (the output plus method-dependent noise), the fp32 export and ORT run;
    records what was measured and can stop in the middle."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, entries: list[SuiteEntry]) -> None:
        self.calls: list[tuple[str, str]] = []
        self.exports: list[str] = []
        self.stop_at: tuple[str, str] | None = None
        monkeypatch.setattr(quality_suite, "load_suite", lambda names, sizes: entries)
        monkeypatch.setattr(quality_suite, "_versions", lambda: {"torch": "fake"})
        monkeypatch.setattr(quality_suite, "export_fp32_onnx", lambda model, example, path: self.exports.append(path.name))
        monkeypatch.setattr(quality_suite, "_ort_run", self._ort_run)
        monkeypatch.setattr(quality_suite, "method_table", self._table)

    def _ort_run(self, path, inputs, threads):
        self.calls.append((path.name.split(".")[0], quality_suite.FLOAT_RUN))
        return quality_suite._run_torch(_entry("x").model, inputs)

    def _table(self, ws, brecq_steps=0):
        def method(name: str, noise: float):
            def quantize(entry: SuiteEntry) -> quality_suite.Outcome:
                if self.stop_at == (entry.name, name):
                    raise Interrupt
                self.calls.append((entry.name, name))
                if name == "ours-mixed-5bit":
                    raise quality_suite.NotAvailable("no mixed precision in the fake")
                out = ws.reference() + noise * torch.linspace(-1, 1, ws.reference().numel()).view_as(ws.reference())
                return quality_suite.Outcome(out, ["tail (kept float)"], f"fake {name}")

            return quantize

        return {name: method(name, 0.01 * (i + 1)) for i, name in enumerate(quality_suite.METHODS)}


def test_quality_suite_resumes_caches_and_renders(monkeypatch, tmp_path):
    entries = [_entry("one"), _entry("two")]
    fake = FakeQuality(monkeypatch, entries)
    argv = ["--methods", "ours-default,nncf,ours-mixed-5bit", "--out", str(tmp_path / "out"),
            "--cache", str(tmp_path / "cache"), "--threads", "1"]
    fake.stop_at = ("two", "nncf")
    with pytest.raises(Interrupt):
        quality_suite.main(argv)
    done = [("one", "fp32-onnx"), ("one", "ours-default"), ("one", "nncf"), ("one", "ours-mixed-5bit"),
            ("two", "fp32-onnx"), ("two", "ours-default")]
    assert fake.calls == done and fake.exports == ["one.fp32.onnx", "two.fp32.onnx"]

    fake.stop_at = None
    quality_suite.main(argv)  # resumes: only what had not finished
    assert fake.calls == done + [("two", "nncf"), ("two", "ours-mixed-5bit")]
    assert fake.exports[2:] == ["two.fp32.onnx"]  # nncf needs the fp32 export; the cached noise floor did not
    report = json.loads((tmp_path / "out" / "quality_suite.json").read_text())
    assert [(r["model"], r["method"], r["status"]) for r in report["rows"]] == [
        (m, method, "not available" if method == "ours-mixed-5bit" else "ok")
        for m in ("one", "two") for method in ("ours-default", "nncf", "ours-mixed-5bit")]
    assert len(report["rows"][0]["psnr_per_image"]) == 3 and report["rows"][0]["n"] == 3
    assert report["meta"]["two"]["fp32_ort_vs_torch_psnr_db"] == 100.0 and report["meta"]["two"]["n_calib"] == 2
    markdown = (tmp_path / "out" / "quality_suite.md").read_text()
    assert markdown == quality_suite.write_markdown(report, ["one", "two"], ["ours-default", "nncf", "ours-mixed-5bit"])
    assert "| ours-mixed-5bit | not available | not available |" in markdown
    assert "- two / nncf: tail (kept float)" in markdown and (tmp_path / "out" / "quality_suite.png").is_file()

    calls, exports = len(fake.calls), len(fake.exports)
    quality_suite.main(argv)  # all cached: nothing is measured, the same rows are written
    assert len(fake.calls) == calls and len(fake.exports) == exports
    again = json.loads((tmp_path / "out" / "quality_suite.json").read_text())
    assert again["rows"] == report["rows"] and again["meta"] == report["meta"]

    quality_suite.main([*argv, "--fresh"])
    assert fake.calls[calls:] == [(m, method) for m in ("one", "two")
                                  for method in ("fp32-onnx", "ours-default", "nncf", "ours-mixed-5bit")]


def test_mixed_precision_target_is_paired_per_image_and_the_control_reported_beside_it():
    def row(method, per_image):
        return {"model": "m", "method": method, "status": "ok", "psnr_per_image": per_image}

    rows = [row("ours-default", [40.0, 38.0]), row("ours-mixed-5bit-qronos", [37.0, 36.5]),
            row(quality_suite.MIXED_CONTROL, [39.0, 35.0])]
    found = {t["target"].split(" ")[0 if not t["target"].startswith("control") else 1]: t
             for t in quality_suite.targets(rows, ["m"])}
    assert (found["ours-mixed-5bit-qronos"]["margin_db"], found["ours-mixed-5bit-qronos"]["worst_image_db"]) == (-2.25, -3.0)
    assert not found["ours-mixed-5bit-qronos"]["met"]
    control = found[quality_suite.MIXED_CONTROL]
    assert (control["margin_db"], control["worst_image_db"], control["met"]) == (-2.0, -3.0, True)
    assert "above the budget" in control["target"]


# ----------------------------------------------------------------------------- deploy_cpu


def test_openvino_ceiling_is_nncf_total_over_our_int8_time():
    out = {"ours OpenVINO": {"int8_ms": 8.0, "other_ms": 1.0}, "NNCF OpenVINO": {"int8_ms": 7.5, "other_ms": 0.9}}
    line = deploy_cpu._ov_ceiling(out)
    assert "ours int8 kernels 8.00 ms + other 1.00 ms" in line and line.endswith("at most 1.05x")
    assert deploy_cpu._ov_ceiling({"ours OpenVINO": out["ours OpenVINO"]}) is None  # NNCF failed
    assert deploy_cpu._ov_ceiling({"ours OpenVINO": {"outside_int8": 0.1}, "NNCF OpenVINO": {}}) is None  # older cache


class FakeDeploy:
    """A fake `run_case`: made-up latencies, PSNRs and profiles, NNCF failing to build."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, cases: list[deploy_cpu.Case]) -> None:
        self.measured: list[tuple[str, list[tuple[int, int]]]] = []
        self.stop_at: str | None = None
        monkeypatch.setattr(deploy_cpu, "suite_cases", lambda: cases)
        monkeypatch.setattr(deploy_cpu, "_versions", lambda: {"torch": "fake"})
        monkeypatch.setattr(deploy_cpu, "run_case", self.run_case)

    def run_case(self, case, grid, runs, warmup):
        if case.name == self.stop_at:
            raise Interrupt
        self.measured.append((case.name, list(grid)))
        working = [label for label in deploy_cpu.DEPLOYMENTS if label != "NNCF OpenVINO"]
        latency = [{"deployment": label, "batch": b, "threads": t, "n": runs, "median_ms": 10.0 * b / t / (1 + i),
                    "p25_ms": 9.0, "p75_ms": 11.0} for b, t in grid for i, label in enumerate(working)]
        return {"model": case.name, "note": "fake", "build_s": {"quantize_static": 1.0, "ours quantize": 2.0},
                "n_calib": 2, "n_test": 2, "input_shape": [3, 8, 8],
                "psnr_db": {label: 30.0 + i for i, label in enumerate(working) if "fp32" not in label},
                "qfid": {"ours ORT": {"qfid": 0.25, "qfid_halves": [0.3, 0.2]}},
                "latency": latency, "outside_int8": {"ours ORT": {"outside_int8": 0.1, "top": [["Conv", 0.6]]},
                                                     "ours OpenVINO": {"outside_int8": 0.2, "top": [["Add", 0.1]]}},
                "openvino_t1": {"ours OpenVINO": {"outside_int8": 0.1, "top": [], "int8_ms": 0.9, "other_ms": 0.1}},
                "failed": {"NNCF OpenVINO": "nncf: RuntimeError: boom"}}


def _case(name: str) -> deploy_cpu.Case:
    torch.manual_seed(0)
    return deploy_cpu.Case(name, nn.Conv2d(3, 3, 1), torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8), note="fake")


def test_deploy_cpu_resumes_caches_and_renders(monkeypatch, tmp_path):
    cases = [_case("a"), _case("b")]
    fake = FakeDeploy(monkeypatch, cases)
    argv = ["--models", "a", "b", "--grid", "1x1", "8x2", "--runs", "2", "--out", str(tmp_path / "out"),
            "--cache", str(tmp_path / "cache")]
    fake.stop_at = "b"
    with pytest.raises(Interrupt):
        deploy_cpu.main(argv)
    assert fake.measured == [("a", [(1, 1), (8, 2)])]
    first = json.loads((tmp_path / "out" / "deploy_cpu.json").read_text())  # written after each generator
    assert [r["model"] for r in first["results"]] == ["a"]

    fake.stop_at = None
    deploy_cpu.main(argv)
    assert fake.measured == [("a", [(1, 1), (8, 2)]), ("b", [(1, 1), (8, 2)])]  # a came from the cache
    report = json.loads((tmp_path / "out" / "deploy_cpu.json").read_text())
    result = report["results"][1]
    expected = fake.run_case(cases[1], [(1, 1), (8, 2)], 2, 1)
    fake.measured.pop()  # that call was the test's own
    assert {k: v for k, v in result.items() if k != "targets"} == expected  # rows -> the generator's results
    assert [t["ours_ort_vs_fp32"] for t in result["targets"]] == [pytest.approx(6.0)] * 2
    markdown = (tmp_path / "out" / "deploy_cpu.md").read_text()
    assert markdown == deploy_cpu.markdown(report)
    assert "| NNCF OpenVINO | failed | nncf: RuntimeError: boom | |" in markdown
    assert "| ours ORT | 35.0, qFID 0.2500 | 1.7 ms, 6.00x (n=2) | 6.7 ms, 6.00x (n=2) |" in markdown
    assert "- build wall times (s): quantize_static 1, ours quantize 2" in markdown  # build order kept

    deploy_cpu.main(argv)  # all cached
    assert len(fake.measured) == 2
    deploy_cpu.main([*argv[:3], "--grid", "1x1", "1x2", *argv[6:]])  # a new setting: only it is measured
    assert fake.measured[2:] == [("a", [(1, 2)]), ("b", [(1, 2)])]
    deploy_cpu.main([*argv, "--fresh"])
    assert fake.measured[4:] == [("a", [(1, 1), (8, 2)]), ("b", [(1, 1), (8, 2)])]
