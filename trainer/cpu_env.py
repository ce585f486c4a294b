"""CPU facts the trainer needs before torch is imported.

OpenBLAS picks its kernels from the CPU model; under some hypervisors it sees a generic
"Intel Xeon Processor" and falls back to Prescott kernels (measured here: ~5x slower
float32 matmuls). When OPENBLAS_CORETYPE is unset we choose it from the CPU flags.

glibc's malloc is asked for transparent huge pages (the tunable glibc.malloc.hugetlb=1,
glibc >= 2.35; older versions and other C libraries ignore it): a training step allocates
and frees many 2-8 MB tensors, and with 4 KB pages their page faults and TLB misses cost
~7% of a float32 CPU step here (measured; see docs/trainer.md, Benchmark). Where the
kernel's THP mode is "never" it does nothing; "madvise" (a common default) needs it.
"""

from __future__ import annotations

import os
import sys
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


HUGETLB = "glibc.malloc.hugetlb"


def with_hugetlb(tunables: Optional[str]) -> str:
    """GLIBC_TUNABLES with malloc's transparent huge pages on, unless it sets them itself."""
    if not tunables:
        return f"{HUGETLB}=1"
    if any(t.split("=", 1)[0] == HUGETLB for t in tunables.split(":")):
        return tunables
    return f"{tunables}:{HUGETLB}=1"


def child_env(environ: Dict[str, str]) -> Dict[str, str]:
    """The environment a trainer process should start with (one BLAS thread unless set)."""
    env = dict(environ)
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    if "OPENBLAS_CORETYPE" not in env:
        core = openblas_coretype(cpu_flags())
        if core:
            env["OPENBLAS_CORETYPE"] = core
    if sys.platform.startswith("linux"):
        env["GLIBC_TUNABLES"] = with_hugetlb(env.get("GLIBC_TUNABLES"))
    return env


def needs_reexec() -> bool:
    return child_env(dict(os.environ)) != dict(os.environ)
