// The run command's refusals and messages as a user meets them (subprocesses against a mock LLM
// that counts requests): a refused resume sends no LLM request, a finished run says how to extend
// it, Ctrl-C says what it stops, and config or folder errors name what is wrong.
import { type ChildProcess, spawn } from "node:child_process";
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { type ResolvedRunConfig, resolveRunConfig } from "../../runtime/config.ts";
import { RunStore } from "../../runtime/store.ts";
import { executeRun } from "../../runtime/wiring.ts";
import { cliArgv, cliAsync } from "../support/cli.ts";
import { type MockLlm, preflightReply, startMockLlm } from "../support/mock-llm-server.ts";
import { waitFor } from "../support/wait.ts";

const tmp = mkdtempSync(path.join(tmpdir(), "bilevel-cli-refusals-"));
const LAUNCHER = "/opt/tools/bilevel";
const env: NodeJS.ProcessEnv = { ...process.env, MOCK_KEY: "sk-test", BILEVEL_LAUNCHER: LAUNCHER };

// Every request but the start check is answered "slow down, retry in 30 s".
let mock: MockLlm;
beforeAll(async () => {
  mock = await startMockLlm(
    (request) =>
      preflightReply(request) ?? {
        status: 429,
        headers: { "retry-after": "30" },
        body: { error: { message: "rate limited" } },
      },
  );
});
afterAll(async () => {
  await mock.close();
});

function config(name: string, extra: Record<string, unknown> = {}): string {
  const file = path.join(tmp, `${name}.json`);
  writeFileSync(
    file,
    JSON.stringify({
      name,
      iterations: 1,
      trainer: { kind: "synthetic", delayMs: 0, noise: 0.002 },
      llm: { baseURL: mock.baseURL, model: "m", apiKeyEnv: "MOCK_KEY", structuredOutput: "json_object" },
      acceptance: { baselineRepeats: 2 },
      level15: { every: 2, minActive: 6 },
      level2: { everyCycles: 0 },
      ...extra,
    }),
  );
  return file;
}

/** config(name)'s run config as the CLI resolves it. */
function resolvedConfig(name: string): ResolvedRunConfig {
  const file = config(name);
  return resolveRunConfig(JSON.parse(readFileSync(file, "utf8")), {
    baseDir: path.dirname(file),
    label: file,
  });
}

/** A finished offline run of one iteration, copied to a fresh folder per test. */
let finishedRun: string;
beforeAll(async () => {
  finishedRun = path.join(tmp, "finished");
  const r = await cliAsync(["run", "--config", config("done"), "--out", finishedRun, "--offline"], { env });
  expect(r.status).toBe(0);
}, 120_000);

function copyOfFinished(name: string): string {
  const dir = path.join(tmp, name);
  cpSync(finishedRun, dir, { recursive: true });
  return dir;
}

function eventCount(dir: string): number {
  const store = RunStore.open(dir, { readOnly: true });
  try {
    return store.events().length;
  } finally {
    store.close();
  }
}

/** A live process that is not the CLI, recorded as the holder of `dir`'s run lock. */
function holdLock(dir: string): ChildProcess {
  const holder = spawn("sleep", ["120"], { stdio: "ignore" });
  writeFileSync(path.join(dir, "run.lock"), `${JSON.stringify({ pid: holder.pid })}\n`);
  return holder;
}

test("a live run folder is refused before the LLM check: resume and --out both exit 2, no request sent", async () => {
  const dir = copyOfFinished("live");
  const holder = holdLock(dir);
  try {
    const before = mock.requests.length;
    const resume = await cliAsync(["run", "--resume", dir], { env });
    expect(resume.status).toBe(2);
    expect(resume.stderr).toContain(`the run is in use by process ${holder.pid}`);
    const out = await cliAsync(["run", "--config", config("again"), "--out", dir], { env });
    expect(out.status).toBe(2);
    expect(out.stderr).toContain(`${dir} already holds a run, in use by process ${holder.pid}`);
    // No advice that would itself be refused.
    expect(out.stderr).not.toMatch(/--resume/);
    expect(mock.requests.length).toBe(before);
  } finally {
    holder.kill();
  }
}, 120_000);

test("the loser of two concurrent resumes (the lock taken after its own check) sends no LLM request", async () => {
  const dir = copyOfFinished("race");
  const store = RunStore.open(dir, { readOnly: true });
  const stored = store.runConfig();
  store.close();
  if (!stored) throw new Error("no stored config");
  const holder = holdLock(dir);
  try {
    const before = mock.requests.length;
    const resumed = executeRun({
      dir,
      config: { ...stored, iterations: 2 },
      resume: true,
      offline: false,
      env,
      observer: {},
    });
    await expect(resumed).rejects.toThrow(`is in use by process ${holder.pid}`);
    expect(mock.requests.length).toBe(before);
  } finally {
    holder.kill();
  }
}, 120_000);

