"""`gan_brevitas.cpu_features`: which processors saturate uint8 x int8 pair sums, the export's
warning there, and that 7-bit weights really keep ONNX Runtime's int8 kernel exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from gan_brevitas import QuantConfig, recipes
from gan_brevitas.cpu_features import (SATURATION_FREE_WEIGHT_BITS, cpu_flags, int8_features,
                                       int8_pairs_saturate)
from gan_brevitas.export import qcdq

AVX2 = frozenset({"sse4_2", "avx", "avx2", "fma"})


@pytest.mark.parametrize("extra,saturates", [
    ((), True),                          # AVX2 only (AMD Zen 2/3, Intel Haswell..Skylake client)
    (("avx512f", "avx512bw"), True),     # Skylake-SP: AVX-512 without VNNI
    (("avx512bw", "avx512_vnni"), False),  # Cascade Lake, Zen 4
    (("avx_vnni",), False),              # Alder Lake
    (("amx_int8", "avx512_vnni"), False),  # Sapphire Rapids
])
def test_saturation_follows_the_instruction_sets(extra, saturates):
    assert int8_pairs_saturate(AVX2 | frozenset(extra)) is saturates


def test_unknown_or_non_x86_processors_are_not_flagged(tmp_path):
    assert int8_pairs_saturate(frozenset()) is False
    assert int8_pairs_saturate(frozenset({"neon", "asimd"})) is False
    assert cpu_flags(tmp_path / "missing") is None
    assert int8_features(AVX2 | {"avx512_vnni"}) == "avx2, avx512_vnni"
    assert int8_features(frozenset({"sse2"})) == "none"


def _qlinear_conv_error(weight_max: int) -> float:
    """Largest error of ONNX Runtime's uint8 x int8 QLinearConv (identity requantization
    scale) against the exact integer result, with weight codes in [-weight_max, weight_max)."""
    ort = pytest.importorskip("onnxruntime")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (1, 16, 8, 8)).astype(np.uint8)
    w = rng.integers(-weight_max, weight_max, (16, 16, 1, 1)).astype(np.int8)
    scale = np.float32(2.0 ** 10)
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.array(0, np.uint8), "xz"),
             numpy_helper.from_array(np.array(0, np.int8), "wz"), numpy_helper.from_array(np.float32(1), "s"),
             numpy_helper.from_array(scale, "ys"), numpy_helper.from_array(np.array(128, np.uint8), "yz")]
    node = helper.make_node("QLinearConv", ["x", "s", "xz", "w", "s", "wz", "ys", "yz"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.UINT8, x.shape)],
                              [helper.make_tensor_value_info("y", TensorProto.UINT8, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    got = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    exact = np.einsum("nchw,oc->nohw", x.astype(np.int64), w[:, :, 0, 0].astype(np.int64))
    return float(np.abs(got.astype(np.int64) - np.clip(np.round(exact / scale) + 128, 0, 255)).max())


def test_seven_bit_weights_keep_onnx_runtime_exact_and_the_flag_tells_when_eight_are_not():
    assert _qlinear_conv_error(2 ** (SATURATION_FREE_WEIGHT_BITS - 1)) == 0
    # full-range 8-bit codes: exact with VNNI / AMX, saturated where the flag says so
    assert (_qlinear_conv_error(128) > 0) is int8_pairs_saturate()


def test_export_warns_where_this_cpu_saturates_and_names_the_fix(tmp_path, monkeypatch):
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 3, padding=1)).eval()
    x = torch.rand(4, 3, 8, 8)

    def warnings_of(config: QuantConfig, name: str) -> tuple[str, ...]:
        qmodel = recipes.quantize(model, inputs=x, num_samples=4, progress=False, config=config)
        return recipes.export(qmodel, tmp_path / f"{name}.onnx", "onnxruntime", example_input=x[:1]).warnings

    monkeypatch.setattr(qcdq, "int8_pairs_saturate", lambda: True)
    first = [w for w in warnings_of(QuantConfig(), "w8") if "saturate" in w]
    assert len(first) == 1 and "first layer ('0'" in first[0], first
    # the config the warning names: the first layer at 7 bits, then only the milder note on the rest
    fixed = warnings_of(QuantConfig(layers=(("0", {"weight_bits": 7}),)), "first7")
    assert [w for w in fixed if "saturate" in w and "1 layer(s)" in w and "first layer" not in w], fixed
    assert not [w for w in warnings_of(QuantConfig(weight_bits=7), "w7") if "saturate" in w]
    monkeypatch.setattr(qcdq, "int8_pairs_saturate", lambda: False)
    assert not [w for w in warnings_of(QuantConfig(), "vnni") if "saturate" in w]
