// Kill the run process with SIGKILL at several points, resume it, and check that its records
// match an uninterrupted run's: nothing lost, nothing duplicated. [slow: ~1 min]
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { RunStore } from "../../runtime/store.ts";
import { cliArgv } from "../support/cli.ts";

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

async function killWhen(child: ChildProcess, dir: string, ready: (s: RunStore) => boolean, delayMs = 0) {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline && !peek(dir, ready, false)) await new Promise((r) => setTimeout(r, 5));
  if (delayMs > 0) await new Promise((r) => setTimeout(r, delayMs));
  child.kill("SIGKILL");
  await finished(child);
}

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

test.each([
  ["during a trial", (s: RunStore) => searchTrials(s) >= 3, 120],
  ["right after a trial is stored", (s: RunStore) => searchTrials(s) >= 5, 0],
  [
    "during a Level 2 session",
    (s: RunStore) => s.events().some((e) => e.kind === "session" && e.iteration >= 4),
    0,
  ],
  ["during the baselines", (s: RunStore) => s.trials().length >= 1, 60],
] as const)(
  "killed %s, resumed: the same records as an uninterrupted run",
  async (_label, ready, delayMs) => {
    const dir = mkdtempSync(path.join(tmp, "killed-"));
    const child = start(["run", "--config", configFile, "--out", dir, "--offline"]);
    await killWhen(child, dir, ready, delayMs);
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
