"""The GPU check's stages (run by trainer/gpu_check.sh; python3 -m trainer.gpu_check --help).

Needs only Python with torch, numpy and the repository's trainer/ files: no Node, no
network. Each stage prints its figures and adds them to OUT/gpu_check.json; a stage that
would overrun the time limit (default 570 s) is skipped and says so. With --dry (a CPU):
the CUDA plan is resolved for real (GPU defaults, evaluation size, memory estimate), the
other stages run in miniature at the CPU defaults.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

REPO = Path(__file__).resolve().parent.parent
# What each stage needs at most on an H200 (seconds), to skip rather than overrun.
NEEDS = {
    "env": 20,
    "plan": 30,
    "kernels": 60,
    "parity": 120,
    "trial": 200,
    "warm": 90,
    "windows": 120,
    "failures": 90,
    "spread": 150,
}
DIVERGING = {"EMBEDDING_LR": 3.0, "UNEMBEDDING_LR": 0.3, "MATRIX_LR": 1.0}
LARGEST = {"DEPTH": 24, "ASPECT_RATIO": 256}
STATUS = {0: "ok", 1: "crashed", 2: "invalid-config", 3: "oom", 4: "diverged"}


def js_json(value: Any) -> str:
    """JSON as the TypeScript side writes it (JSON.stringify): no spaces, 0.0 as 0."""

    def norm(v: Any) -> Any:
        if isinstance(v, float) and v.is_integer():
            return int(v)
        if isinstance(v, dict):
            return {k: norm(x) for k, x in v.items()}
        return v

    return json.dumps(norm(value), separators=(",", ":"), ensure_ascii=False)


def space() -> Dict[str, Any]:
    with open(REPO / "trainer" / "search-space.json", encoding="utf-8") as f:
        loaded: Dict[str, Any] = json.load(f)
    return loaded


def loop_args(
    seed: int = 1, budget: float = 60, device: str = "cuda", **changes: Any
) -> List[str]:
    """The trainer arguments the loop sends for a run's first baseline trial.

    resolveRunConfig starts from every parameter's default for the device; the run seed
    defaults to 1; trialArgs in trainer/torch-trainer.ts orders them so (a jest test holds
    the two to the same string). `changes` override parameters, as a proposal would.
    """
    key = "gpuDefault" if device == "cuda" else "default"
    config = {p["name"]: p[key] for p in space()["params"]}
    config.update(changes)
    budget_text = str(int(budget)) if float(budget).is_integer() else str(budget)
    head = ["-m", "trainer", "--config", js_json(config), "--budget", budget_text]
    return head + ["--seed", str(seed), "--device", device]


class Check:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.dry: bool = args.dry
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.deadline = time.monotonic() + args.limit
        self.figures: Dict[str, Any] = {"dry": self.dry}

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def say(self, text: str) -> None:
        print(text, flush=True)

    def stage(self, name: str, fn: Callable[[], Dict[str, Any]]) -> None:
        self.say(f"== {name}")
        need = NEEDS[name] if not self.dry else 1
        if self.left() < need:
            self.figures[name] = {
                "skipped": f"{self.left():.0f} s left, needs ~{need} s"
            }
            self.say(f"   skipped: {self.figures[name]['skipped']}")
            return
        t0 = time.monotonic()
        try:
            figures = fn()
        except (
            Exception
        ) as e:  # noqa: BLE001 - a failed stage is a figure, the rest go on
            figures = {"error": f"{type(e).__name__}: {e}"[:2000]}
        figures["seconds"] = round(time.monotonic() - t0, 1)
        self.figures[name] = figures
        for key, value in figures.items():
            self.say(f"   {key}: {value}")
        self.save()

    def save(self) -> None:
        text = json.dumps(self.figures, indent=2, default=str)
        (self.out / "gpu_check.json").write_text(text + "\n")

    def trainer(
        self, name: str, argv: List[str], timeout: Optional[float] = None
    ) -> Dict[str, Any]:
        """One trainer process; its records by event, exit code and status."""
        if self.args.data:
            argv = argv + ["--data", self.args.data]
        env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
        limit = max(5.0, min(timeout or self.left(), self.left()))
        log = self.out / f"{name}.log"
        with open(log, "w", encoding="utf-8") as f:
            try:
                code = subprocess.run(
                    [sys.executable, *argv],
                    stdout=f,
                    stderr=subprocess.STDOUT,
                    env=env,
                    timeout=limit,
                ).returncode
            except subprocess.TimeoutExpired:
                code = -1
        records: Dict[str, Any] = {}
        for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("{"):
                rec = json.loads(line)
                records[rec.get("event", "?")] = rec
        status = "timeout" if code == -1 else STATUS.get(code, "crashed")
        return {"exit": code, "status": status, "log": str(log), **records}


def stage_env(c: Check) -> Dict[str, Any]:
    """Versions, the GPU, and which SDPA backends are enabled."""
    import torch

    from trainer.device import peak_flops

    out: Dict[str, Any] = {
        "python": sys.executable,
        "torch": torch.__version__,
        "cuda_runtime": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
    }
    try:
        import triton  # type: ignore[import-not-found]

        out["triton"] = triton.__version__
    except ImportError:
        out["triton"] = None
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        peak = peak_flops(p.name)
        out.update(
            gpu=p.name,
            memory_gib=round(p.total_memory / 2**30, 1),
            capability=f"{p.major}.{p.minor}",
            cudnn=torch.backends.cudnn.version(),
            peak_tflops=None if peak is None else peak / 1e12,
        )
        for backend in ("flash", "mem_efficient", "math", "cudnn"):
            enabled = getattr(torch.backends.cuda, f"{backend}_sdp_enabled", None)
            out[f"sdp_{backend}"] = enabled() if enabled else None
    return out


def stage_plan(c: Check) -> Dict[str, Any]:
    """The loop's exact CUDA trial, resolved by the trainer itself (--dry-run)."""
    args = loop_args()
    plan = c.trainer("plan", args + ["--dry-run"], timeout=180)
    rec = plan.get("plan", {})
    keys = ["eval_bytes", "val_tokens", "train_tokens", "num_params", "flops_per_token"]
    keys += ["tokens_per_step", "memory_needed_mb", "memory_free_mb", "memory_fits"]
    return {
        "loop_command": shlex.join([sys.executable, *args]),
        "loop_args": args,
        "status": plan["status"],
        "error": plan.get("error", {}).get("message"),
        "config": rec.get("config"),
        **{k: rec.get(k) for k in keys},
    }


