// Kill the run process with SIGKILL at several points, resume it, and check that its records
// match an uninterrupted run's: nothing lost, nothing duplicated. [slow: ~1 min]
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { RunStore } from "../../runtime/store.ts";
import { cliArgv } from "../support/cli.ts";
import { waitFor } from "../support/wait.ts";

const root = path.resolve(import.meta.dirname, "../..");
const tmp = mkdtempSync(path.join(tmpdir(), "bilevel-resume-"));
const configFile = path.join(tmp, "run.json");
writeFileSync(
  configFile,
  JSON.stringify({
    name: "resume-test",
    seed: 5,
    iterations: 8,
    budgetSeconds: 1,
    trainer: { kind: "synthetic", delayMs: 250, noise: 0.003 },
    acceptance: { baselineRepeats: 2 },
    level15: { every: 2, minActive: 6, freezeAfterTries: 2 },
    level2: { everyCycles: 1, retireWindow: 3 },
    mechanisms: [path.join(root, "examples/mechanisms/tabu-search.ts")],
  }),
);

function start(args: string[]): ChildProcess {
  return spawn(process.execPath, cliArgv(...args), { stdio: ["ignore", "ignore", "pipe"] });
}

/** Exit code and the last of stderr (shown when an expectation on it fails). */
function finished(child: ChildProcess): Promise<{ code: number | null; stderr: string }> {
  let stderr = "";
  child.stderr?.on("data", (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-4000);
  });
  return new Promise((resolve) => child.on("exit", (code) => resolve({ code, stderr })));
}

function peek<T>(dir: string, read: (s: RunStore) => T, fallback: T): T {
  if (!RunStore.exists(dir)) return fallback;
  try {
    const s = RunStore.open(dir, { readOnly: true });
    try {
      return read(s);
    } finally {
      s.close();
    }
  } catch {
    return fallback;
  }
}

/** SIGKILL the run as soon as `ready` holds (however long that takes); fail if the run ends first. */
async function killWhen(child: ChildProcess, dir: string, ready: (s: RunStore, dir: string) => boolean) {
  const done = finished(child);
  let exited = false;
  void done.then(() => {
    exited = true;
  });
  await waitFor(() => exited || peek(dir, (s) => ready(s, dir), false), { intervalMs: 5 });
  if (exited) throw new Error(`the run ended before the kill point: ${(await done).stderr}`);
  child.kill("SIGKILL");
  await done;
}

/** The trainer has started the trial of `iteration` with `seed` (it creates the trial's folder first). */
const trialStarted = (dir: string, iteration: number, seed: number) =>
  existsSync(path.join(dir, "trials")) &&
  readdirSync(path.join(dir, "trials")).some((f) => f.endsWith(`-iter-${iteration}-seed-${seed}`));

function records(dir: string) {
  const store = RunStore.open(dir, { readOnly: true });
  const trials = store.trials().map((t) => ({
    iteration: t.iteration,
    kind: t.kind,
    seed: t.seed,
    config: t.config,
    status: t.status,
    valBpb: t.valBpb,
    kept: t.kept,
  }));
  const mechanisms = store.mechanisms().map((m) => ({ name: m.name, status: m.status, state: m.state }));
  const searchConfigs = store.searchConfigs().map((c) => c.config);
  const names = new Map(store.mechanisms().map((m) => [m.id, m.name]));
  // Every hook call, what it did and the trial it was linked to (latency aside).
  const ledger = store.ledger().map((l) => ({
    iteration: l.iteration,
    mechanism: names.get(l.mechanismId),
    hook: l.hook,
    outcome: l.outcome,
    detail: l.detail,
    trialId: l.trialId,
  }));
  const proposals = store.proposals().map((p) => ({
    iteration: p.iteration,
    attempt: p.attempt,
    source: p.source,
    changes: p.changes,
    status: p.status,
    reason: p.reason,
  }));
  store.close();
  return { trials, mechanisms, searchConfigs, ledger, proposals };
}

let reference: ReturnType<typeof records>;

beforeAll(async () => {
  const dir = path.join(tmp, "reference");
  const run = await finished(start(["run", "--config", configFile, "--out", dir, "--offline"]));
  expect(run).toMatchObject({ code: 0 });
  reference = records(dir);
  expect(reference.trials.filter((t) => t.kind === "search")).toHaveLength(8);
  // The reference exercises retirement too, so resume has to reproduce it.
  expect(reference.mechanisms.some((m) => m.status === "retired")).toBe(true);
}, 120_000);

const searchTrials = (s: RunStore) => s.trials().filter((t) => t.kind === "search").length;

// Each kill point is an event seen in the run's folder, not a delay: a loaded machine only moves
// the kill later within the same phase.
test.each([
  // a trial after the third has started (its folder exists) and is not stored yet
  [
    "during a trial",
    (s: RunStore, dir: string) => searchTrials(s) >= 3 && trialStarted(dir, searchTrials(s) + 1, 5),
  ],
  ["right after a trial is stored", (s: RunStore) => searchTrials(s) >= 5],
  [
    "during a Level 2 session",
    (s: RunStore) => s.events().some((e) => e.kind === "session" && e.iteration >= 4),
  ],
  // the second baseline (seed 6) has started, and the baseline phase has not ended
  [
    "during the baselines",
    (s: RunStore, dir: string) => trialStarted(dir, 0, 6) && !s.hasCheckpoint("baseline"),
  ],
] as const)(
  "killed %s, resumed: the same records as an uninterrupted run",
  async (_label, ready) => {
    const dir = mkdtempSync(path.join(tmp, "killed-"));
    const child = start(["run", "--config", configFile, "--out", dir, "--offline"]);
    await killWhen(child, dir, ready);
    const partial = records(dir);
    expect(partial.trials.length).toBeLessThan(reference.trials.length);
    const resumed = await finished(start(["run", "--resume", dir, "--offline"]));
    expect(resumed).toMatchObject({ code: 0 });
    expect(records(dir)).toEqual(reference);
  },
  120_000,
);

test("a resume that would change what the trials were measured with is refused", async () => {
  const dir = path.join(tmp, "reference");
  const r = await finished(start(["run", "--resume", dir, "--offline", "--budget", "7"]));
  expect(r.code).toBe(2);
  expect(r.stderr).toMatch(/cannot resume with a different budgetSeconds/);
});
