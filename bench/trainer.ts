// npm run bench:trainer — the trainer at its default CPU config next to a plain, straightforward
// reference GPT of the same size (written below in Python, run through the same adapter and
// process protocol), in one run: tokens/s, tokens per CPU-second, and val_bpb after the same
// training time on the same evaluation bytes. Goals: tokens/s ratio >= 1.0 on every CPU, a lower
// val_bpb than the reference in the same time, >= 25k tokens/s on one core.
// BENCH_SECONDS sets each run's budget (default 15; the val_bpb goal is stated for 60).
// BENCH_ISA=avx2 runs everything as on a CPU without bf16 units or AVX-512 (ATen's AVX2 kernels,
// oneDNN capped at AVX2, OpenBLAS's Haswell kernels, the trainer in float32).
// BENCH_PAIRS (default 2) sets how many interleaved rounds run; the per-round ratios' median and
// range show how much one noisy minute moves the figure. BENCH_TRAINER_BASELINE=DIR adds, in each
// round, the trainer of another checkout (DIR/trainer, e.g. `git worktree add --detach DIR main`),
// on this checkout's data, so an old and a new trainer are compared in one sitting.
// BENCH_PROFILE=1 adds where a step's CPU time goes, trainer next to reference, in the same
// environment (bench/trainer_profile.py): a fixed cost per step and a cost per sample, and per
// phase the time in matmuls, in other ops and outside ops, with the costliest ops.
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { findPython } from "../trainer/python.ts";
import { defaultConfig } from "../trainer/search-space.ts";
import { cpuFlags, TorchTrainer, trainerEnv } from "../trainer/torch-trainer.ts";
import type { TrialOutcome } from "../trainer/types.ts";
import { REFERENCE_MODEL } from "./reference-model.ts";

const REFERENCE = `
"""The reference GPT's training script: AdamW, the trainer's process protocol, val_bpb by the
trainer's own evaluate, on the same evaluation bytes."""
import argparse, contextlib, json, math, time
import torch, torch.nn.functional as F
from trainer import data
from trainer.hparams import EVAL_BYTES
from trainer.train import evaluate  # the same evaluation bytes and formula as the trainer

p = argparse.ArgumentParser()
p.add_argument("--config"); p.add_argument("--budget", type=float); p.add_argument("--seed", type=int)
p.add_argument("--device"); p.add_argument("--max-steps", type=int)
args, _ = p.parse_known_args()
hp = json.loads(args.config)
torch.set_num_threads(1)
torch.manual_seed(args.seed)
${REFERENCE_MODEL}
B = hp["DEVICE_BATCH_SIZE"]
ACCUM = max(1, hp["TOTAL_BATCH_SIZE"] // (B * T))

corpus = data.load(None)
train = torch.from_numpy(corpus.train)
model = GPT()
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
def batch():
    i = torch.randint(0, len(train) - T - 1, (B, 1))
    c = train[i + torch.arange(T + 1)].long()
    return c[:, :-1], c[:, 1:]
t0 = time.time(); step = 0; elapsed = 0.0; tokens = 0; cpu = 0.0
while elapsed < args.budget:
    s, c = time.perf_counter(), time.process_time()
    for _ in range(ACCUM):
        x, y = batch()
        loss = F.cross_entropy(model(x).view(-1, VOCAB), y.reshape(-1))
        (loss / ACCUM).backward()
    opt.step(); opt.zero_grad(set_to_none=True)
    dt = time.perf_counter() - s
    step += 1
    if step > 1:  # like the trainer: the first step is warm-up
        elapsed += dt; tokens += ACCUM * B * T; cpu += time.process_time() - c
    if step % 10 == 0:
        print(json.dumps({"event": "progress", "step": step, "loss": loss.item(), "elapsed": elapsed,
                          "tokens_per_second": tokens / max(elapsed, 1e-9), "progress": min(1.0, elapsed / args.budget)}), flush=True)
model.eval()
val_bpb, eval_bytes = evaluate(model, corpus, EVAL_BYTES["cpu"], T, torch.device("cpu"), contextlib.nullcontext)
print(json.dumps({"event": "result", "val_bpb": val_bpb, "eval_bytes": eval_bytes, "training_seconds": elapsed,
                  "total_seconds": time.time() - t0, "warmup_seconds": 0.0, "num_steps": step, "num_tokens": tokens,
                  "num_params": sum(p.numel() for p in model.parameters()), "peak_memory_mb": 0.0, "mfu_percent": None,
                  "tokens_per_second": tokens / elapsed, "tokens_per_cpu_second": tokens / cpu, "device": "cpu", "config": hp}), flush=True)
`;

