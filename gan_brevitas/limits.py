"""Resource limits: a request that would run for days or exhaust memory is refused up front.

A careless ``--num-samples 100000000`` or ``--n 10000000`` (or an ONNX file that declares a
huge input) should fail in a second with the estimate and the way out, not after hours or by
the kernel's out-of-memory killer. Every limit is overridable: set the environment variable
``GAN_BREVITAS_NO_LIMITS=1`` to run anyway.
"""

from __future__ import annotations

import os

from gan_brevitas.errors import ResourceLimitError

OVERRIDE_ENV_VAR = "GAN_BREVITAS_NO_LIMITS"
#: Samples one input source may be asked for (the paper: 500 calibration, 50,000 FID images).
MAX_SAMPLES = 200_000
#: Used when the available memory cannot be read (no /proc/meminfo).
FALLBACK_MEMORY_BYTES = 8 * 2**30
#: Share of the available memory one request may plan to hold.
MEMORY_SHARE = 0.8


def limits_enabled() -> bool:
    return os.environ.get(OVERRIDE_ENV_VAR, "").strip().lower() not in ("1", "true", "yes")


def available_memory_bytes() -> int:
    """MemAvailable from /proc/meminfo (Linux); a fixed fallback elsewhere."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return FALLBACK_MEMORY_BYTES


def check_samples(n: int, what: str = "samples") -> None:
    """Refuse asking one input source for more than MAX_SAMPLES samples."""
    if n > MAX_SAMPLES and limits_enabled():
        raise ResourceLimitError(
            f"{n:,} {what} requested, above the limit of {MAX_SAMPLES:,} (the paper uses 500 for "
            f"calibration and 50,000 for FID): use fewer, or set {OVERRIDE_ENV_VAR}=1 to run anyway."
        )


def check_memory(needed_bytes: int, what: str) -> None:
    """Refuse a request that plans to hold more than MEMORY_SHARE of the available memory."""
    budget = int(available_memory_bytes() * MEMORY_SHARE)
    if needed_bytes > budget and limits_enabled():
        raise ResourceLimitError(
            f"{what} would need about {needed_bytes / 2**30:.1f} GiB of memory, but only "
            f"{budget / 2**30:.1f} GiB are available for it: make it smaller, or set "
            f"{OVERRIDE_ENV_VAR}=1 to try anyway."
        )
