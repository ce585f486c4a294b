"""CPU facts the trainer needs before torch is imported.

OpenBLAS picks its kernels from the CPU model; under some hypervisors it sees a generic
"Intel Xeon Processor" and falls back to Prescott kernels (measured here: ~5x slower
float32 matmuls). When OPENBLAS_CORETYPE is unset we choose it from the CPU flags.
"""

from __future__ import annotations

import os
from typing import Dict, FrozenSet, Optional


def cpu_flags() -> FrozenSet[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def openblas_coretype(flags: FrozenSet[str]) -> Optional[str]:
    if {"avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd"} <= flags:
        return "SkylakeX"
    if {"avx2", "fma"} <= flags:
        return "Haswell"
    return None


def has_bf16_matmul(flags: FrozenSet[str]) -> bool:
    """oneDNN runs bf16 matmuls natively (AMX or AVX512-BF16): much faster than float32."""
    return "amx_bf16" in flags or "avx512_bf16" in flags


def child_env(environ: Dict[str, str]) -> Dict[str, str]:
    """The environment a trainer process should start with (one BLAS thread unless set)."""
    env = dict(environ)
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    if "OPENBLAS_CORETYPE" not in env:
        core = openblas_coretype(cpu_flags())
        if core:
            env["OPENBLAS_CORETYPE"] = core
    return env


def needs_reexec() -> bool:
    return child_env(dict(os.environ)) != dict(os.environ)
