"""One training trial: python3 -m trainer [--set KEY=VALUE ...] [--budget S] [--max-steps N] ...

Protocol (docs/trainer.md): JSON lines on stdout -- one {"event": "start"}, then
{"event": "progress"} records, then one {"event": "result"} (or {"event": "error"}) --
followed by Karpathy's summary block. Human-readable notes go to stderr. With --dry-run:
one {"event": "plan"} record (what the trial would run, checked) and nothing trained.

Exit codes: 0 ok, 1 other failure, 2 invalid config, 3 out of memory, 4 diverged.
"""

from __future__ import annotations

import argparse
import ast
import gc
import json
import math
import os
import resource
import sys
import time
import traceback
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import (
    Any,
    Callable,
    ContextManager,
    Dict,
    List,
    Optional,
    Sequence,
    Tuple,
    cast,
)

import numpy as np

from trainer import data as data_mod
from trainer import device as device_mod
from trainer.cpu_env import cpu_flags, has_bf16_matmul
from trainer.hparams import EVAL_BYTES, MAX_SEQ_LEN, InvalidConfig, Value, resolve
from trainer.model import GPTConfig, flops_per_token, model_config

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_OOM, EXIT_DIVERGED = 0, 1, 2, 3, 4
STATUS_BY_EXIT = {
    EXIT_INVALID: "invalid-config",
    EXIT_OOM: "oom",
    EXIT_DIVERGED: "diverged",
    EXIT_FAILED: "crashed",
}
# A loss this far above uniform guessing (ln V nats) means training has blown up.
DIVERGENCE_FACTOR = 2.0
# More passes over the training data than this and the search tunes for memorising it.
DATA_PASSES_WARN = 4.0


class Diverged(RuntimeError):
    pass


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}, allow_nan=False), flush=True)


def note(message: str) -> None:
    print(f"[trainer] {message}", file=sys.stderr, flush=True)


def parse_set(items: Sequence[str]) -> Dict[str, object]:
    out: Dict[str, object] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise InvalidConfig(f"--set expects KEY=VALUE, got {item!r}")
        try:
            value: object = ast.literal_eval(raw.strip())
        except (ValueError, SyntaxError):
            value = raw.strip()  # a bare word such as SSSL is a string
        out[key.strip()] = value
    return out


def lr_multiplier(progress: float, hp: Dict[str, Value]) -> float:
    warmup, warmdown, final = (
        float(hp["WARMUP_RATIO"]),
        float(hp["WARMDOWN_RATIO"]),
        float(hp["FINAL_LR_FRAC"]),
    )
    if progress < warmup:
        return (progress + 1e-8) / warmup
    if progress < 1.0 - warmdown:
        return 1.0
    cooldown = max(0.0, 1.0 - progress) / warmdown
    return cooldown + (1.0 - cooldown) * final


def peak_memory_mb(cuda: bool) -> float:
    import torch

    if cuda:
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def is_oom(error: BaseException) -> bool:
    if isinstance(error, MemoryError):
        return True
    text = str(error)
    return type(error).__name__ == "OutOfMemoryError" or any(
        s in text
        for s in (
            "out of memory",
            "can't allocate memory",
            "CUBLAS_STATUS_ALLOC_FAILED",
        )
    )


