// Trials in flight on the local executor: --parallel 1 makes exactly the sequential loop's
// records; --parallel 2 runs two trials at once, keeps ids in start order and acceptance exact;
// a run killed with trials in flight resumes with nothing lost or duplicated; the proposer sees
// the trials in flight. [~1 min]
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { applyChanges } from "../../runtime/changes.ts";
import { OfflineProposer } from "../../runtime/level1/offline-proposer.ts";
import { type ProposerInput, proposalPrompt } from "../../runtime/level1/proposer.ts";
import { type JobRow, RunStore, type TrialRow } from "../../runtime/store.ts";
import { slotEnv } from "../../runtime/study/slots.ts";
import { executeRun } from "../../runtime/wiring.ts";
import { cliArgv } from "../support/cli.ts";
import { trajectory } from "../support/records.ts";
import { testConfig } from "../support/run-config.ts";
import { waitFor } from "../support/wait.ts";

const root = path.resolve(import.meta.dirname, "../..");

/** The run whose records the sequential loop (before executors existed) wrote to the fixture. */
const runConfig = (delayMs: number, extra: object = {}) => ({
  name: "sequential",
  seed: 7,
  iterations: 12,
  budgetSeconds: 1,
  trainer: { kind: "synthetic", delayMs, noise: 0.003 },
  acceptance: { baselineRepeats: 2 },
  level15: { every: 3, minActive: 6, freezeAfterTries: 2 },
  level2: { everyCycles: 1, retireWindow: 3 },
  mechanisms: [path.join(root, "examples/mechanisms/tabu-search.ts")],
  ...extra,
});

function readRun(dir: string): { trials: TrialRow[]; jobs: JobRow[] } {
  const store = RunStore.open(dir, { readOnly: true });
  try {
    return { trials: store.trials(), jobs: store.jobs() };
  } finally {
    store.close();
  }
}

/** Every iteration has one trial, ids are unique and follow start order, acceptance replays exactly. */
function expectConsistent(dir: string, iterations: number): void {
  const { trials, jobs } = readRun(dir);
  const search = trials.filter((t) => t.kind === "search");
  expect(search.map((t) => t.iteration)).toEqual(Array.from({ length: iterations }, (_, i) => i + 1));
  expect(new Set(trials.map((t) => t.id)).size).toBe(trials.length);
  const bySubmit = [...jobs].sort((a, b) => a.submittedMs - b.submittedMs || a.trialId - b.trialId);
  expect(bySubmit.map((j) => j.trialId)).toEqual(jobs.map((j) => j.trialId));
  expect(jobs.every((j) => j.state === "done")).toBe(true);
  // Each kept trial beat the incumbent of the moment it was recorded, so in recording order the
  // kept trials' val_bpb falls strictly, and each one's delta is against the one kept before.
  const recorded = new Map(jobs.map((j) => [j.trialId, j.recordedMs ?? 0]));
  const kept = search
    .filter((t) => t.kept)
    .sort((a, b) => (recorded.get(a.id) ?? 0) - (recorded.get(b.id) ?? 0));
  let incumbent = trials.find((t) => t.kind === "baseline" && t.seed === 7)?.valBpb as number;
  for (const t of kept) {
    expect(t.valBpb).toBeCloseTo(incumbent + (t.delta as number), 10);
    expect(t.valBpb as number).toBeLessThan(incumbent);
    incumbent = t.valBpb as number;
  }
}

test("--parallel 1 makes exactly the records the sequential loop made for the same seed", async () => {
  const dir = mkdtempSync(path.join(tmpdir(), "bilevel-parallel1-"));
  await executeRun({ dir, config: testConfig(runConfig(0, { parallel: 1 })), offline: true, observer: {} });
  const fixture = JSON.parse(
    readFileSync(path.join(root, "__tests__/fixtures/parallel/sequential-records.json"), "utf8"),
  );
  expect(trajectory(dir)).toEqual(fixture);
}, 120_000);

test("--parallel 2 on the local executor: two trials at once, ids in start order, acceptance exact", async () => {
  const dir = mkdtempSync(path.join(tmpdir(), "bilevel-parallel2-"));
  const summary = await executeRun({
    dir,
    config: testConfig(runConfig(500, { parallel: 2 })),
    offline: true,
    observer: {},
  });
  expect(summary.stopped).toBe(false);
  expectConsistent(dir, 12);
  const { jobs } = readRun(dir);
  expect(new Set(jobs.map((j) => j.slot))).toEqual(new Set([0, 1]));
  // Some two trials overlapped in time.
  const overlap = jobs.some((a) =>
    jobs.some(
      (b) => a !== b && (a.startedMs ?? 0) < (b.endedMs ?? 0) && (b.startedMs ?? 0) < (a.endedMs ?? 0),
    ),
  );
  expect(overlap).toBe(true);
}, 180_000);

