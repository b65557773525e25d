"""gan_brevitas.trt: what runs without TensorRT (clear dependency errors, the rules gate), and the engine
round trip where TensorRT and a GPU exist (skipped otherwise, with the reason)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from gan_brevitas import recipes
from gan_brevitas.errors import ExportError, MissingDependencyError
from gan_brevitas.trt.engine import BuildSpec, build_engine

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None and importlib.util.find_spec("pycuda") is not None


def test_build_refuses_a_graph_that_breaks_the_rules(tmp_path):
    import onnx

    from tests.export.graphs import qdq_conv_model

    onnx.save(qdq_conv_model(act_zero_point=3, act_dtype=np.uint8), tmp_path / "g.onnx")
    with pytest.raises(ExportError, match="breaks TensorRT's rules.*target='tensorrt'(.|\n)*symmetric-zero-point"):
        build_engine(tmp_path / "g.onnx", tmp_path / "g.engine")
    assert not (tmp_path / "g.engine").exists()


@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed: the missing-dependency path cannot be shown")
def test_missing_tensorrt_is_a_clear_error(tmp_path):
    import onnx

    from tests.export.graphs import qdq_conv_model

    onnx.save(qdq_conv_model(), tmp_path / "g.onnx")  # a graph that passes the rules
    with pytest.raises(MissingDependencyError, match="TensorRT is not importable.*gan-brevitas\\[trt\\]"):
        build_engine(tmp_path / "g.onnx", tmp_path / "g.engine")
    assert not (tmp_path / "g.engine").exists()


def test_build_spec_is_validated():
    with pytest.raises(ExportError, match="min_batch <= opt_batch <= max_batch"):
        BuildSpec(min_batch=4, opt_batch=2)


@pytest.mark.skipif(not HAS_TENSORRT, reason="TensorRT and pycuda are not installed (no GPU stack on this machine)")
def test_engine_matches_onnxruntime(exported, tmp_path):  # pragma: no cover - needs a GPU
    from gan_brevitas.export.ort import OrtGenerator
    from gan_brevitas.trt.engine import EngineRunner, time_engine

    qmodel, x, _ = exported["sagan"]
    report = recipes.export(qmodel, tmp_path / "g.onnx", "tensorrt", inputs=x, num_samples=8)
    engine = build_engine(report.path, tmp_path / "g.engine", BuildSpec(max_batch=8))
    got = EngineRunner(engine)(x[:4].numpy())
    expected = OrtGenerator(report.path)(x[:4])
    assert np.abs(got - expected).mean() < 0.02
    latency = time_engine(engine, report.path, (1, 8), warmup=2, runs=5)
    assert [row.batch for row in latency] == [1, 8] and all(row.median_ms > 0 for row in latency)
