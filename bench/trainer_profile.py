"""Where a training step's CPU time goes, for the trainer's CPU path and the benchmark's
reference GPT at the same config (`BENCH_PROFILE=1 npm run bench:trainer` runs this, in the
benchmark's environment: one thread, AVX2-only under BENCH_ISA=avx2).

Per model, in one process and interleaved (so the machine's load hits both alike):
- CPU time per step at the default micro-batch and at a micro-batch of 1 sample, fitted as a
  fixed cost per step (what does not grow with the batch: the optimizer's work on the weights,
  per-op overheads) plus a cost per sample;
- one profiled pass at the default size, split by phase (data, forward, backward, optimizer)
  into time in matrix products, in other ATen ops, and outside any op (Python, autograd), with
  the ops that take the most time.
Figures are medians over steps, in CPU milliseconds per step. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any, Callable, Dict, List, Tuple

import torch
import torch.nn.functional as F

from trainer import data
from trainer.hparams import defaults
from trainer.model import GPT, model_config
from trainer.optim import build

PHASES = ("data", "forward", "backward", "optimizer")
MATMUL_OPS = {"aten::mm", "aten::bmm", "aten::addmm", "aten::addmm_", "aten::baddbmm"}
Step = Callable[[], None]


def batcher(tokens: torch.Tensor, b: int, t: int) -> Callable[[], Tuple[Any, Any]]:
    offsets = torch.arange(t + 1)

    def batch() -> Tuple[Any, Any]:
        starts = torch.randint(0, len(tokens) - t - 1, (b, 1))
        chunk = tokens[starts + offsets].long()
        return chunk[:, :-1], chunk[:, 1:]

    return batch


def phased(
    batch: Callable[[], Tuple[Any, Any]],
    loss_of: Callable[[Any, Any], torch.Tensor],
    opts: List[torch.optim.Optimizer],
    model: torch.nn.Module,
) -> Step:
    """One training step with each phase in a profiler range of its own name."""
    rf = torch.profiler.record_function

    def step() -> None:
        with rf("data"):
            x, y = batch()
        with rf("forward"):
            loss = loss_of(x, y)
        with rf("backward"):
            loss.backward()
        with rf("optimizer"):
            for opt in opts:
                opt.step()
            model.zero_grad(set_to_none=True)

    return step


def trainer_step(hp: Dict[str, Any], tokens: torch.Tensor, vocab: int, b: int) -> Step:
    """The trainer's float32 CPU path, built as trainer/train.py builds it."""
    cfg = model_config(hp, vocab)
    model = GPT(cfg, device=torch.device("cpu"), dtype=torch.float32)
    opts = build(model.param_groups(), hp, cfg.d_model, False, torch.float32)
    loss_of: Callable[[Any, Any], torch.Tensor] = model
    return phased(batcher(tokens, b, cfg.seq_len), loss_of, opts, model)


def reference_step(
    source: str, hp: Dict[str, Any], tokens: torch.Tensor, b: int
) -> Step:
    """The benchmark's reference GPT (its model source, run with this config)."""
    scope: Dict[str, Any] = {"hp": hp}
    exec(compile(source, "reference_model.py", "exec"), scope)
    model = scope["GPT"]()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    v = scope["VOCAB"]

    def loss_of(x: Any, y: Any) -> torch.Tensor:
        out: torch.Tensor = F.cross_entropy(model(x).view(-1, v), y.reshape(-1))
        return out

    return phased(batcher(tokens, b, int(hp["SEQ_LEN"])), loss_of, [opt], model)


def cpu_ms(step: Step, n: int) -> List[float]:
    times = []
    for _ in range(n):
        c = time.process_time()
        step()
        times.append((time.process_time() - c) * 1000)
    return times


def self_us(e: Any) -> float:
    """An op's time less its children's (at least 0: the profiler's nesting of a few optimizer
    ops overlaps)."""
    return max(
        0.0, float(e.cpu_time_total - sum(c.cpu_time_total for c in e.cpu_children))
    )