test("a user's train.py under git runs one trial at a time: parallel > 1 and slurm are refused, naming the field", () => {
  const script = path.join(root, "__tests__/fixtures/autoresearch/train.py");
  const external = { kind: "external", script, git: true, params: { MATRIX_LR: {} } };
  for (const extra of [{ parallel: 2 }, { executor: { kind: "slurm" } }])
    expect(() => testConfig({ name: "git-parallel", trainer: external, ...extra })).toThrow(
      /trainer\.git false/,
    );
  expect(() =>
    testConfig({ name: "git-parallel", trainer: { ...external, git: false }, parallel: 2 }),
  ).not.toThrow();
});

test("slots share the machine: a GPU each, or an equal share of the cores as thread counts", () => {
  expect(slotEnv(0, 1, "cpu", { cores: 8 })).toEqual({});
  expect(slotEnv(1, 4, "cpu", { cores: 8 }).OMP_NUM_THREADS).toBe("2");
  expect(slotEnv(1, 4, "cpu", { cores: 8 }).BILEVEL_THREADS).toBe("2");
  expect(slotEnv(3, 4, "cpu", { cores: 2 }).OMP_NUM_THREADS).toBe("1");
  expect(slotEnv(3, 4, "cuda", { gpus: 2 })).toEqual({ CUDA_VISIBLE_DEVICES: "1" });
  expect(slotEnv(2, 4, "cuda")).toEqual({ CUDA_VISIBLE_DEVICES: "2" });
});

function finished(child: ChildProcess): Promise<{ code: number | null; stderr: string }> {
  let stderr = "";
  child.stderr?.on("data", (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-4000);
  });
  return new Promise((resolve) => child.on("exit", (code) => resolve({ code, stderr })));
}

function peekJobs(dir: string): JobRow[] {
  try {
    return readRun(dir).jobs;
  } catch {
    return []; // not created yet
  }
}

test("a run killed with two trials in flight resumes: nothing completed lost or duplicated, the two rerun", async () => {
  const tmp = mkdtempSync(path.join(tmpdir(), "bilevel-parallel-kill-"));
  const configFile = path.join(tmp, "run.json");
  const delayMs = 2000;
  writeFileSync(configFile, JSON.stringify(runConfig(delayMs, { iterations: 8, parallel: 2 })));
  const dir = path.join(tmp, "run");
  const child = spawn(process.execPath, cliArgv("run", "--config", configFile, "--out", dir, "--offline"), {
    stdio: ["ignore", "ignore", "pipe"],
  });
  const done = finished(child);
  // Kill once a search trial is stored and two more are in flight, each with at least half its
  // time left, so neither can finish before the kill lands (on a loaded machine too).
  const inFlight = (jobs: JobRow[]) => jobs.filter((j) => j.kind === "search" && j.state !== "done");
  const fresh = (j: JobRow) => Date.now() - (j.startedMs ?? j.submittedMs) < delayMs / 2;
  await waitFor(
    () => {
      const jobs = peekJobs(dir);
      const flying = inFlight(jobs);
      return (
        jobs.some((j) => j.kind === "search" && j.state === "done") &&
        flying.length === 2 &&
        flying.every(fresh)
      );
    },
    { intervalMs: 10 },
  );
  child.kill("SIGKILL");
  await done;
  const before = readRun(dir);
  const interrupted = inFlight(before.jobs).map((j) => j.trialId);
  expect(interrupted).toHaveLength(2);

  const resumed = await finished(
    spawn(process.execPath, cliArgv("run", "--resume", dir, "--offline"), {
      stdio: ["ignore", "ignore", "pipe"],
    }),
  );
  expect(resumed.code).toBe(0);
  const after = readRun(dir);
  // What was stored before the kill is stored the same, once.
  for (const t of before.trials) expect(after.trials.find((a) => a.id === t.id)).toEqual(t);
  expectConsistent(dir, 8);
  // The interrupted trials kept their ids and ran again.
  for (const id of interrupted) {
    expect(after.trials.some((t) => t.id === id)).toBe(true);
    expect(after.jobs.find((j) => j.trialId === id)?.attempts).toBe(2);
  }
}, 240_000);