def evaluate(
    model: Any,
    corpus: data_mod.Corpus,
    eval_bytes: int,
    seq_len: int,
    device: Any,
    autocast: Callable[[], Any],
) -> Tuple[float, int]:
    """val_bpb over the fixed eval segments: Σ CE nats / (ln 2 · Σ target bytes)."""
    import torch
    import torch.nn.functional as F

    starts = data_mod.eval_segments(corpus, eval_bytes, MAX_SEQ_LEN)
    idx = starts[:, None] + np.arange(MAX_SEQ_LEN + 1)[None, :]
    tokens = torch.from_numpy(corpus.val[idx].astype(np.int64))
    nbytes = torch.from_numpy(corpus.val_token_bytes[idx].astype(np.int64))
    q, r = divmod(MAX_SEQ_LEN, seq_len)
    pieces = [
        (
            tokens[:, : q * seq_len].reshape(-1, seq_len),
            tokens[:, 1 : q * seq_len + 1].reshape(-1, seq_len),
        ),
    ]
    byte_pieces = [nbytes[:, 1 : q * seq_len + 1].reshape(-1, seq_len)]
    if r:  # the tail of each segment, with a shorter context
        pieces.append(
            (tokens[:, q * seq_len : MAX_SEQ_LEN], tokens[:, q * seq_len + 1 :])
        )
        byte_pieces.append(nbytes[:, q * seq_len + 1 :])
    rows_per_batch_tokens = 2**18 if device.type == "cuda" else 2**14
    total_nats = 0.0
    total_bytes = 0
    with torch.no_grad():
        for (x_all, y_all), b_all in zip(pieces, byte_pieces):
            rows = max(1, rows_per_batch_tokens // x_all.shape[1])
            for i in range(0, x_all.shape[0], rows):
                x = x_all[i : i + rows].to(device, non_blocking=True)
                y = y_all[i : i + rows].to(device, non_blocking=True)
                b = b_all[i : i + rows].to(device, non_blocking=True)
                with autocast():
                    logits = model.logits(x)
                ce = F.cross_entropy(
                    logits.float().view(-1, logits.shape[-1]),
                    y.reshape(-1),
                    reduction="none",
                )
                counted = b.reshape(-1) > 0  # special tokens (0 bytes) are not scored
                total_nats += float((ce * counted).double().sum())
                total_bytes += int(b.sum())
    return total_nats / (math.log(2) * total_bytes), total_bytes


def parse_overrides(args: argparse.Namespace) -> Dict[str, object]:
    """The hyperparameters asked for (--config, then --set); SEED and MAX_STEPS go to args."""
    overrides: Dict[str, object] = {}
    if args.config:
        try:
            loaded = json.loads(args.config)
        except ValueError as e:
            raise InvalidConfig(f"--config is not valid JSON: {e}") from None
        if not isinstance(loaded, dict):
            raise InvalidConfig("--config must be a JSON object of hyperparameters")
        overrides.update(loaded)
    overrides.update(parse_set(args.set or []))
    for key in ("SEED", "MAX_STEPS"):  # run-level values given as hyperparameters
        if key in overrides:
            value = overrides.pop(key)
            if (
                isinstance(value, bool)
                or not isinstance(value, int)
                or value < (0 if key == "SEED" else 1)
            ):
                raise InvalidConfig(
                    f"{key} must be an integer {'>= 0' if key == 'SEED' else '>= 1'}"
                )
            setattr(args, key.lower(), value)
    if args.budget is not None and not (args.budget > 0 and math.isfinite(args.budget)):
        raise InvalidConfig(
            f"--budget must be a positive number of seconds, got {args.budget}"
        )
    if args.max_steps is not None and args.max_steps < 1:
        raise InvalidConfig("--max-steps must be >= 1")
    return overrides


@dataclass
class Setup:
    """What a trial is decided by: resolved and checked before anything is allocated."""

    hp: Dict[str, Value]
    dev_name: str  # "cuda" or "cpu"
    has_device: bool  # False: a CUDA plan (--dry-run) on a machine without a GPU
    corpus: data_mod.Corpus
    cfg: GPTConfig
    eval_bytes: int
    grad_accum: int
    tokens_per_step: int
    bf16: bool
    compile: bool
    budget: float
    memory_needed: int
    memory_free: Optional[int]

    @property
    def seq_len(self) -> int:
        return int(self.hp["SEQ_LEN"])

    @property
    def dbs(self) -> int:
        return int(self.hp["DEVICE_BATCH_SIZE"])


def prepare(args: argparse.Namespace) -> Setup:
    overrides = parse_overrides(args)
    # Config and data problems are found before torch loads (a second or so).
    resolve(overrides, "cpu")
    corpus = data_mod.load(args.data)
    device_mod.prepare_env(os.environ, data_mod.cache_root())  # read when torch loads
    import torch

    available = torch.cuda.is_available()
    if args.device == "cuda" and not available:
        if not args.dry_run:
            raise InvalidConfig("--device cuda, but PyTorch sees no CUDA device")
        note("PyTorch sees no CUDA device here: the CUDA trial is planned without one")
    dev_name = (
        "cuda"
        if args.device == "cuda" or (args.device == "auto" and available)
        else "cpu"
    )
    hp = resolve(overrides, dev_name)
    eval_bytes = int(args.eval_bytes or EVAL_BYTES[dev_name])
    data_mod.eval_segments(corpus, eval_bytes, MAX_SEQ_LEN)  # fail before training
    grad_accum = max(
        1,
        round(
            int(hp["TOTAL_BATCH_SIZE"])
            / (int(hp["DEVICE_BATCH_SIZE"]) * int(hp["SEQ_LEN"]))
        ),
    )
    cfg = model_config(hp, corpus.vocab_size)
    cuda = dev_name == "cuda"
    has_device = not cuda or available
    # bf16 autocast on CUDA; on CPUs with bf16 matmul units too (about 2x the tokens per
    # CPU-second of float32 in npm run bench:trainer: docs/trainer.md, Benchmark).
    bf16 = (
        cuda
        or args.cpu_dtype == "bfloat16"
        or (args.cpu_dtype == "auto" and has_bf16_matmul(cpu_flags()))
    )
    free = (
        device_mod.available_memory(torch, torch.device(dev_name))
        if has_device
        else None
    )
    return Setup(
        hp=hp,
        dev_name=dev_name,
        has_device=has_device,
        corpus=corpus,
        cfg=cfg,
        eval_bytes=eval_bytes,
        grad_accum=grad_accum,
        tokens_per_step=grad_accum * int(hp["DEVICE_BATCH_SIZE"]) * int(hp["SEQ_LEN"]),
        bf16=bf16,
        compile=args.compile == "on" or (args.compile == "auto" and cuda),
        budget=float(args.budget if args.budget is not None else 60.0),
        memory_needed=device_mod.memory_needed(cfg),
        memory_free=free,
    )


def planned_passes(st: Setup, max_steps: Optional[int]) -> Optional[float]:
    """Passes over the training data a MAX_STEPS trial makes (a time budget: found later)."""
    return max_steps * st.tokens_per_step / len(st.corpus.train) if max_steps else None


def dry_run(args: argparse.Namespace) -> int:
    """--dry-run: the plan record (what the trial would run), then the checks' verdict."""
    st = prepare(args)
    import torch

    counts = device_mod.param_counts(st.cfg)
    where = "the GPU" if st.dev_name == "cuda" else "the host"
    fits = None if st.memory_free is None else st.memory_needed <= st.memory_free
    emit(
        "plan",
        device=st.dev_name,
        device_available=st.has_device,
        device_name=torch.cuda.get_device_name(0)
        if st.dev_name == "cuda" and st.has_device
        else st.dev_name,
        python=sys.executable,
        torch=torch.__version__,
        config=dict(st.hp),
        eval_bytes=st.eval_bytes,
        train_tokens=int(len(st.corpus.train)),
        val_tokens=int(len(st.corpus.val)),
        data=st.corpus.source,
        cache=str(st.corpus.path),
        num_params=sum(counts.values()),
        params_adamw=counts["adamw"],
        params_muon=counts["muon"],
        d_model=st.cfg.d_model,
        n_head=st.cfg.n_head,
        flops_per_token=flops_per_token(st.cfg),
        grad_accum_steps=st.grad_accum,
        tokens_per_step=st.tokens_per_step,
        dtype="bfloat16" if st.bf16 else "float32",
        compile=st.compile,
        memory_needed_mb=round(st.memory_needed / 2**20, 1),
        memory_free_mb=None
        if st.memory_free is None
        else round(st.memory_free / 2**20, 1),
        memory_fits=fits,
        budget_seconds=st.budget,
        max_steps=args.max_steps,
        seed=args.seed,
        data_passes=planned_passes(st, args.max_steps),
    )
    device_mod.check_fits(st.memory_needed, st.memory_free, where)
    return EXIT_OK


def build(
    torch: Any, st: Setup, args: argparse.Namespace
) -> Tuple[Any, List[Any], Any]:
    """The model (on its device, after the memory check), its optimizers, the step module."""
    from trainer.model import GPT
    from trainer.optim import build as build_optimizers

    cuda = st.dev_name == "cuda"
    device = torch.device(st.dev_name)
    threads = int(
        os.environ.get("BILEVEL_THREADS") or os.environ.get("OPENBLAS_NUM_THREADS") or 1
    )
    if not cuda:
        torch.set_num_threads(max(1, threads))
    else:
        device_mod.configure_matmul(torch)
    where = "the GPU" if cuda else "the host"
    device_mod.check_fits(st.memory_needed, st.memory_free, where)
    torch.manual_seed(args.seed)
    dtype = torch.bfloat16 if st.bf16 else torch.float32
    model = GPT(st.cfg, device=device, dtype=dtype)
    opts = build_optimizers(model.param_groups(), st.hp, st.cfg.d_model, cuda, dtype)
    steps = device_mod.CompiledSteps(torch, model, st.compile)
    if st.compile and not steps.compiled:
        why = steps.fallback or f"torch {torch.__version__} has no torch.compile"
        note(f"{why}: running eagerly")
    return model, opts, steps


def make_autocast(
    torch: Any, bf16: bool, device: Any
) -> Callable[[], ContextManager[Any]]:
    def autocast() -> ContextManager[Any]:
        if bf16:
            return cast(
                ContextManager[Any], torch.autocast(device.type, dtype=torch.bfloat16)
            )
        return nullcontext()

    return autocast


def batcher(
    torch: Any, st: Setup, seed: int, device: Any
) -> Callable[[], Tuple[Any, Any]]:
    """Random windows of the training split (on the GPU when training there)."""
    train_tokens = torch.from_numpy(st.corpus.train)
    if device.type == "cuda":
        train_tokens = train_tokens.to(device)
    gen = torch.Generator(device=device)
    gen.manual_seed(seed + 1)
    offsets = torch.arange(st.seq_len + 1, device=device)

    def batch() -> Tuple[Any, Any]:
        starts = torch.randint(
            0,
            len(train_tokens) - st.seq_len - 1,
            (st.dbs, 1),
            generator=gen,
            device=device,
        )
        chunk = train_tokens[starts + offsets].long()
        return chunk[:, :-1], chunk[:, 1:]

    return batch


def set_schedule(
    opts: List[Any], hp: Dict[str, Value], progress: float, step: int
) -> None:
    lrm = lr_multiplier(progress, hp)
    for opt in opts:
        for g in opt.param_groups:
            g["lr"] = g["initial_lr"] * lrm
    for g in opts[1].param_groups:  # Muon
        g["momentum"] = 0.85 + 0.10 * min(step / 300, 1.0)
        g["weight_decay"] = float(hp["WEIGHT_DECAY"]) * (1.0 - progress)


@dataclass
class Stats:
    step: int = 0
    training_time: float = 0.0
    warmup_time: float = 0.0
    trained_tokens: int = 0
    train_cpu: float = 0.0  # CPU seconds of the timed steps: throughput per core
    last_loss: float = float("nan")
    step_times: List[float] = field(default_factory=list)
    passes_noted: bool = False


def progress_of(s: Stats, st: Setup, max_steps: Optional[int]) -> float:
    if max_steps:
        return min(s.step / max_steps, 1.0)
    return min(s.training_time / st.budget, 1.0)


def note_passes(s: Stats, st: Setup, max_steps: Optional[int]) -> None:
    """Warns once when the trial will pass over its training data more than a few times."""
    if s.passes_noted or (
        not max_steps and s.training_time < min(5.0, 0.1 * st.budget)
    ):
        return
    s.passes_noted = True
    tokens = len(st.corpus.train)
    passes = planned_passes(st, max_steps)
    if passes is None:
        passes = s.trained_tokens / s.training_time * st.budget / tokens
    if passes > DATA_PASSES_WARN:
        note(
            f"this trial will pass over its training data about {passes:.1f} times "
            f"({tokens:,} tokens); past {DATA_PASSES_WARN:g} a search tunes for memorising "
            "it: give it more data (--data)"
        )


def train_loop(
    torch: Any,
    st: Setup,
    args: argparse.Namespace,
    model: Any,
    opts: List[Any],
    steps: Any,
) -> Stats:
    device = torch.device(st.dev_name)
    batch = batcher(torch, st, args.seed, device)
    autocast = make_autocast(torch, st.bf16, device)
    diverge_at = DIVERGENCE_FACTOR * math.log(st.corpus.vocab_size)
    warmup_steps = (
        args.warmup_steps
        if args.warmup_steps is not None
        else (10 if device.type == "cuda" else 1)
    )

    def forward_backward(module: Any) -> Any:
        loss_sum = torch.zeros((), device=device)
        for _ in range(st.grad_accum):
            x, y = batch()
            with autocast():
                loss = module(x, y)
            (loss / st.grad_accum).backward()
            loss_sum += loss.detach()
        return loss_sum

    s, last_emit = Stats(), 0.0
    while True:
        set_schedule(opts, st.hp, progress_of(s, st, args.max_steps), s.step)
        t0, c0 = time.perf_counter(), time.process_time()
        loss_sum = steps.call(forward_backward, is_oom, note)
        for opt in opts:
            opt.step()
        model.zero_grad(set_to_none=True)
        s.last_loss = float(loss_sum) / st.grad_accum  # syncs the device
        dt = time.perf_counter() - t0
        s.step += 1
        if s.step <= warmup_steps:
            s.warmup_time += dt
        else:
            s.training_time += dt
            s.train_cpu += time.process_time() - c0
            s.trained_tokens += st.tokens_per_step
            s.step_times.append(dt)
        if not math.isfinite(s.last_loss) or s.last_loss > diverge_at:
            raise Diverged(
                f"loss {s.last_loss:.4g} at step {s.step} (limit {diverge_at:.3g} = {DIVERGENCE_FACTOR} x ln V)"
            )
        if s.step == 1:  # Python's GC causes stalls; nothing cyclic is created per step
            gc.collect()
            gc.freeze()
            gc.disable()
        done = (
            s.step >= args.max_steps
            if args.max_steps
            else (s.step > warmup_steps and s.training_time >= st.budget)
        )
        now = time.time()
        if done or s.step == 1 or now - last_emit >= args.progress_interval:
            last_emit = now
            emit_progress(s, st, args.max_steps)
        if s.step > warmup_steps:
            note_passes(s, st, args.max_steps)
        if done:
            return s


def emit_progress(s: Stats, st: Setup, max_steps: Optional[int]) -> None:
    emit(
        "progress",
        step=s.step,
        loss=round(s.last_loss, 6),
        elapsed=round(s.training_time, 3),
        tokens_per_second=round(s.trained_tokens / s.training_time, 1)
        if s.training_time > 0
        else 0.0,
        progress=round(progress_of(s, st, max_steps), 6),
    )


def emit_start(
    torch: Any, st: Setup, args: argparse.Namespace, model: Any, steps: Any
) -> None:
    from trainer.model import HAS_SDPA

    cuda = st.dev_name == "cuda"
    emit(
        "start",
        device=st.dev_name,
        device_name=torch.cuda.get_device_name(0) if cuda else "cpu",
        torch=torch.__version__,
        python=sys.executable,
        num_params=model.num_params(),
        d_model=st.cfg.d_model,
        n_head=st.cfg.n_head,
        grad_accum_steps=st.grad_accum,
        tokens_per_step=st.tokens_per_step,
        budget_seconds=st.budget,
        max_steps=args.max_steps,
        seed=args.seed,
        eval_bytes=st.eval_bytes,
        data=st.corpus.source,
        cache=str(st.corpus.path),
        sdpa=bool(model.fused and HAS_SDPA),
        compiled=steps.compiled,
        compile_cache=os.environ.get("TORCHINDUCTOR_CACHE_DIR"),
        dtype="bfloat16" if st.bf16 else "float32",
        threads=None if cuda else torch.get_num_threads(),
    )
    if st.tokens_per_step != int(st.hp["TOTAL_BATCH_SIZE"]):
        note(
            f"TOTAL_BATCH_SIZE {st.hp['TOTAL_BATCH_SIZE']} -> {st.tokens_per_step} tokens/step ({st.grad_accum} x {st.dbs} x {st.seq_len})"
        )


def percentile_ms(times: List[float], q: float) -> Optional[float]:
    if not times:
        return None
    return round(float(np.percentile(np.asarray(times), q)) * 1000.0, 3)


def compile_counters() -> Optional[Dict[str, int]]:
    """torch._dynamo's graph and recompile counts (None without torch.compile)."""
    try:
        from torch._dynamo.utils import counters  # type: ignore[import-not-found]
    except ImportError:
        return None
    out: Dict[str, int] = {}
    for group in ("stats", "recompiles"):
        for key, value in counters.get(group, {}).items():
            out[f"{group}.{key}"] = int(value)
    return out


def run(args: argparse.Namespace) -> Dict[str, Any]:
    t_start = time.time()
    st = prepare(args)
    import torch

    model, opts, steps = build(torch, st, args)
    emit_start(torch, st, args, model, steps)
    t_train = time.time()
    s = train_loop(torch, st, args, model, opts, steps)

    t_eval = time.time()
    model.eval()
    device = torch.device(st.dev_name)
    autocast = make_autocast(torch, st.bf16, device)
    val_bpb, evaluated = evaluate(
        model, st.corpus, st.eval_bytes, st.seq_len, device, autocast
    )
    eval_seconds = time.time() - t_eval
    if not math.isfinite(val_bpb):
        raise Diverged(f"val_bpb is {val_bpb}")
    cuda = st.dev_name == "cuda"
    gpu_name = torch.cuda.get_device_name(0) if cuda else ""
    tps = s.trained_tokens / s.training_time if s.training_time > 0 else 0.0
    peak = device_mod.peak_flops(gpu_name) if cuda else None
    mfu = 100.0 * flops_per_token(st.cfg) * tps / peak if peak and tps else None
    config: Dict[str, Value] = dict(st.hp)
    return {
        "val_bpb": val_bpb,
        "training_seconds": s.training_time,
        "total_seconds": time.time() - t_start,
        "warmup_seconds": s.warmup_time,
        "warmup_steps": min(
            s.step,
            args.warmup_steps if args.warmup_steps is not None else (10 if cuda else 1),
        ),
        "startup_seconds": t_train - t_start,
        "eval_seconds": eval_seconds,
        "eval_bytes": evaluated,
        "num_steps": s.step,
        "num_tokens": s.step * st.tokens_per_step,
        "num_params": model.num_params(),
        "peak_memory_mb": peak_memory_mb(cuda),
        "mfu_percent": mfu,
        "peak_tflops": None if peak is None else peak / 1e12,
        "tokens_per_second": tps,
        "tokens_per_cpu_second": s.trained_tokens / s.train_cpu
        if s.train_cpu > 0
        else 0.0,
        "step_ms_p50": percentile_ms(s.step_times, 50),
        "step_ms_p99": percentile_ms(s.step_times, 99),
        "data_passes": s.step * st.tokens_per_step / len(st.corpus.train),
        "final_loss": s.last_loss,
        "grad_accum_steps": st.grad_accum,
        "device": gpu_name if cuda else "cpu",
        "dtype": "bfloat16" if st.bf16 else "float32",
        "python": sys.executable,
        "compiled": steps.compiled,
        "compile_fallback": steps.fallback,
        "compile_counters": compile_counters() if st.compile else None,
        "seed": args.seed,
        "config": config,
    }


def summary(result: Dict[str, Any]) -> str:
    mfu = result["mfu_percent"]
    lines = [
        "---",
        f"val_bpb:          {result['val_bpb']:.6f}",
        f"training_seconds: {result['training_seconds']:.1f}",
        f"total_seconds:    {result['total_seconds']:.1f}",
        f"peak_vram_mb:     {result['peak_memory_mb']:.1f}",
        f"mfu_percent:      {mfu:.2f}" if mfu is not None else "mfu_percent:      n/a",
        f"total_tokens_M:   {result['num_tokens'] / 1e6:.1f}",
        f"num_steps:        {result['num_steps']}",
        f"num_params_M:     {result['num_params'] / 1e6:.1f}",
        f"depth:            {result['config']['DEPTH']}",
    ]
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python3 -m trainer",
        description="one GPT pretraining trial scored by val_bpb",
    )
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a hyperparameter (repeatable)",
    )
    p.add_argument(
        "--config", metavar="JSON", help="hyperparameters as a JSON object (--set wins)"
    )
    p.add_argument(
        "--budget",
        type=float,
        help="training seconds (default 60; warm-up steps excluded)",
    )
    p.add_argument(
        "--max-steps",
        type=int,
        help="train exactly N steps (deterministic; ignores --budget)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument(
        "--data",
        metavar="DIR",
        help="folder of .txt/.jsonl files (default: the SOTU corpus)",
    )
    p.add_argument(
        "--eval-bytes",
        type=int,
        help="validation bytes (multiple of 2048; CPU 131072, GPU 524288)",
    )
    p.add_argument(
        "--compile",
        choices=("auto", "on", "off"),
        default="auto",
        help="torch.compile (auto: on CUDA only); a compile failure continues eagerly",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="resolve and check the trial (config, data, eval size, memory), print a plan record, train nothing",
    )
    p.add_argument(
        "--cpu-dtype",
        choices=("auto", "float32", "bfloat16"),
        default="auto",
        help="CPU matmul precision (auto: bf16 autocast where the CPU has AMX/AVX512-BF16)",
    )
    p.add_argument(
        "--warmup-steps",
        type=int,
        help="steps excluded from the time (default CPU 1, CUDA 10)",
    )
    p.add_argument(
        "--progress-interval",
        type=float,
        default=0.5,
        help="seconds between progress lines",
    )
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = parser().parse_args(argv)  # argparse errors exit 2, like any invalid config
    try:
        if args.dry_run:
            return dry_run(args)
        result = run(args)
    except InvalidConfig as e:
        return fail(EXIT_INVALID, f"invalid config: {e}")
    except Diverged as e:
        return fail(EXIT_DIVERGED, f"diverged: {e}")
    except Exception as e:  # noqa: BLE001 - every failure becomes a classified exit
        if is_oom(e):
            return fail(
                EXIT_OOM,
                f"out of memory: {str(e).splitlines()[0] if str(e) else type(e).__name__}",
            )
        traceback.print_exc()
        return fail(EXIT_FAILED, f"{type(e).__name__}: {e}")
    emit("result", **result)
    print(summary(result), flush=True)
    return EXIT_OK


def fail(code: int, message: str) -> int:
    note(message)
    emit("error", status=STATUS_BY_EXIT[code], message=message[:2000])
    return code


if __name__ == "__main__":
    sys.exit(main())