interface Row {
  name: string;
  /** Which interleaved round it ran in. */
  round: number;
  outcome: TrialOutcome;
  /** Tokens per CPU-second of the timed steps (from the result record in the log). */
  cpuRate: number;
  /** Bytes val_bpb was measured on (from the result record in the log). */
  evalBytes: number;
}

/** Fields outside the typed result contract, read from the result record in the log. */
function logged(outcome: TrialOutcome): { cpuRate: number; evalBytes: number } {
  for (const line of readFileSync(outcome.logPath, "utf8").split("\n")) {
    if (!line.startsWith('{"event": "result"')) continue;
    const r = JSON.parse(line) as { tokens_per_cpu_second?: unknown; eval_bytes?: unknown };
    const num = (v: unknown) => (typeof v === "number" ? v : 0);
    return { cpuRate: num(r.tokens_per_cpu_second), evalBytes: num(r.eval_bytes) };
  }
  return { cpuRate: 0, evalBytes: 0 };
}

/** The CPU model and the flags that decide the trainer's CPU path (from /proc/cpuinfo). */
function cpuDescription(): string {
  const flags = cpuFlags(); // empty where there is no /proc/cpuinfo
  const wanted = ["avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"];
  const has = wanted.map((f) => `${f}${flags.has(f) ? "+" : "-"}`).join(" ");
  return `${os.cpus()[0]?.model ?? "unknown CPU"} (${has})`;
}

/** Environment and trainer arguments that make this CPU behave like an AVX2-only one. */
const AVX2_ONLY = {
  env: { ATEN_CPU_CAPABILITY: "avx2", ONEDNN_MAX_CPU_ISA: "AVX2", OPENBLAS_CORETYPE: "Haswell" },
  args: ["--cpu-dtype", "float32"],
};

interface Mean {
  cps: number;
  tps: number;
  bpb: number;
  steps: number;
  params: number;
  evalBytes: number;
}

function mean(rows: Row[], name: string): Mean | null {
  const done = rows.filter((r) => r.name === name && r.outcome.result);
  const ok = done.map((r) => r.outcome.result!);
  if (!ok.length) return null;
  const avg = (f: (i: number) => number) => ok.reduce((s, _r, i) => s + f(i), 0) / ok.length;
  return {
    cps: avg((i) => done[i]!.cpuRate),
    tps: avg((i) => ok[i]!.tokens_per_second),
    bpb: avg((i) => ok[i]!.val_bpb),
    steps: avg((i) => ok[i]!.num_steps),
    params: ok[0]!.num_params,
    evalBytes: done[0]!.evalBytes,
  };
}

function goal(ok: boolean): string {
  return ok ? "met" : "missed";
}

function report(rows: Row[], names: string[], seconds: number, isa: string): void {
  const table = names.map((name) => ({ name, m: mean(rows, name) }));
  console.log(
    `\ntrainer benchmark: default CPU config, ${seconds} s of training per run, one core (OPENBLAS_NUM_THREADS=1)`,
  );
  console.log(`cpu: ${cpuDescription()}${isa === "avx2" ? "; run as AVX2-only (BENCH_ISA=avx2)" : ""}`);
  console.log(`config: ${JSON.stringify(defaultConfig("cpu"))}`);
  console.log(`load average at the end: ${os.loadavg()[0]?.toFixed(2)} on ${os.cpus().length} cores`);
  console.log("name           tokens/s   tokens/CPU-s   val_bpb   eval bytes   steps   params");
  for (const { name, m } of table) {
    if (!m) console.log(`${name.padEnd(14)} failed`);
    else {
      console.log(
        `${name.padEnd(14)} ${m.tps.toFixed(0).padStart(8)}   ${m.cps.toFixed(0).padStart(12)}   ${m.bpb.toFixed(3).padStart(7)}   ${String(m.evalBytes).padStart(10)}   ${m.steps.toFixed(0).padStart(5)}   ${m.params}`,
      );
    }
  }
  const a = table[0]?.m;
  const b = table[1]?.m;
  if (!a || !b) return;
  const ratio = a.tps / b.tps;
  console.log(`tokens/s trainer / reference: ${ratio.toFixed(2)} (goal >= 1.0: ${goal(ratio >= 1)})`);
  console.log(
    `tokens per CPU-second trainer / reference: ${(a.cps / b.cps).toFixed(2)} (goal >= 1.0: ${goal(a.cps >= b.cps)}; less sensitive to other load)`,
  );
  console.log(
    `val_bpb after ${seconds} s, same ${a.evalBytes} eval bytes: trainer ${a.bpb.toFixed(3)}, reference ${b.bpb.toFixed(3)} (goal: trainer lower${seconds === 60 ? "" : ", stated for 60 s"}: ${goal(a.bpb < b.bpb && a.evalBytes === b.evalBytes)})`,
  );
  console.log(`trainer tokens/s: ${a.tps.toFixed(0)} (goal >= 25000: ${goal(a.tps >= 25000)})`);
  spread(rows, "trainer", "reference");
  if (names.includes("baseline")) {
    spread(rows, "trainer", "baseline");
    spread(rows, "baseline", "reference");
  }
}

