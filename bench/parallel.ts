// npm run bench:parallel — trials in flight. (1) With a trainer of fixed duration (the synthetic
// one, BENCH_TRIAL_MS each), the wall time of 20 trials for --parallel 1, 2, 4 on the local
// executor and, when a cluster answers (SLURM_CONF; scripts/slurm-cluster.sh), on Slurm, with the
// scheduling overhead per trial (submit to start, end to recorded). (2) On the surrogate, the
// best val_bpb after the same number of trials for --parallel 1 and 4 over BENCH_SEEDS seeds,
// paired by seed, with a 95% bootstrap CI: what seeing less history costs. BENCH_PART=wall or
// surrogate runs one half.
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { testConfig } from "../__tests__/support/run-config.ts";
import { OUTCOME_FILE } from "../runtime/executors/job-files.ts";
import { RunStore } from "../runtime/store.ts";
import { bootstrapMeanCI } from "../runtime/study/stats.ts";
import { executeRun } from "../runtime/wiring.ts";

const TRIAL_MS = Number(process.env.BENCH_TRIAL_MS ?? 2000);
const SEEDS = Number(process.env.BENCH_SEEDS ?? 10);
const SURROGATE_TRIALS = Number(process.env.BENCH_SURROGATE_TRIALS ?? 30);
const TRIALS = 20;

const median = (v: number[]) => {
  const s = [...v].sort((a, b) => a - b);
  return s.length === 0
    ? Number.NaN
    : ((s[Math.floor((s.length - 1) / 2)] ?? 0) + (s[Math.ceil((s.length - 1) / 2)] ?? 0)) / 2;
};

/** 20 trials: 1 baseline + 19 iterations, no outer levels (no cycle boundary drains the slots). */
function fixedRun(name: string, parallel: number, executor: object, extra: object = {}) {
  return testConfig({
    name,
    seed: 3,
    iterations: TRIALS - 1,
    budgetSeconds: 1,
    trainer: { kind: "synthetic", delayMs: TRIAL_MS, noise: 0.003 },
    acceptance: { baselineRepeats: 1 },
    level15: { every: 1000, enabled: false },
    level2: { everyCycles: 0 },
    parallel,
    executor,
    ...extra,
  });
}

interface Timing {
  wallS: number;
  /** From the first trial's submission to the last one's record: the run's start left out. */
  spanS: number;
  submitToStartMs: number;
  endToRecordedMs: number;
}

async function timeRun(
  name: string,
  parallel: number,
  executor: object,
  extra: object = {},
): Promise<Timing> {
  const dir = mkdtempSync(path.join(tmpdir(), `bench-parallel-${name}-`));
  const started = Date.now();
  await executeRun({ dir, config: fixedRun(name, parallel, executor, extra), offline: true, observer: {} });
  const wallS = (Date.now() - started) / 1000;
  const store = RunStore.open(dir, { readOnly: true });
  const jobs = store.jobs();
  store.close();
  // A Slurm job's end is when it wrote its outcome; a local trial's, when the loop got it back.
  const ended = (j: (typeof jobs)[number]) => {
    try {
      return statSync(path.join(j.workDir, OUTCOME_FILE)).mtimeMs;
    } catch {
      return j.endedMs ?? 0;
    }
  };
  const timing = {
    wallS,
    spanS:
      (Math.max(...jobs.map((j) => j.recordedMs ?? 0)) - Math.min(...jobs.map((j) => j.submittedMs))) / 1000,
    submitToStartMs: median(jobs.map((j) => (j.startedMs ?? 0) - j.submittedMs)),
    endToRecordedMs: median(jobs.map((j) => (j.recordedMs ?? 0) - ended(j))),
  };
  rmSync(dir, { recursive: true, force: true });
  return timing;
}

function slurmUp(): boolean {
  const ping = spawnSync("scontrol", ["ping"], { encoding: "utf8" });
  return !ping.error && /\bUP\b/.test(ping.stdout);
}