def corpus_batch(c: Check, hp: Dict[str, Any], rows: int) -> Tuple[Any, Any]:
    import numpy as np
    import torch

    from trainer import data as data_mod

    corpus = data_mod.load(c.args.data)
    t = int(hp["SEQ_LEN"])
    starts = np.arange(rows) * ((len(corpus.train) - t - 1) // rows)
    idx = starts[:, None] + np.arange(t + 1)[None, :]
    chunk = torch.from_numpy(corpus.train[idx].astype(np.int64))
    return chunk[:, :-1], chunk[:, 1:]


def default_model(c: Check, rows: int) -> Tuple[Any, Any, Any, Any]:
    """The device's default model (fp32 weights, small random output projections) and a batch."""
    import torch

    from trainer.hparams import defaults
    from trainer.model import GPT, model_config

    dev = torch.device("cpu" if c.dry else "cuda")
    hp = defaults(dev.type)
    torch.manual_seed(0)
    model = GPT(model_config(hp, 256), device=dev)
    with torch.no_grad():  # zero-initialised projections would hide attention
        for name, p in model.named_parameters():
            if name.endswith("c_proj.weight"):
                p.normal_(0.0, 0.02)
    x, y = corpus_batch(c, hp, rows)
    return model, x.to(dev), y.to(dev), dev


def stage_kernels(c: Check) -> Dict[str, Any]:
    """The attention kernels a few profiled training steps actually run."""
    import re

    import torch
    from torch.profiler import ProfilerActivity, profile

    model, x, y, dev = default_model(c, 4 if c.dry else 16)
    acts = [ProfilerActivity.CPU] + (
        [ProfilerActivity.CUDA] if dev.type == "cuda" else []
    )

    def step() -> None:
        with torch.autocast(dev.type, dtype=torch.bfloat16):
            loss = model(x, y)
        loss.backward()
        model.zero_grad(set_to_none=True)

    step()
    with profile(activities=acts) as prof:
        for _ in range(3):
            step()
    pattern = (
        r"flash|fmha|efficient_attention|cudnn.*att|scaled_dot_product|baddbmm|softmax"
    )
    names = sorted(
        {e.key for e in prof.key_averages() if re.search(pattern, e.key, re.I)}
    )
    return {"attention_kernels": names[:16]}


def loss_and_grads(
    model: Any, module: Any, x: Any, y: Any, bf16: bool
) -> Tuple[float, Any]:
    import torch

    model.zero_grad(set_to_none=True)
    ctx = torch.autocast(x.device.type, dtype=torch.bfloat16) if bf16 else None
    if ctx is None:
        loss = module(x, y)
    else:
        with ctx:
            loss = module(x, y)
    loss.backward()
    grads = torch.cat([p.grad.float().flatten() for p in model.parameters()])
    return float(loss), grads


def causal_leak(module: Any, x: Any, bf16: bool) -> float:
    """Largest change of the first half's logits when the second half's tokens change."""
    import torch

    cut = x.shape[1] // 2
    x2 = x.clone()
    x2[:, cut:] = (x2[:, cut:] + 1) % 256
    with torch.no_grad(), torch.autocast(
        x.device.type, dtype=torch.bfloat16, enabled=bf16
    ):
        a, b = module.logits(x), module.logits(x2)
    return float((a[:, :cut] - b[:, :cut]).abs().max())


def stage_parity(c: Check) -> Dict[str, Any]:
    """One batch: bf16 eager and compiled against an fp32 eager reference; causality."""
    import torch
    import torch.nn.functional as F

    model, x, y, dev = default_model(c, 2 if c.dry else 8)
    ref_loss, ref = loss_and_grads(model, model, x, y, bf16=False)
    out: Dict[str, Any] = {"loss_fp32": round(ref_loss, 6)}

    def compare(name: str, loss: float, grads: Any) -> None:
        out[f"loss_{name}"] = round(loss, 6)
        out[f"grad_cosine_{name}"] = round(
            float(F.cosine_similarity(grads, ref, dim=0)), 6
        )
        out[f"grad_rel_err_{name}"] = round(float((grads - ref).norm() / ref.norm()), 6)

    compare("bf16_eager", *loss_and_grads(model, model, x, y, bf16=True))
    out["causal_leak_eager"] = causal_leak(model, x, bf16=True)
    if not hasattr(torch, "compile"):
        out["compiled"] = f"torch {torch.__version__} has no torch.compile"
        return out
    try:
        compiled = torch.compile(model)
        compare("bf16_compiled", *loss_and_grads(model, compiled, x, y, bf16=True))
    except Exception as e:  # noqa: BLE001 - what a trial would fall back from
        out["compiled"] = f"failed: {type(e).__name__}: {str(e)[:300]}"
    return out


TRIAL_KEYS = """val_bpb tokens_per_second mfu_percent peak_memory_mb num_steps warmup_seconds
eval_seconds startup_seconds total_seconds step_ms_p50 step_ms_p99 compiled compile_fallback
compile_counters data_passes""".split()


def trial_figures(run: Dict[str, Any]) -> Dict[str, Any]:
    r = run.get("result", {})
    keys = TRIAL_KEYS
    out = {"status": run["status"], **{k: r.get(k) for k in keys}}
    if run["status"] != "ok":
        out["error"] = run.get("error", {}).get("message")
    return out


def trial_args(c: Check, budget: float, **changes: Any) -> List[str]:
    if c.dry:  # miniature CPU trials: a small evaluation keeps the dry mode quick
        return loop_args(budget=budget, device="cpu", **changes) + [
            "--eval-bytes",
            "16384",
        ]
    return loop_args(budget=budget, **changes)


def stage_trial(c: Check) -> Dict[str, Any]:
    """The loop's CUDA trial at the GPU defaults (dry: the CPU one, briefly)."""
    budget = 3.0 if c.dry else float(c.args.budget)
    run = c.trainer("trial", trial_args(c, budget), timeout=budget * 1.5 + 400)
    return trial_figures(run)


def stage_warm(c: Check) -> Dict[str, Any]:
    """The same trial again: the inductor cache is warm, so warm-up (compile) is shorter."""
    budget = 2.0 if c.dry else 30.0
    run = c.trainer("warm", trial_args(c, budget), timeout=budget * 1.5 + 300)
    out = trial_figures(run)
    cold = c.figures.get("trial", {}).get("warmup_seconds")
    out["cold_warmup_seconds"] = cold
    return out


def stage_windows(c: Check) -> Dict[str, Any]:
    """Tokens/s of SSSL against L (sliding windows pay full attention with SDPA + mask)."""
    budget = 2.0 if c.dry else 20.0
    runs = {
        p: c.trainer(f"window-{p}", trial_args(c, budget, WINDOW_PATTERN=p))
        for p in ("L", "SSSL")
    }
    tps = {p: r.get("result", {}).get("tokens_per_second") for p, r in runs.items()}
    out: Dict[str, Any] = {f"tokens_per_second_{p}": v for p, v in tps.items()}
    out.update({f"status_{p}": r["status"] for p, r in runs.items()})
    if tps["L"] and tps["SSSL"]:
        out["sssl_over_l"] = round(tps["SSSL"] / tps["L"], 3)
    return out


def stage_failures(c: Check) -> Dict[str, Any]:
    """A config that must exit 3 (oom: the largest one) and one that must exit 4 (diverged)."""
    oom = c.trainer("must-oom", trial_args(c, 60, **LARGEST), timeout=300)
    cpu_model = {p["name"]: p["default"] for p in space()["params"]}
    device = "cpu" if c.dry else "cuda"
    diverge = ["-m", "trainer", "--config", js_json({**cpu_model, **DIVERGING})]
    diverge += ["--max-steps", "30", "--device", device, "--compile", "off"]
    div = c.trainer("must-diverge", diverge, timeout=300)
    return {
        "largest_status": oom["status"],
        "largest_expected": "oom",
        "largest_message": oom.get("error", {}).get("message"),
        "diverging_status": div["status"],
        "diverging_expected": "diverged",
        "diverging_message": div.get("error", {}).get("message"),
    }


def stage_spread(c: Check) -> Dict[str, Any]:
    """Two runs with the same seed and MAX_STEPS: CUDA is not bit-reproducible, by how much?"""
    steps = "3" if c.dry else "50"
    runs = [
        c.trainer(f"same-seed-{i}", trial_args(c, 60) + ["--max-steps", steps])
        for i in (1, 2)
    ]
    bpb = [r.get("result", {}).get("val_bpb") for r in runs]
    out: Dict[str, Any] = {"val_bpb": bpb, "status": [r["status"] for r in runs]}
    if None not in bpb:
        out["spread"] = abs(float(bpb[0]) - float(bpb[1]))
    return out


STAGES: Dict[str, Callable[[Check], Dict[str, Any]]] = {
    "env": stage_env,
    "plan": stage_plan,
    "kernels": stage_kernels,
    "parity": stage_parity,
    "trial": stage_trial,
    "warm": stage_warm,
    "windows": stage_windows,
    "failures": stage_failures,
    "spread": stage_spread,
}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python3 -m trainer.gpu_check", description=__doc__
    )
    p.add_argument("--dry", action="store_true", help="CPU dry mode")
    p.add_argument("--out", required=True, help="folder for logs and gpu_check.json")
    p.add_argument(
        "--data", help="a source folder (.txt/.jsonl) or a prepared one (meta.json)"
    )
    p.add_argument("--limit", type=float, default=570.0, help="seconds for all stages")
    p.add_argument("--budget", type=float, default=60.0, help="the main trial's budget")
    p.add_argument(
        "--stages", default=",".join(STAGES), help="comma-separated stages to run"
    )
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = parser().parse_args(argv)
    check = Check(args)
    for name in args.stages.split(","):
        if name not in STAGES:
            print(
                f"gpu_check: unknown stage {name!r} (known: {', '.join(STAGES)})",
                file=sys.stderr,
            )
            return 2
        check.stage(name, lambda: STAGES[name](check))
        if name == "plan" and check.figures["plan"].get("status") != "ok":
            print(
                "gpu_check: the CUDA plan fails: the trials would too; stopping",
                file=sys.stderr,
            )
            return 1
    check.save()
    print(f"== figures in {check.out / 'gpu_check.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