/** Per-round ratios of a's to b's throughput (rounds where both ran): median and range. */
function spread(rows: Row[], a: string, b: string): void {
  const rounds = [...new Set(rows.map((r) => r.round))];
  const pairs = rounds.flatMap((i) => {
    const x = rows.find((r) => r.round === i && r.name === a && r.outcome.result);
    const y = rows.find((r) => r.round === i && r.name === b && r.outcome.result);
    return x && y ? [{ x, y }] : [];
  });
  if (!pairs.length) return;
  const stats = (f: (r: Row) => number) => {
    const v = pairs.map(({ x, y }) => f(x) / f(y)).sort((p, q) => p - q);
    const mid = v.length >> 1;
    const median = v.length % 2 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
    return `median ${median.toFixed(3)}, range ${v[0]!.toFixed(3)}-${v[v.length - 1]!.toFixed(3)}`;
  };
  console.log(
    `${a} / ${b} per round (${pairs.length}): tokens/s ${stats((r) => r.outcome.result!.tokens_per_second)}; tokens/CPU-s ${stats((r) => r.cpuRate)}`,
  );
}

/** The trainer of another checkout, on this checkout's data and cache (BENCH_TRAINER_BASELINE). */
function baselineTrainer(dir: string, env: Record<string, string>, args: string[]): TorchTrainer {
  const root = path.resolve(dir);
  if (!existsSync(path.join(root, "trainer", "__main__.py")))
    throw new Error(`BENCH_TRAINER_BASELINE=${dir}: no trainer/__main__.py there`);
  // Its folder first on the path, for this process and the trainer's own re-exec.
  const code = [
    "import os, runpy, sys",
    `sys.path.insert(0, ${JSON.stringify(root)})`,
    `os.environ["PYTHONPATH"] = ${JSON.stringify(root)} + os.pathsep + os.environ.get("PYTHONPATH", "")`,
    'runpy.run_module("trainer", run_name="__main__", alter_sys=True)',
  ].join("; ");
  const repo = path.resolve(import.meta.dirname, "..");
  const corpus = path.join(repo, "node_modules", "@stdlib", "datasets-sotu", "data");
  return new TorchTrainer({
    env: { ...env, BILEVEL_CACHE: process.env.BILEVEL_CACHE ?? path.join(repo, ".bilevel", "cache") },
    entry: ["-c", code],
    extraArgs: [...args, "--data", corpus],
  });
}

interface Profile {
  batch: number;
  steps: number;
  trainer: ProfiledModel;
  reference: ProfiledModel;
}
interface ProfiledModel {
  step_ms: number;
  fixed_ms: number;
  per_sample_ms: number;
  phases: Record<string, { matmul: number; other: number; outside: number }>;
  top: { ms: number; calls: number; op: string }[];
}