async function wallTimes(): Promise<void> {
  const executors: [string, object][] = [["local", { kind: "local" }]];
  if (slurmUp()) executors.push(["slurm", { kind: "slurm", pollSeconds: 0.2, graceSeconds: 60 }]);
  else console.log("(no Slurm cluster answers: the slurm rows are left out; see scripts/slurm-cluster.sh)");
  console.log(`\n${TRIALS} trials of ${TRIAL_MS} ms each (synthetic trainer), offline, no Level 1.5/2:`);
  console.log(
    "executor  parallel  wall (s)  × parallel 1  trials span (s)  × parallel 1  submit→start (ms, median)  end→recorded (ms, median)",
  );
  for (const [kind, executor] of executors) {
    let one: Timing | null = null;
    for (const parallel of [1, 2, 4]) {
      const t = await timeRun(`${kind}-${parallel}`, parallel, executor);
      one ??= t;
      const ratio = t.wallS / one.wallS;
      const spanRatio = t.spanS / one.spanS;
      const goal =
        kind === "local" && parallel === 2 ? `   goal ≤ 0.60: ${ratio <= 0.6 ? "met" : "NOT met"}` : "";
      console.log(
        `${kind.padEnd(9)} ${String(parallel).padStart(8)}  ${t.wallS.toFixed(1).padStart(8)}  ${ratio.toFixed(2).padStart(12)}  ${t.spanS.toFixed(1).padStart(15)}  ${spanRatio.toFixed(2).padStart(12)}  ${t.submitToStartMs.toFixed(0).padStart(25)}  ${t.endToRecordedMs.toFixed(0).padStart(25)}${goal}`,
      );
    }
  }
  const drained = await timeRun("local-2-cycles", 2, { kind: "local" }, { level15: { every: 5 } });
  console.log(
    `local, parallel 2, Level 1.5 every 5 iterations (the slots drain at each cycle boundary): ${drained.wallS.toFixed(1)} s`,
  );
}

async function surrogateQuality(): Promise<void> {
  console.log(
    `\nSurrogate, ${SURROGATE_TRIALS} iterations, ${SEEDS} seeds: best search trial's val_bpb, parallel 1 vs 4 (offline proposer)`,
  );
  const best = async (seed: number, parallel: number) => {
    const dir = mkdtempSync(path.join(tmpdir(), "bench-parallel-surrogate-"));
    const config = testConfig({
      name: `surrogate-${parallel}-${seed}`,
      seed,
      iterations: SURROGATE_TRIALS,
      trainer: { kind: "surrogate" },
      device: "cpu",
      parallel,
    });
    await executeRun({ dir, config, offline: true, observer: {} });
    // The best search trial: the baselines (the same for both) would hide the search's result.
    const store = RunStore.open(dir, { readOnly: true });
    const scores = store
      .trials()
      .filter((t) => t.kind === "search" && t.valBpb !== null)
      .map((t) => t.valBpb as number);
    store.close();
    rmSync(dir, { recursive: true, force: true });
    return Math.min(...scores);
  };
  const diffs: number[] = [];
  for (let i = 0; i < SEEDS; i++) {
    const seed = 100 + i * 1000;
    const [one, four] = [await best(seed, 1), await best(seed, 4)];
    diffs.push(four - one);
    console.log(
      `  seed ${seed}: parallel 1 ${one.toFixed(4)}, parallel 4 ${four.toFixed(4)}, Δ ${(four - one).toFixed(4)}`,
    );
  }
  const mean = diffs.reduce((a, b) => a + b, 0) / diffs.length;
  const ci = bootstrapMeanCI(diffs, "bench-parallel");
  console.log(
    `mean Δ best val_bpb (parallel 4 − parallel 1): ${mean.toFixed(4)}, 95% CI [${ci?.[0].toFixed(4)}, ${ci?.[1].toFixed(4)}] (positive: parallel proposals cost that much)`,
  );
}

// BENCH_PART=wall or surrogate runs one half.
if (process.env.BENCH_PART !== "surrogate") await wallTimes();
if (process.env.BENCH_PART !== "wall") await surrogateQuality();