test("the proposer sees the trials in flight: the LLM prompt lists them, the offline proposer avoids them", async () => {
  const config = testConfig(runConfig(0));
  const names = config.searchSpace.map((p) => p.name);
  const input: ProposerInput = {
    iteration: 4,
    params: config.searchSpace,
    search: { strategy: "balanced", active: names, frozen: [], guidance: "" },
    incumbent: { config: config.startConfig, valBpb: 2.2 },
    best: null,
    history: [],
    crashLessons: [],
    guidance: [],
    rejected: [],
    maxChanges: 1,
    seed: 7,
    attempt: 1,
  };
  const proposer = new OfflineProposer();
  const alone = await proposer.propose(input);
  if (!alone.ok) throw new Error(alone.reason);
  const running = {
    config: applyChanges(config.startConfig, alone.changes),
    description: "the same step, running",
  };
  const withPending = await proposer.propose({ ...input, pending: [running] });
  if (!withPending.ok) throw new Error(withPending.reason);
  expect(withPending.changes).not.toEqual(alone.changes);
  expect(proposalPrompt({ ...input, pending: [running] }).user).toContain(
    "Trials still running (no result yet; do not propose them again):\n- the same step, running",
  );
  expect(proposalPrompt(input).user).not.toContain("still running");
});

test("mechanisms see the trials in flight as ctx.pending: none with --parallel 1, the other slot's with --parallel 2", async () => {
  const dir = mkdtempSync(path.join(tmpdir(), "bilevel-pending-"));
  // A filter that records, per call, the pending trials it was shown; observe checks that each
  // pending id later arrives as a finished trial.
  const file = path.join(dir, "watch-pending.ts");
  writeFileSync(
    file,
    `import type { Mechanism } from "bilevel/mechanism-api";
interface State { seen: number[][]; sameConfig: number; observed: number[] }
export default {
  manifest: { name: "watch-pending", version: 1, hooks: ["init", "filter", "observe"], capabilities: [] },
  init: () => ({ seen: [], sameConfig: 0, observed: [] }),
  filter(p, ctx) {
    ctx.state.seen.push(ctx.pending.map((t) => t.id));
    for (const t of ctx.pending) {
      if (t.iteration >= ctx.iteration || t.changes.length === 0) throw new Error("bad pending " + JSON.stringify(t));
      if (JSON.stringify(t.config) === JSON.stringify(p.config)) ctx.state.sameConfig += 1;
    }
    return { verdict: "accept" };
  },
  observe(trial, ctx) { ctx.state.observed.push(trial.id); },
} satisfies Mechanism<State>;
`,
  );
  const run = async (name: string, parallel: number) => {
    const out = path.join(dir, name);
    const config = testConfig({
      ...runConfig(300, { parallel }),
      level2: { everyCycles: 0 },
      mechanisms: [file],
    });
    await executeRun({ dir: out, config, offline: true, observer: {} });
    const store = RunStore.open(out, { readOnly: true });
    try {
      const m = store.mechanisms().find((x) => x.name === "watch-pending");
      expect(m?.status).toBe("active");
      return m?.state as { seen: number[][]; sameConfig: number; observed: number[] };
    } finally {
      store.close();
    }
  };
  const one = await run("p1", 1);
  expect(one.seen.length).toBeGreaterThan(0);
  expect(one.seen.every((ids) => ids.length === 0)).toBe(true);
  const two = await run("p2", 2);
  // At most one other trial is in flight while a proposal is made with two slots; some were.
  expect(two.seen.every((ids) => ids.length <= 1)).toBe(true);
  const pendingIds = two.seen.flat();
  expect(pendingIds.length).toBeGreaterThan(0);
  // Every trial shown as pending finished later and reached observe under the same id.
  for (const id of pendingIds) expect(two.observed).toContain(id);
  // The offline proposer avoids configs in flight, so no proposal repeats one.
  expect(two.sameConfig).toBe(0);
}, 180_000);

test.each([["0"], ["abc"], ["1.5"]])(
  "--parallel %s is a usage error (exit 2) and creates nothing",
  (value) => {
    const cwd = mkdtempSync(path.join(tmpdir(), "bilevel-parallel-bad-"));
    const r = spawnSync(process.execPath, cliArgv("run", "--offline", "--parallel", value), {
      cwd,
      encoding: "utf8",
    });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain(`option '--parallel <n>' argument '${value}' is invalid`);
    expect(readdirSync(cwd)).toEqual([]);
  },
);