def profile(step: Step, n: int) -> Dict[str, Any]:
    """Per phase, per step: milliseconds in matmuls, in other ops and outside ops, and the
    ops with the most time. An op's time is its fastest call times its calls per step and the
    time outside ops the least over steps: another process preempting this one inflates the
    wall-clock times the profiler records, never the fastest."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    with torch_profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(n):
            step()
    events = list(prof.events())
    ranges = sorted(
        (e.time_range.start, e.time_range.end, e.name)
        for e in events
        if e.name in PHASES
    )
    starts = [s for s, _e, _n in ranges]
    in_ops = [0.0] * len(ranges)  # per range: time inside top-level ops
    calls: Dict[
        Tuple[str, str], List[float]
    ] = {}  # (phase, op) -> self time of each call
    for e in events:
        if e.name in PHASES or not e.name.startswith("aten::"):
            continue
        i = _range_of(starts, ranges, e.time_range.start)
        if i < 0:
            continue
        parent = e.cpu_parent
        if parent is None or not parent.name.startswith("aten::"):
            in_ops[i] += e.cpu_time_total
        key = f"{e.name} {list(e.input_shapes)[:3]}"
        calls.setdefault((ranges[i][2], key), []).append(self_us(e))
    cost = {k: min(v) * len(v) / n / 1000 for k, v in calls.items()}
    phases: Dict[str, Dict[str, float]] = {}
    for name in PHASES:
        mine = [(op, ms) for (ph, op), ms in cost.items() if ph == name]
        walls = [r[1] - r[0] - in_ops[i] for i, r in enumerate(ranges) if r[2] == name]
        phases[name] = {
            "matmul": sum(ms for op, ms in mine if op.split(" ")[0] in MATMUL_OPS),
            "other": sum(ms for op, ms in mine if op.split(" ")[0] not in MATMUL_OPS),
            "outside": max(0.0, min(walls) / 1000) if walls else 0.0,
        }
    by_op: Dict[str, List[float]] = {}
    for (ph, op), ms in cost.items():
        by_op.setdefault(op, [0.0, 0.0])[0] += ms
        by_op[op][1] += len(calls[(ph, op)]) / n
    top = sorted(by_op.items(), key=lambda kv: -kv[1][0])[:12]
    return {
        "phases": phases,
        "top": [{"ms": v[0], "calls": round(v[1]), "op": k} for k, v in top],
    }


def _range_of(starts: List[int], ranges: List[Tuple[int, int, str]], t: int) -> int:
    import bisect

    i = bisect.bisect_right(starts, t) - 1
    return i if i >= 0 and t <= ranges[i][1] else -1


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--config", required=True, help="the run config (JSON)")
    p.add_argument(
        "--reference", required=True, help="the reference model's source file"
    )
    p.add_argument(
        "--steps", type=int, default=12, help="timed steps per round and size"
    )
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    try:
        hp = json.loads(args.config)
    except json.JSONDecodeError as e:
        p.error(f"--config is not JSON: {e}")
    if not isinstance(hp, dict):
        p.error("--config must be a JSON object")
    missing = sorted(set(defaults("cpu")) - set(hp))
    if missing:
        p.error(f"--config lacks {', '.join(missing)}")
    torch.set_num_threads(1)
    with open(args.reference, encoding="utf8") as f:
        source = f.read()
    corpus = data.load(None)
    tokens = torch.from_numpy(corpus.train)
    full = int(hp["DEVICE_BATCH_SIZE"])
    torch.manual_seed(0)
    steps: Dict[Tuple[str, int], Step] = {}
    for b in (full, 1):
        sized = dict(hp, DEVICE_BATCH_SIZE=b, TOTAL_BATCH_SIZE=b * int(hp["SEQ_LEN"]))
        steps[("trainer", b)] = trainer_step(sized, tokens, corpus.vocab_size, b)
        steps[("reference", b)] = reference_step(source, sized, tokens, b)
    for step in steps.values():  # warm-up: first-step allocations, lazy inits
        cpu_ms(step, 2)
    times: Dict[Tuple[str, int], List[float]] = {k: [] for k in steps}
    for _ in range(args.rounds):
        for key, step in steps.items():
            times[key] += cpu_ms(step, args.steps)
    out: Dict[str, Any] = {"batch": full, "steps": args.steps * args.rounds}
    for name in ("trainer", "reference"):
        t_full = statistics.median(times[(name, full)])
        t_one = statistics.median(times[(name, 1)])
        per_sample = (t_full - t_one) / (full - 1) if full > 1 else t_full
        out[name] = {
            "step_ms": t_full,
            "fixed_ms": t_one - per_sample,
            "per_sample_ms": per_sample,
            **profile(steps[(name, full)], args.steps),
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
