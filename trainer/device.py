"""Device setup the trainer needs on a GPU, kept apart so each piece is testable on a CPU.

- the environment set before torch loads: the allocator's expandable segments, and the
  inductor/Triton caches under the project's cache folder (later trials compile warm);
- float32 matmul precision through set_float32_matmul_precision (not the deprecated
  allow_tf32 flags, nor the per-backend API inductor does not read consistently yet);
- peak bf16 FLOP/s by exact device model, for MFU (BILEVEL_PEAK_TFLOPS overrides);
- the memory a config's parameters and optimizer state need, checked against what the
  device has free before anything is allocated (WontFit is an out-of-memory exit, 3);
- torch.compile with a fallback: a compile failure in a trial continues eagerly, once.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Any, Dict, MutableMapping, Optional, Tuple

from trainer.model import GPTConfig

# Dense bf16 peak TFLOP/s per device model, most specific pattern first; matched against
# torch.cuda.get_device_name(), e.g. "NVIDIA H100 80GB HBM3" (SXM), "NVIDIA H100 PCIe",
# "NVIDIA H100 NVL", "NVIDIA H200", "NVIDIA H200 NVL", "NVIDIA A100-SXM4-80GB".
PEAK_TFLOPS: Tuple[Tuple[str, float], ...] = (
    (r"H100.*PCIe", 756.0),
    (r"H100.*NVL", 835.0),
    (r"H100", 989.5),  # SXM (HBM3)
    (r"H200.*NVL", 835.0),
    (r"GH200", 989.5),
    (r"H200", 989.5),  # SXM
    (r"H800.*PCIe", 756.0),
    (r"H800", 989.5),
    (r"B200", 2250.0),
    (r"A100", 312.0),
    (r"A800", 312.0),
    (r"L40S", 362.0),
)


def prepare_env(environ: MutableMapping[str, str], cache: Path) -> None:
    """Settings read when torch (or its compiler) starts; a value already set wins."""
    if "PYTORCH_CUDA_ALLOC_CONF" not in environ and "PYTORCH_ALLOC_CONF" not in environ:
        # Fewer fragmentation OOMs when shapes vary (evaluation after training).
        environ["PYTORCH_CUDA_ALLOC_CONF"] = "expandable_segments:True"
    environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache / "inductor"))
    environ.setdefault("TRITON_CACHE_DIR", str(cache / "triton"))


def configure_matmul(torch: Any) -> str:
    """TF32 for float32 matmuls (bf16 autocast covers most of them).

    Through torch.set_float32_matmul_precision, the one setting every version has; not the
    allow_tf32 flags (deprecated). Not the per-backend fp32_precision of torch >= 2.9 either:
    writing it leaves the global setting stale, and inductor still reads that one in some
    releases ("mix of the legacy and new APIs"), which would make every compile fail. 2.9
    warns about the global setter itself; the warning says nothing actionable, so it is
    silenced here.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        torch.set_float32_matmul_precision("high")
    return "float32_matmul_precision=high"


def peak_flops(
    name: str, environ: Optional[MutableMapping[str, str]] = None
) -> Optional[float]:
    """Dense bf16 FLOP/s of the named device; None when unknown (MFU is then null)."""
    env = os.environ if environ is None else environ
    override = env.get("BILEVEL_PEAK_TFLOPS")
    if override:
        return float(override) * 1e12
    for pattern, tflops in PEAK_TFLOPS:
        if re.search(pattern, name):
            return tflops * 1e12
    return None


def param_counts(cfg: GPTConfig) -> Dict[str, int]:
    """Parameters per optimizer, from the config alone (GPT.param_groups without building it)."""
    d = cfg.d_model
    return {
        "adamw": 2 * cfg.vocab_size * d + 2 * cfg.n_layer,  # embedding, head, scalars
        "muon": cfg.n_layer * 12 * d * d,  # qkv 3d^2, proj d^2, MLP 8d^2
    }


# Bytes per parameter: fp32 weight and gradient; AdamW's two moments; Muon's momentum plus
# the Nesterov copy and orthogonalised update it holds during a step.
BYTES_ADAMW = 4 + 4 + 8
BYTES_MUON = 4 + 4 + 4 + 8


def memory_needed(cfg: GPTConfig) -> int:
    """A lower bound on training memory: parameters, gradients and optimizer state.

    Activations come on top and depend on the batch; a config whose activations do not fit
    still gets the allocator's out-of-memory error (also exit 3). This bound is what the
    largest searchable configs (billions of parameters) fail on before allocating.
    """
    counts = param_counts(cfg)
    return counts["adamw"] * BYTES_ADAMW + counts["muon"] * BYTES_MUON


class WontFit(MemoryError):
    """The estimate exceeds the device's free memory (an out-of-memory exit, 3)."""


def available_memory(torch: Any, device: Any) -> Optional[int]:
    """Free bytes on the device: CUDA's free memory, or the host's MemAvailable on CPU."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def check_fits(need: int, free: Optional[int], where: str) -> None:
    if free is not None and need > free:
        raise WontFit(
            f"the parameters, gradients and optimizer state need about {need / 2**30:.1f} GiB; "
            f"{where} has {free / 2**30:.1f} GiB free (estimated before allocating)"
        )


def describe(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0] if text else ''}"[:500]


class CompiledSteps:
    """The module a training step calls: compiled when asked, eager after a compile failure.

    torch.compile compiles at the first call, so its failures (a missing compiler, an
    inductor or Triton bug) surface inside a step. `call` runs a step function with the
    current module; on an exception from the compiled module (not an out-of-memory one),
    it records the error, switches to the eager model and runs the step again, once.
    """

    def __init__(self, torch: Any, model: Any, enabled: bool) -> None:
        self.model = model
        self.fallback: Optional[str] = None
        self.compiled = enabled and hasattr(torch, "compile")
        self.module: Any = model
        if self.compiled:
            try:  # some versions refuse at once (e.g. torch < 2.4 on Python 3.12)
                self.module = torch.compile(model)
            except Exception as e:  # noqa: BLE001 - recorded, then eager
                self.compiled = False
                self.fallback = describe(e)

    def call(self, step: Any, is_oom: Any, note: Any) -> Any:
        try:
            return step(self.module)
        except (
            Exception
        ) as e:  # noqa: BLE001 - any compile failure; re-raised when eager
            if not self.compiled or is_oom(e):
                raise
            self.fallback = describe(e)
            note(f"torch.compile failed ({self.fallback}); continuing without it")
            self.compiled = False
            self.module = self.model
            self.model.zero_grad(set_to_none=True)
            return step(self.module)