test("a new run on a folder another new run has claimed (its lock, no run.db yet) sends no LLM request", async () => {
  const dir = path.join(tmp, "claimed");
  mkdirSync(dir);
  const holder = holdLock(dir);
  try {
    const before = mock.requests.length;
    const started = executeRun({ dir, config: resolvedConfig("claimed"), offline: false, env, observer: {} });
    await expect(started).rejects.toThrow(`is in use by process ${holder.pid}`);
    expect(mock.requests.length).toBe(before);
    // The folder was there before: it stays, with the other run's lock.
    expect(readdirSync(dir)).toEqual(["run.lock"]);
  } finally {
    holder.kill();
  }
}, 120_000);

test("a new run refused at its LLM check leaves no folder behind, not even the parents it made", async () => {
  const top = path.join(tmp, "refused-top");
  const dir = path.join(top, "nested", "run");
  const refused = resolvedConfig("refused");
  const closed = { ...refused, llm: { ...refused.llm, baseURL: "http://127.0.0.1:1/v1" } };
  await expect(executeRun({ dir, config: closed, offline: false, env, observer: {} })).rejects.toThrow();
  expect(existsSync(top)).toBe(false);
}, 120_000);

test("a finished run: its resume says so and how to extend it (exit 0, no request, no event); --iterations extends it", async () => {
  const dir = copyOfFinished("extend");
  const events = eventCount(dir);
  const before = mock.requests.length;
  const again = await cliAsync(["run", "--resume", dir], { env });
  expect(again.status).toBe(0);
  expect(again.stderr).toContain(`${dir}: the run is already finished (1/1 iterations); nothing to do`);
  expect(again.stderr).toContain(`to extend it: ${LAUNCHER} run --resume ${dir} --iterations N`);
  expect(mock.requests.length).toBe(before);
  expect(eventCount(dir)).toBe(events);

  // A changed name is refused for its own reason, not for the baselines.
  const renamed = await cliAsync(["run", "--resume", dir, "--config", config("renamed")], { env });
  expect(renamed.status).toBe(2);
  expect(renamed.stderr).toMatch(/cannot resume with a different name: the name is the run's identity/);
  expect(renamed.stderr).not.toMatch(/baselines/);

  const more = await cliAsync(["run", "--resume", dir, "--iterations", "2", "--offline"], { env });
  expect(more.status).toBe(0);
  expect(more.stderr).not.toMatch(/already finished/);
  const status = await cliAsync(["status", dir, "--json"]);
  expect(JSON.parse(status.stdout)).toMatchObject({ status: "finished", iterationsDone: 2 });
}, 180_000);

/** Start `run`, send `signals` (one after the other) once `ready` shows in its stderr, and collect the rest. */
async function interrupted(
  args: readonly string[],
  ready: RegExp,
  ...signals: NodeJS.Signals[]
): Promise<{ code: number | null; stderr: string }> {
  const child = spawn(process.execPath, cliArgv(...args), { env, stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr?.on("data", (b: Buffer) => {
    stderr += b.toString("utf8");
  });
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  await waitFor(() => ready.test(stderr));
  const [first = "SIGINT", ...later] = signals;
  child.kill(first);
  // Any later signal once the first is being handled (signals sent together may arrive in any order).
  if (later.length > 0) await waitFor(() => /stopping \(/.test(stderr));
  for (const signal of later) child.kill(signal);
  const code = await exited;
  return { code, stderr };
}

test("Ctrl-C says what it stops: no trial during an LLM retry wait, the trial in flight otherwise; the hint uses the launcher", async () => {
  const waiting = path.join(tmp, "ctrl-c-wait");
  const wait = await interrupted(["run", "--config", config("wait"), "--out", waiting], /retrying in 30\.0s/);
  expect(wait.stderr).toContain(
    `stopping (SIGINT): no trial is running; resume with: ${LAUNCHER} run --resume ${waiting} (Ctrl-C again to quit now)`,
  );
  expect(wait.stderr).not.toMatch(/killed/);
  expect(wait.code).toBe(130);

  const training = path.join(tmp, "ctrl-c-train");
  const slow = config("slow", { trainer: { kind: "synthetic", delayMs: 60_000, noise: 0.002 } });
  const train = await interrupted(["run", "--config", slow, "--out", training, "--offline"], /training #1/);
  expect(train.stderr).toContain("stopping (SIGINT): the trial in flight (#1) is killed; resume with:");
  expect(train.code).toBe(130);
}, 180_000);

test("SIGTERM and SIGHUP (a closed terminal) stop a run cleanly too: exit 143 / 129, the record says which", async () => {
  const slow = config("slow-signals", { trainer: { kind: "synthetic", delayMs: 60_000, noise: 0.002 } });
  for (const [signal, code, said] of [
    ["SIGTERM", 143, "stopped by SIGTERM"],
    ["SIGHUP", 129, "stopped by SIGHUP (hang-up: e.g. its terminal closed)"],
  ] as const) {
    const dir = path.join(tmp, `signal-${signal}`);
    const r = await interrupted(["run", "--config", slow, "--out", dir, "--offline"], /training #1/, signal);
    expect(r.code).toBe(code);
    const status = JSON.parse((await cliAsync(["status", dir, "--json"])).stdout) as Record<string, unknown>;
    expect(status).toMatchObject({ status: "stopped", statusReason: said });
    const store = RunStore.open(dir, { readOnly: true });
    expect(store.events().at(-1)).toMatchObject({
      kind: "stop",
      message: `run stopped after iteration 0: ${said}`,
    });
    store.close();
  }
  // A study's Ctrl-C reaches its runs twice: SIGINT from the terminal, then SIGTERM from the study.
  // The second is not a second Ctrl-C: the run still stops cleanly, as stopped by the first.
  const dir = path.join(tmp, "signal-twice");
  const twice = await interrupted(
    ["run", "--config", slow, "--out", dir, "--offline"],
    /training #1/,
    "SIGINT",
    "SIGTERM",
  );
  expect(twice.code).toBe(130);
  const status = JSON.parse((await cliAsync(["status", dir, "--json"])).stdout) as Record<string, unknown>;
  expect(status).toMatchObject({ status: "stopped", statusReason: "stopped by Ctrl-C (SIGINT)" });
}, 180_000);

test("a run whose trainer answers at once (the surrogate) still stops on Ctrl-C, not after its last iteration", async () => {
  const dir = path.join(tmp, "surrogate-ctrl-c");
  const file = config("fast", { iterations: 100_000, level2: { everyCycles: 0 } });
  const r = await interrupted(
    ["run", "--config", file, "--out", dir, "--offline", "--objective", "surrogate"],
    /\[L1 \] #\d+ /,
  );
  expect(r.code).toBe(130);
  const status = JSON.parse((await cliAsync(["status", dir, "--json"])).stdout) as {
    status: string;
    iterationsDone: number;
  };
  expect(status.status).toBe("stopped");
  expect(status.iterationsDone).toBeLessThan(100_000);
}, 120_000);

test("config and folder errors name what is wrong: the file, the closest key, a missing file or folder", async () => {
  const typo = path.join(tmp, "typo.json");
  writeFileSync(typo, JSON.stringify({ itrations: 3, seed: "seven" }));
  const bad = await cliAsync(["run", "--config", typo], { cwd: tmp, env });
  expect(bad.status).toBe(2);
  expect(bad.stderr).toContain(`invalid run config (${typo}):`);
  expect(bad.stderr).toContain("itrations: unknown field (did you mean iterations?)");
  expect(bad.stderr).toContain("seed: must be integer");

  const missing = await cliAsync(["run", "--config", "nope.json"], { cwd: tmp, env });
  expect(missing.status).toBe(2);
  expect(missing.stderr).toContain("no such file: nope.json");
  expect(missing.stderr).not.toMatch(/ENOENT/);

  const nowhere = await cliAsync(["run", "--resume", "nowhere"], { cwd: tmp, env });
  expect(nowhere.status).toBe(2);
  expect(nowhere.stderr).toContain("--resume nowhere: no such folder");
  const empty = path.join(tmp, "empty");
  mkdirSync(empty);
  const noDb = await cliAsync(["run", "--resume", empty], { env });
  expect(noDb.status).toBe(2);
  expect(noDb.stderr).toContain(`--resume ${empty}: no run database (run.db) there`);
}, 120_000);

test("mechanism approve on an empty run.db says it holds no run and leaves it empty (exit 1)", async () => {
  const dir = path.join(tmp, "empty-db");
  mkdirSync(dir);
  writeFileSync(path.join(dir, "run.db"), "");
  const r = await cliAsync(["mechanism", "approve", dir, "m1"], { env });
  expect(r.status).toBe(1);
  expect(r.stderr).toContain(`${path.join(dir, "run.db")} holds no run (an empty database)`);
  expect(readFileSync(path.join(dir, "run.db"), "utf8")).toBe("");
});

test("a damaged run.db exits 1 from run --resume, status, export, report and mechanism approve alike", async () => {
  const dir = copyOfFinished("damaged");
  rmSync(path.join(dir, "run.db-wal"), { force: true });
  rmSync(path.join(dir, "run.db-shm"), { force: true });
  writeFileSync(
    path.join(dir, "run.db"),
    "this is not a SQLite database, it only has the name of one\n".repeat(80),
  );
  const before = mock.requests.length;
  for (const args of [
    ["run", "--resume", dir],
    ["status", dir],
    ["export", dir],
    ["report", dir],
    ["mechanism", "approve", dir, "m1"],
  ]) {
    const r = await cliAsync(args, { env });
    expect({ args, status: r.status }).toEqual({ args, status: 1 });
    expect(r.stderr).toContain("cannot read the run database");
    expect(r.stderr).toContain(path.join(dir, "run.db"));
  }
  expect(mock.requests.length).toBe(before);
  expect(readFileSync(path.join(dir, "run.db"), "utf8")).toMatch(/^this is not a SQLite database/);
}, 120_000);
