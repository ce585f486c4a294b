// The Slurm executor on a real single-node cluster (scripts/slurm-cluster.sh; `./bilevel test`
// starts one): two jobs at once, kill/stop/resume with jobs in flight, a deadline, a refused
// request. The trainer is the synthetic one with a fixed duration, run by each job on the node.
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { ExecutorError } from "../../runtime/executors/types.ts";
import { BaselineError } from "../../runtime/loop.ts";
import { type JobRow, RunStore, type TrialRow } from "../../runtime/store.ts";
import { executeRun } from "../../runtime/wiring.ts";
import { cliArgv } from "../support/cli.ts";
import { testConfig } from "../support/run-config.ts";
import { queuedJobs, slurmTest } from "../support/slurm.ts";
import { waitFor } from "../support/wait.ts";

const slurm = slurmTest();

/** A temporary folder the job (root, on this node) can reach. */
function tempDir(prefix: string): string {
  return mkdtempSync(path.join(tmpdir(), prefix));
}

const runConfig = (name: string, delayMs: number, extra: object = {}) => ({
  name,
  seed: 11,
  iterations: 4,
  budgetSeconds: 1,
  trainer: { kind: "synthetic", delayMs, noise: 0.003 },
  acceptance: { baselineRepeats: 2 },
  level15: { every: 4, minActive: 6 },
  level2: { everyCycles: 0 },
  parallel: 2,
  executor: { kind: "slurm", pollSeconds: 0.2, graceSeconds: 60 },
  ...extra,
});

function readRun(dir: string): { trials: TrialRow[]; jobs: JobRow[] } {
  let store: RunStore | null = null;
  try {
    store = RunStore.open(dir, { readOnly: true });
    return { trials: store.trials(), jobs: store.jobs() };
  } catch {
    return { trials: [], jobs: [] }; // not created yet
  } finally {
    store?.close();
  }
}

function exited(child: ChildProcess): Promise<{ code: number | null; stderr: string }> {
  let stderr = "";
  child.stderr?.on("data", (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-4000);
  });
  return new Promise((resolve) => child.on("exit", (code) => resolve({ code, stderr })));
}

const children: ChildProcess[] = [];
afterEach(() => {
  for (const child of children.splice(0)) if (child.exitCode === null) child.kill("SIGKILL");
});

function cli(...args: string[]): ChildProcess {
  const child = spawn(process.execPath, cliArgv(...args, "--offline"), {
    stdio: ["ignore", "ignore", "pipe"],
  });
  children.push(child);
  return child;
}

/** Every iteration trained once, every trial id once. */
function expectComplete(dir: string, iterations: number): void {
  const { trials } = readRun(dir);
  const search = trials.filter((t) => t.kind === "search");
  expect(search.map((t) => t.iteration)).toEqual(Array.from({ length: iterations }, (_, i) => i + 1));
  expect(new Set(trials.map((t) => t.id)).size).toBe(trials.length);
  expect(trials.every((t) => t.status === "ok")).toBe(true);
}

slurm(
  "two slots: two Slurm jobs run at once (squeue), each trial's job id stored",
  async () => {
    const dir = tempDir("bilevel-slurm-two-");
    let most = 0;
    const watch = setInterval(() => {
      most = Math.max(most, queuedJobs("bilevel-slurm-two-").filter((j) => j.state === "RUNNING").length);
    }, 100);
    try {
      const summary = await executeRun({
        dir,
        config: testConfig(runConfig("slurm-two", 2500)),
        offline: true,
        observer: {},
      });
      expect(summary.stopped).toBe(false);
    } finally {
      clearInterval(watch);
    }
    expect(most).toBe(2);
    expectComplete(dir, 4);
    const { jobs } = readRun(dir);
    expect(jobs.every((j) => j.executor === "slurm" && /^\d+$/.test(j.jobId ?? ""))).toBe(true);
    expect(new Set(jobs.map((j) => j.jobId)).size).toBe(jobs.length);
    expect(queuedJobs("bilevel-slurm-two-")).toEqual([]);
  },
  180_000,
);