/** BENCH_PROFILE: bench/trainer_profile.py in the benchmark's environment, printed as a table. */
function profileSteps(modelSource: string, env: Record<string, string>, tmp: string): void {
  const found = findPython("torch");
  if (!found.ok) throw new Error(`BENCH_PROFILE: no Python with torch: ${found.error}`);
  const modelPath = path.join(tmp, "reference_model.py");
  writeFileSync(modelPath, modelSource);
  const script = path.join(import.meta.dirname, "trainer_profile.py");
  const config = JSON.stringify(defaultConfig("cpu"));
  process.stderr.write("profiling a step of each model (about a minute) ...\n");
  const r = spawnSync(found.python, [script, "--config", config, "--reference", modelPath], {
    encoding: "utf8",
    env: trainerEnv({ ...(process.env as Record<string, string>), ...env }),
    timeout: 900_000,
  });
  if (r.status !== 0) throw new Error(`bench/trainer_profile.py failed (${r.status}): ${r.stderr}`);
  const p = JSON.parse(r.stdout) as Profile;
  const f = (x: number) => x.toFixed(1).padStart(9);
  const row = (label: string, a: number, b: number) => console.log(`${label.padEnd(44)}${f(a)}${f(b)}`);
  console.log(`\nwhere a step's CPU time goes (ms per step, medians of ${p.steps} steps; BENCH_PROFILE=1)`);
  console.log(`${"".padEnd(44)}  trainer  reference`);
  row("step (not profiled)", p.trainer.step_ms, p.reference.step_ms);
  row(`  fixed cost per step (fit: batch 1, ${p.batch})`, p.trainer.fixed_ms, p.reference.fixed_ms);
  row("  cost per sample (same fit)", p.trainer.per_sample_ms, p.reference.per_sample_ms);
  for (const phase of Object.keys(p.trainer.phases)) {
    const a = p.trainer.phases[phase]!;
    const b = p.reference.phases[phase]!;
    row(`${phase}: matmuls`, a.matmul, b.matmul);
    row(`${phase}: other ops`, a.other, b.other);
    row(`${phase}: outside ops (Python, autograd)`, a.outside, b.outside);
  }
  for (const name of ["trainer", "reference"] as const) {
    console.log(`${name}'s costliest ops (self ms per step, calls per step):`);
    for (const t of p[name].top.slice(0, 8))
      console.log(`  ${t.ms.toFixed(1).padStart(6)}  ${String(t.calls).padStart(4)}  ${t.op}`);
  }
}

async function main(): Promise<void> {
  const seconds = Number(process.env.BENCH_SECONDS ?? 15);
  const pairs = Number(process.env.BENCH_PAIRS ?? 2);
  const isa = process.env.BENCH_ISA ?? "native";
  const baselineDir = process.env.BENCH_TRAINER_BASELINE;
  if (isa !== "native" && isa !== "avx2") throw new Error(`BENCH_ISA must be native or avx2, got ${isa}`);
  if (!(Number.isInteger(pairs) && pairs >= 1))
    throw new Error(`BENCH_PAIRS must be an integer >= 1, got ${pairs}`);
  const tmp = mkdtempSync(path.join(os.tmpdir(), "bilevel-bench-trainer-"));
  const refPath = path.join(tmp, "reference_gpt.py");
  writeFileSync(refPath, REFERENCE);
  const config = defaultConfig("cpu");
  const env = isa === "avx2" ? AVX2_ONLY.env : {};
  const args = isa === "avx2" ? AVX2_ONLY.args : [];
  const sides: [string, TorchTrainer][] = [
    ["trainer", new TorchTrainer({ env, extraArgs: args })],
    ["reference", new TorchTrainer({ env, entry: [refPath] })],
  ];
  if (baselineDir) sides.push(["baseline", baselineTrainer(baselineDir, env, args)]);
  const reference = sides[1]![1];
  const rows: Row[] = [];
  const run = async (name: string, trainer: TorchTrainer, round: number) => {
    process.stderr.write(`running ${name} for ${seconds} s (round ${round + 1}) ...\n`);
    const outcome = await trainer.run({
      config: trainer === reference ? config : {},
      budgetSeconds: seconds,
      seed: 0,
      device: "cpu",
      workDir: path.join(tmp, `${name}-${round}`),
    });
    if (outcome.status !== "ok")
      process.stderr.write(`  ${name} failed: ${outcome.status}: ${outcome.message}\n`);
    rows.push({
      name,
      round,
      outcome,
      ...(outcome.status === "ok" ? logged(outcome) : { cpuRate: 0, evalBytes: 0 }),
    });
  };
  // Interleaved, so a change in machine load hits every side alike; each round starts with
  // another side, so none always runs first.
  for (let i = 0; i < pairs; i++) {
    for (let j = 0; j < sides.length; j++) {
      const [name, trainer] = sides[(i + j) % sides.length]!;
      await run(name, trainer, i);
    }
  }
  // Forced to float32 (what a CPU without bf16 units runs); already so under BENCH_ISA=avx2.
  if (isa === "native")
    await run("trainer-fp32", new TorchTrainer({ env, extraArgs: ["--cpu-dtype", "float32"] }), 0);
  const names = sides.map(([name]) => name);
  report(rows, isa === "native" ? [...names, "trainer-fp32"] : names, seconds, isa);
  // The profile runs the float32 path: on a CPU with bf16 units the trainer's default differs.
  if (process.env.BENCH_PROFILE === "1") profileSteps(REFERENCE_MODEL, env, tmp);
  rmSync(tmp, { recursive: true, force: true });
}

await main();
