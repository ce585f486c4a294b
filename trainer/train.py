"""One training trial: python3 -m trainer [--set KEY=VALUE ...] [--budget S] [--max-steps N] ...

Protocol (docs/trainer.md): JSON lines on stdout -- one {"event": "start"}, then
{"event": "progress"} records, then one {"event": "result"} (or {"event": "error"}) --
followed by Karpathy's summary block. Human-readable notes go to stderr.

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
from trainer.cpu_env import cpu_flags, has_bf16_matmul
from trainer.hparams import EVAL_BYTES, MAX_SEQ_LEN, InvalidConfig, Value, resolve

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_OOM, EXIT_DIVERGED = 0, 1, 2, 3, 4
STATUS_BY_EXIT = {
    EXIT_INVALID: "invalid-config",
    EXIT_OOM: "oom",
    EXIT_DIVERGED: "diverged",
    EXIT_FAILED: "crashed",
}
# A loss this far above uniform guessing (ln V nats) means training has blown up.
DIVERGENCE_FACTOR = 2.0
# Dense bf16 peak FLOP/s for MFU (override with BILEVEL_PEAK_TFLOPS).
PEAK_TFLOPS = {
    "H100": 989.5,
    "H200": 989.5,
    "H800": 989.5,
    "GH200": 989.5,
    "A100": 312.0,
    "L40S": 362.0,
}


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


def peak_flops(name: str) -> Optional[float]:
    env = os.environ.get("BILEVEL_PEAK_TFLOPS")
    if env:
        return float(env) * 1e12
    for key, tflops in PEAK_TFLOPS.items():
        if key in name:
            return tflops * 1e12
    return None


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

    starts = data_mod.eval_segments(corpus.val, eval_bytes, MAX_SEQ_LEN)
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


def run(args: argparse.Namespace) -> Dict[str, Any]:
    t_start = time.time()
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

    # Config and data problems are found before torch loads (a second or so).
    resolve(overrides, "cpu")
    corpus = data_mod.load(args.data)

    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        raise InvalidConfig("--device cuda, but PyTorch sees no CUDA device")
    cuda = args.device == "cuda" or (
        args.device == "auto" and torch.cuda.is_available()
    )
    dev_name = "cuda" if cuda else "cpu"
    hp = resolve(overrides, dev_name)
    budget = float(args.budget if args.budget is not None else 60.0)
    eval_bytes = int(args.eval_bytes or EVAL_BYTES[dev_name])
    data_mod.eval_segments(
        corpus.val, eval_bytes, MAX_SEQ_LEN
    )  # fail early, before training

    from trainer.model import GPT, HAS_SDPA, model_config
    from trainer.optim import build

    threads = int(
        os.environ.get("BILEVEL_THREADS") or os.environ.get("OPENBLAS_NUM_THREADS") or 1
    )
    if not cuda:
        torch.set_num_threads(max(1, threads))
    torch.manual_seed(args.seed)
    device = torch.device("cuda" if cuda else "cpu")
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    # bf16 autocast on CUDA; on CPUs with bf16 matmul units too (about 2x the tokens per
    # CPU-second of float32 in npm run bench:trainer: docs/trainer.md, Benchmark).
    bf16 = (
        cuda
        or args.cpu_dtype == "bfloat16"
        or (args.cpu_dtype == "auto" and has_bf16_matmul(cpu_flags()))
    )

    def autocast() -> ContextManager[Any]:
        if bf16:
            return cast(
                ContextManager[Any], torch.autocast(device.type, dtype=torch.bfloat16)
            )
        return nullcontext()

    seq_len, dbs = int(hp["SEQ_LEN"]), int(hp["DEVICE_BATCH_SIZE"])
    grad_accum = max(1, round(int(hp["TOTAL_BATCH_SIZE"]) / (dbs * seq_len)))
    tokens_per_step = grad_accum * dbs * seq_len
    cfg = model_config(hp, corpus.vocab_size)
    model = GPT(cfg).to(device)
    opts = build(
        model.param_groups(),
        hp,
        cfg.d_model,
        cuda,
        torch.bfloat16 if bf16 else torch.float32,
    )
    compiled = cuda and args.compile != "off" and hasattr(torch, "compile")
    train_model: Any = torch.compile(model) if compiled else model  # type: ignore[attr-defined]
    warmup_steps = (
        args.warmup_steps if args.warmup_steps is not None else (10 if cuda else 1)
    )
    flops_per_token = model.flops_per_token()
    gpu_name = torch.cuda.get_device_name(0) if cuda else ""
    emit(
        "start",
        device=dev_name,
        device_name=gpu_name or "cpu",
        torch=torch.__version__,
        num_params=model.num_params(),
        d_model=cfg.d_model,
        n_head=cfg.n_head,
        grad_accum_steps=grad_accum,
        tokens_per_step=tokens_per_step,
        budget_seconds=budget,
        max_steps=args.max_steps,
        seed=args.seed,
        eval_bytes=eval_bytes,
        data=corpus.source,
        cache=str(corpus.path),
        sdpa=bool(cuda and HAS_SDPA),
        compiled=compiled,
        dtype="bfloat16" if bf16 else "float32",
        threads=None if cuda else torch.get_num_threads(),
    )
    if tokens_per_step != int(hp["TOTAL_BATCH_SIZE"]):
        note(
            f"TOTAL_BATCH_SIZE {hp['TOTAL_BATCH_SIZE']} -> {tokens_per_step} tokens/step ({grad_accum} x {dbs} x {seq_len})"
        )

    train_tokens = torch.from_numpy(corpus.train)
    if cuda:
        train_tokens = train_tokens.to(device)
    gen = torch.Generator(device=device)
    gen.manual_seed(args.seed + 1)
    offsets_t = torch.arange(seq_len + 1, device=device)

    def batch() -> Tuple[torch.Tensor, torch.Tensor]:
        starts = torch.randint(
            0, len(train_tokens) - seq_len - 1, (dbs, 1), generator=gen, device=device
        )
        chunk = train_tokens[starts + offsets_t].long()
        return chunk[:, :-1], chunk[:, 1:]

    diverge_at = DIVERGENCE_FACTOR * math.log(corpus.vocab_size)
    step, training_time, warmup_time, trained_tokens = 0, 0.0, 0.0, 0
    train_cpu = (
        0.0  # CPU seconds of the timed steps: throughput per core, despite other load
    )
    last_emit, last_loss = 0.0, float("nan")
    t_train = time.time()
    while True:
        progress = (
            step / args.max_steps
            if args.max_steps
            else min(training_time / budget, 1.0)
        )
        lrm = lr_multiplier(progress, hp)
        for opt in opts:
            for g in opt.param_groups:
                g["lr"] = g["initial_lr"] * lrm
        muon = opts[1]
        for g in muon.param_groups:
            g["momentum"] = 0.85 + 0.10 * min(step / 300, 1.0)
            g["weight_decay"] = float(hp["WEIGHT_DECAY"]) * (1.0 - progress)
        t0, c0 = time.perf_counter(), time.process_time()
        loss_sum = torch.zeros((), device=device)
        for _ in range(grad_accum):
            x, y = batch()
            with autocast():
                loss = train_model(x, y)
            (loss / grad_accum).backward()
            loss_sum += loss.detach()
        for opt in opts:
            opt.step()
        model.zero_grad(set_to_none=True)
        last_loss = float(loss_sum) / grad_accum  # syncs the device
        dt = time.perf_counter() - t0
        step += 1
        if step <= warmup_steps:
            warmup_time += dt
        else:
            training_time += dt
            train_cpu += time.process_time() - c0
            trained_tokens += tokens_per_step
        if not math.isfinite(last_loss) or last_loss > diverge_at:
            raise Diverged(
                f"loss {last_loss:.4g} at step {step} (limit {diverge_at:.3g} = {DIVERGENCE_FACTOR} x ln V)"
            )
        if step == 1:  # Python's GC causes stalls; nothing cyclic is created per step
            gc.collect()
            gc.freeze()
            gc.disable()
        done = (
            step >= args.max_steps
            if args.max_steps
            else (step > warmup_steps and training_time >= budget)
        )
        now = time.time()
        if done or step == 1 or now - last_emit >= args.progress_interval:
            last_emit = now
            emit(
                "progress",
                step=step,
                loss=round(last_loss, 6),
                elapsed=round(training_time, 3),
                tokens_per_second=round(trained_tokens / training_time, 1)
                if training_time > 0
                else 0.0,
                progress=round(
                    min(step / args.max_steps, 1.0)
                    if args.max_steps
                    else min(training_time / budget, 1.0),
                    6,
                ),
            )
        if done:
            break

    t_eval = time.time()
    model.eval()
    val_bpb, evaluated = evaluate(model, corpus, eval_bytes, seq_len, device, autocast)
    eval_seconds = time.time() - t_eval
    if not math.isfinite(val_bpb):
        raise Diverged(f"val_bpb is {val_bpb}")
    tps = trained_tokens / training_time if training_time > 0 else 0.0
    peak = peak_flops(gpu_name) if cuda else None
    mfu = 100.0 * flops_per_token * tps / peak if peak and tps else None
    config: Dict[str, Value] = dict(hp)
    return {
        "val_bpb": val_bpb,
        "training_seconds": training_time,
        "total_seconds": time.time() - t_start,
        "warmup_seconds": warmup_time,
        "warmup_steps": min(step, warmup_steps),
        "startup_seconds": t_train - t_start,
        "eval_seconds": eval_seconds,
        "eval_bytes": evaluated,
        "num_steps": step,
        "num_tokens": step * tokens_per_step,
        "num_params": model.num_params(),
        "peak_memory_mb": peak_memory_mb(cuda),
        "mfu_percent": mfu,
        "tokens_per_second": tps,
        "tokens_per_cpu_second": trained_tokens / train_cpu if train_cpu > 0 else 0.0,
        "final_loss": last_loss,
        "grad_accum_steps": grad_accum,
        "device": gpu_name if cuda else "cpu",
        "dtype": "bfloat16" if bf16 else "float32",
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
        help="validation bytes (multiple of 2048; CPU 131072, GPU 1048576)",
    )
    p.add_argument(
        "--compile",
        choices=("auto", "off"),
        default="auto",
        help="torch.compile on CUDA (auto: on)",
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