slurm(
  "killed with jobs in flight: the resume reattaches; a stop cancels every job; the next resume reruns",
  async () => {
    const tmp = tempDir("bilevel-slurm-kill-");
    const configFile = path.join(tmp, "run.json");
    writeFileSync(configFile, JSON.stringify(runConfig("slurm-kill", 4000, { iterations: 6 })));
    const dir = path.join(tmp, "run");
    const inFlight = () => readRun(dir).jobs.filter((j) => j.kind === "search" && j.state !== "done");
    const prefix = "bilevel-slurm-kill-";

    // 1. SIGKILL while two search jobs run: the jobs go on without the run.
    const first = cli("run", "--config", configFile, "--out", dir);
    const firstDone = exited(first);
    await waitFor(() => existsSync(dir) && inFlight().filter((j) => j.state === "running").length === 2, {
      intervalMs: 50,
    });
    first.kill("SIGKILL");
    await firstDone;
    const killed = readRun(dir);
    const reattached = inFlight().map((j) => j.trialId);
    expect(reattached).toHaveLength(2);
    expect(queuedJobs(prefix).length).toBeGreaterThan(0);

    // 2. Resume: the two jobs are followed to their end, not run again; then stop it with jobs in flight.
    const second = cli("run", "--resume", dir);
    const secondDone = exited(second);
    await waitFor(
      () => {
        const { trials, jobs } = readRun(dir);
        const later = jobs.filter(
          (j) => !reattached.includes(j.trialId) && j.kind === "search" && j.state === "running",
        );
        return reattached.every((id) => trials.some((t) => t.id === id)) && later.length > 0;
      },
      { intervalMs: 50 },
    );
    second.kill("SIGINT");
    expect((await secondDone).code).toBe(130);
    expect(queuedJobs(prefix)).toEqual([]); // scancel on stop
    const stopped = readRun(dir);
    for (const id of reattached) expect(stopped.jobs.find((j) => j.trialId === id)?.attempts).toBe(1);
    for (const t of killed.trials) expect(stopped.trials.find((a) => a.id === t.id)).toEqual(t);
    const cancelled = stopped.jobs.filter((j) => j.state === "cancelled").map((j) => j.trialId);
    expect(cancelled.length).toBeGreaterThan(0);

    // 3. Resume again: the cancelled trials run again under their ids; the run completes.
    expect((await exited(cli("run", "--resume", dir))).code).toBe(0);
    const after = readRun(dir);
    for (const t of stopped.trials) expect(after.trials.find((a) => a.id === t.id)).toEqual(t);
    for (const id of cancelled) expect(after.jobs.find((j) => j.trialId === id)?.attempts).toBe(2);
    expectComplete(dir, 6);
    expect(queuedJobs(prefix)).toEqual([]);
  },
  300_000,
);

slurm(
  "a trial past its deadline is cancelled (scancel) and recorded as timeout",
  async () => {
    const dir = tempDir("bilevel-slurm-deadline-");
    const config = runConfig("slurm-deadline", 60_000, {
      parallel: 1,
      acceptance: { mode: "strict" },
      executor: { kind: "slurm", pollSeconds: 0.2, timeoutFactor: 1, graceSeconds: 1 },
    });
    await expect(
      executeRun({ dir, config: testConfig(config), offline: true, observer: {} }),
    ).rejects.toThrow(BaselineError);
    const [trial] = readRun(dir).trials;
    expect(trial?.status).toBe("timeout");
    expect(trial?.message).toMatch(/^Slurm job \d+ cancelled 2 s after it started/);
    expect(queuedJobs("bilevel-slurm-deadline-")).toEqual([]);
  },
  120_000,
);

slurm(
  "a resource request Slurm refuses is a clear error before the run folder exists",
  async () => {
    const dir = path.join(tempDir("bilevel-slurm-gres-"), "run");
    const config = runConfig("slurm-gres", 0, { executor: { kind: "slurm", gres: "gpu:1" } });
    const run = executeRun({ dir, config: testConfig(config), offline: true, observer: {} });
    await expect(run).rejects.toThrow(ExecutorError);
    await expect(run).rejects.toThrow(/--gres=gpu:1.*Invalid generic resource/);
    expect(existsSync(dir)).toBe(false);
  },
  60_000,
);

slurm(
  "a study whose runs use the Slurm executor: every trial of every run is a Slurm job, two runs' jobs at once",
  async () => {
    const tmp = tempDir("bilevel-slurm-study-");
    const studyConfig = path.join(tmp, "study.json");
    // One slot per run: with --jobs 2 the study's two runs fill the 2-CPU test cluster together.
    writeFileSync(
      studyConfig,
      JSON.stringify({ run: runConfig("slurm-study", 2500, { iterations: 2, parallel: 1 }) }),
    );
    const out = path.join(tmp, "study");
    const study = spawn(
      process.execPath,
      cliArgv(
        "study",
        "--config",
        studyConfig,
        "--groups",
        "A",
        "--repeats",
        "2",
        "--jobs",
        "2",
        "--offline",
        "--out",
        out,
      ),
      { stdio: ["ignore", "ignore", "pipe"] },
    );
    children.push(study);
    let most = 0;
    const watch = setInterval(() => {
      most = Math.max(most, queuedJobs("bilevel-").filter((j) => j.state === "RUNNING").length);
    }, 100);
    const done = await exited(study).finally(() => clearInterval(watch));
    expect(done.code).toBe(0);
    const runs = readdirSync(path.join(out, "runs"));
    expect(runs).toHaveLength(2);
    for (const run of runs) {
      const dir = path.join(out, "runs", run);
      expectComplete(dir, 2);
      const { trials, jobs } = readRun(dir);
      expect(jobs).toHaveLength(trials.length);
      expect(jobs.every((j) => j.executor === "slurm" && /^\d+$/.test(j.jobId ?? ""))).toBe(true);
    }
    expect(most).toBe(2);
  },
  240_000,
);
