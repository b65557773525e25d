"""Whether this processor's int8 kernels compute 8-bit weights exactly.

ONNX Runtime and OpenVINO multiply uint8 activations by int8 weights with ``vpmaddubsw`` on x86
processors that have AVX2 (or AVX-512) but no VNNI: it adds each pair of products into a
16-bit integer and saturates there. With full-range 8-bit weights and activations a pair sum
reaches 2 x 255 x 127 = 64770 > 32767, so the engine's output differs from the model's
(measured on an AMD EPYC with AVX2 only, ONNX Runtime 1.32, default W8A8: the suite's
photo -> sketch translator 35.9 dB as the PyTorch model, 21.1 dB as the deployed file).
7-bit weights (codes in [-64, 63]) keep every pair sum in range: what NNCF's overflow fix
and ONNX Runtime's ``reduce_range`` do. VNNI (``vpdpbusd``) and AMX add in 32 bits.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Optional

#: Instruction-set flags (Linux /proc/cpuinfo names) with int8 dot products that add in 32 bits.
EXACT_INT8_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
#: Flags of the 16-bit-pair int8 path (``vpmaddubsw``) the engines use without them.
PAIRWISE_INT8_FLAGS = ("avx2", "avx512bw")
#: Weight bits whose products never saturate a 16-bit pair sum (7-bit codes: |w| <= 64).
SATURATION_FREE_WEIGHT_BITS = 7


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> Optional[frozenset[str]]:
    """The instruction-set flags of this processor, or None where they cannot be read
    (not Linux, or not x86)."""
    if platform.machine().lower() not in ("x86_64", "amd64") or not cpuinfo.is_file():
        return None
    for line in cpuinfo.read_text(errors="replace").splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return None


def int8_pairs_saturate(flags: Optional[frozenset[str]] = None) -> bool:
    """True when the CPU int8 engines add uint8 x int8 product pairs in 16 bits here (x86 with
    AVX2 or AVX-512 BW but no VNNI / AMX): 8-bit weights then run inexactly on ONNX Runtime and
    OpenVINO. ``flags`` defaults to this processor's; False where they are unknown."""
    flags = cpu_flags() if flags is None else flags
    if not flags:
        return False
    return any(f in flags for f in PAIRWISE_INT8_FLAGS) and not any(f in flags for f in EXACT_INT8_FLAGS)


def int8_features(flags: Optional[frozenset[str]] = None) -> str:
    """The int8 instruction sets present, e.g. "avx2" or "avx2, avx512_vnni" (for reports)."""
    flags = cpu_flags() if flags is None else flags
    if flags is None:
        return "unknown"
    present = [f for f in PAIRWISE_INT8_FLAGS + EXACT_INT8_FLAGS if f in flags]
    return ", ".join(present) or "none"
