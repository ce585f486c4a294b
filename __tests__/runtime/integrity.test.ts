// What a run records is what ran: the config the trainer gets, the mechanisms that stay active,
// the time they may take, the numbering and the files a user reads while the run goes on.
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { jest } from "@jest/globals";
import { mechanismCheck } from "../../runtime/commands/mechanism.ts";
import { checkResumable } from "../../runtime/commands/run.ts";
import { ConfigError } from "../../runtime/config.ts";
import { DEFAULT_SETTINGS, fingerprint, runHarness } from "../../runtime/harness.ts";
import { OfflineProposer } from "../../runtime/level1/offline-proposer.ts";
import type { Proposer, ProposerInput } from "../../runtime/level1/proposer.ts";
import type { Researcher, ResearchResult } from "../../runtime/level2/types.ts";
import { RuleStrategist } from "../../runtime/level15/strategists.ts";
import { BaselineError, BilevelLoop } from "../../runtime/loop.ts";
import { buildReport, formatReport } from "../../runtime/report.ts";
import { RunStore } from "../../runtime/store.ts";
import { SyntheticTrainer } from "../../runtime/trainers.ts";
import { executeRun } from "../../runtime/wiring.ts";
import { Sandbox, syntheticTrace } from "../../sandbox/index.ts";
import type { DryRunTrace } from "../../sandbox/types.ts";
import { defaultConfig } from "../../trainer/search-space.ts";
import { TorchTrainer } from "../../trainer/torch-trainer.ts";
import { testConfig } from "../support/run-config.ts";

const root = path.resolve(import.meta.dirname, "../..");
const example = (name: string) => path.join(root, "examples/mechanisms", `${name}.ts`);
const tmp = () => mkdtempSync(path.join(tmpdir(), "bilevel-integrity-"));
const SYNTHETIC = { trainer: { kind: "synthetic", delayMs: 0, noise: 0.002 }, budgetSeconds: 1 };

function mechanismFile(dir: string, name: string, body: string, hooks: string[]): string {
  const file = path.join(dir, `${name}.ts`);
  writeFileSync(
    file,
    `import type { Mechanism } from "bilevel/mechanism-api";
export default {
  manifest: { name: "${name}", version: 1, hooks: ${JSON.stringify(hooks)}, capabilities: [] },
  ${body}
} satisfies Mechanism<{}>;
`,
  );
  return file;
}

let sandbox: Sandbox;
beforeAll(async () => {
  sandbox = await Sandbox.start();
});
afterAll(async () => {
  await sandbox.close();
});

function loop(
  dir: string,
  config: ReturnType<typeof testConfig>,
  extra: Partial<ConstructorParameters<typeof BilevelLoop>[0]> = {},
) {
  const store = RunStore.open(dir);
  const l = new BilevelLoop({
    store,
    config,
    trainer: new SyntheticTrainer(config.searchSpace, 0, 0.002),
    sandbox,
    proposer: new OfflineProposer(),
    strategist: new RuleStrategist(config.level15),
    researcher: { kind: "library", research: async () => ({ status: "none", reason: "none" }) },
    syntheticTrace,
    ...extra,
  });
  return { store, loop: l };
}

test("a cuda run hands the trainer exactly the resolved GPU config", async () => {
  const dir = tmp();
  const argsFile = path.join(dir, "args.json");
  const fake = path.join(dir, "fake-python");
  // Stands in for Python: records the command line it was given, then fails like a crash.
  writeFileSync(fake, `#!/bin/sh\nprintf '%s\\n' "$@" > ${JSON.stringify(argsFile)}\nexit 1\n`);
  chmodSync(fake, 0o755);
  const config = testConfig({ device: "cuda", iterations: 1, acceptance: { mode: "strict" } });
  await expect(
    executeRun({
      dir: path.join(dir, "run"),
      config,
      offline: true,
      trainer: new TorchTrainer({ python: fake }),
    }),
  ).rejects.toThrow(BaselineError);
  const args = readFileSync(argsFile, "utf8").trim().split("\n");
  const value = (flag: string) => args[args.indexOf(flag) + 1];
  expect(value("--device")).toBe("cuda");
  expect(JSON.parse(value("--config") ?? "null")).toEqual(defaultConfig("cuda"));
  expect(JSON.parse(value("--config") ?? "null")).toEqual(config.startConfig);
  // And the store says so.
  const store = RunStore.open(path.join(dir, "run"), { readOnly: true });
  expect(store.runConfig()?.device).toBe("cuda");
  expect(store.trials()[0]?.config).toEqual(defaultConfig("cuda"));
  // The record says the run failed, and why.
  const report = buildReport(store);
  expect(report.status).toBe("failed");
  expect(report.statusReason).toMatch(/run failed: every baseline run failed/);
  expect(formatReport(report)).toMatch(/status failed, .*\n {2}why: run failed: every baseline run failed/);
  store.close();
});

test("a start mechanism that passes check but throws on the live trace is quarantined; the run completes", async () => {
  const dir = tmp();
  const file = mechanismFile(
    dir,
    "needs-history",
    `filter(proposal, ctx) {
    if (ctx.history.length === 0) throw new Error("expected some history");
    return { verdict: "accept" };
  },`,
    ["filter"],
  );
  let out = "";
  const io = {
    stdout: (t: string) => {
      out += t;
    },
    stderr: (t: string) => {
      out += t;
    },
  };
  expect(await mechanismCheck(file, {}, io, sandbox)).toBe(0);
  expect(out).toMatch(/needs-history v1/);
  const config = testConfig({ ...SYNTHETIC, iterations: 3, mechanisms: [file] });
  const summary = await executeRun({ dir: path.join(dir, "run"), config, offline: true, observer: {} });
  expect(summary.stopped).toBe(false);
  expect(summary.report.iterationsDone).toBe(3);
  expect(summary.report.status).toBe("finished");
  const m = summary.report.mechanisms.find((r) => r.name === "needs-history");
  expect(m?.status).toBe("quarantined");
  expect(m?.reason).toMatch(
    /failed validation on the live trace \(no search trial yet: a synthetic proposal and trial stand in\): .*expected some history/,
  );
  // Its source is in the store: a resume does not need the file any more.
  rmSync(file);
  const more = { ...config, iterations: 4 };
  const resumed = await executeRun({
    dir: path.join(dir, "run"),
    config: more,
    offline: true,
    resume: true,
    observer: {},
  });
  expect(resumed.report.iterationsDone).toBe(4);
});

test("validation before any search trial hands observe a stand-in trial dated no later than ctx.iteration", async () => {
  const dir = tmp();
  const file = mechanismFile(
    dir,
    "no-future",
    `observe(trial, ctx) {
    if (trial.iteration > ctx.iteration) throw new Error("trial " + trial.iteration + " after iteration " + ctx.iteration);
  },`,
    ["observe"],
  );
  const config = testConfig({ ...SYNTHETIC, iterations: 2, mechanisms: [file] });
  const summary = await executeRun({ dir: path.join(dir, "run"), config, offline: true, observer: {} });
  const m = summary.report.mechanisms.find((r) => r.name === "no-future");
  expect([m?.status, m?.reason ?? null]).toEqual(["active", null]);
}, 60_000);

test("every validation trace (start mechanism, Level 2 sessions) hands changes whose previous is the live incumbent's, none a no-op", async () => {
  const traces: DryRunTrace[] = [];
  const original = Sandbox.prototype.validate;
  const spy = jest.spyOn(Sandbox.prototype, "validate").mockImplementation(function (
    this: Sandbox,
    source: string,
    trace: DryRunTrace,
    fileName?: string,
  ) {
    traces.push(trace);
    return original.call(this, source, trace, fileName);
  });
  try {
    for (const seed of [1, 2, 3]) {
      const config = testConfig({
        ...SYNTHETIC,
        seed,
        iterations: 8,
        level15: { every: 2 },
        level2: { everyCycles: 1, retireWindow: 0 },
        mechanisms: [example("tabu-search")],
      });
      await executeRun({ dir: path.join(tmp(), "run"), config, offline: true, observer: {} });
    }
  } finally {
    spy.mockRestore();
  }
  // The start mechanism's validation (before any search trial) and Level 2's (after some).
  expect(traces.some((t) => t.context.history.length === 0)).toBe(true);
  expect(traces.some((t) => t.context.history.length > 2)).toBe(true);
  for (const t of traces) {
    const base = t.context.incumbent.config;
    expect(t.trial.iteration).toBeLessThanOrEqual(t.context.iteration);
    expect(t.proposal.changes.length).toBeGreaterThan(0);
    for (const c of [...t.proposal.changes, ...t.trial.changes]) {
      expect([c.param, c.previous]).toEqual([c.param, base[c.param]]);
      expect(c.value).not.toEqual(c.previous);
    }
    expect(t.proposal.config).toEqual({
      ...base,
      ...Object.fromEntries(t.proposal.changes.map((c) => [c.param, c.value])),
    });
  }
}, 120_000);

test("mechanism test runs the run's own loop: a user's run with the same settings makes the same trials", async () => {
  const params = testConfig({}).searchSpace;
  const source = readFileSync(example("tabu-search"), "utf8");
  const compiled = await sandbox.compile(source, "tabu-search.ts");
  if (!compiled.ok) throw new Error("tabu-search does not compile");
  const settings = { ...DEFAULT_SETTINGS, seeds: [5], iterations: 6 };
  const harness = await runHarness(
    sandbox,
    { fileName: "tabu-search.ts", source, compiled: compiled.mechanism },
    params,
    settings,
    testConfig({}),
  );
  // The same experiment as a user would configure it, run by the CLI's own entry point.
  const dir = tmp();
  const config = testConfig({
    seed: 5,
    iterations: 6,
    budgetSeconds: 1,
    trainer: { kind: "synthetic", delayMs: 0, noise: settings.noiseSigma },
    level15: { every: 7 },
    level2: { everyCycles: 0, retireWindow: 0 },
    mechanisms: [example("tabu-search")],
  });
  await executeRun({ dir: path.join(dir, "run"), config, offline: true, observer: {} });
  const store = RunStore.open(path.join(dir, "run"), { readOnly: true });
  const search = store.trials().filter((t) => t.kind === "search");
  const seed = harness.summary.seeds[0];
  expect(seed?.trajectory).toBe(fingerprint(params, search));
  expect(seed?.kept).toBe(search.filter((t) => t.kept).length);
  expect(seed?.calls.filter).toBe(store.ledger().filter((x) => x.hook === "filter").length);
  expect(harness.summary.settings.acceptance).toBe("noise-aware");
  store.close();
});

test("guide text reaches the proposer whole (one limit, enforced by the sandbox)", async () => {
  const dir = tmp();
  const text = "g".repeat(3000);
  const file = mechanismFile(dir, "long-guide", `guide() { return ${JSON.stringify(text)}; },`, ["guide"]);
  const seen: string[] = [];
  const offline = new OfflineProposer();
  const proposer: Proposer = {
    kind: "offline",
    propose: (input: ProposerInput) => {
      seen.push(...input.guidance.map((g) => g.text));
      return offline.propose(input);
    },
  };
  const config = testConfig({ ...SYNTHETIC, iterations: 2 });
  const { store, loop: l } = loop(dir, config, {
    proposer,
    startMechanisms: [{ file, source: readFileSync(file, "utf8") }],
  });
  await l.run();
  expect(seen).toEqual([text, text]);
  store.close();
});

test("a mechanism over its time budget is recorded, then quarantined past maxOverruns", async () => {
  const dir = tmp();
  const file = mechanismFile(
    dir,
    "slow-filter",
    `filter() {
    let x = 0;
    for (let i = 0; i < 30_000_000; i++) x += i % 7;
    return x < 0 ? { verdict: "reject", reason: "never" } : { verdict: "accept" };
  },`,
    ["filter"],
  );
  const config = testConfig({
    ...SYNTHETIC,
    iterations: 4,
    policy: { mechanismBudgetMs: 5, maxOverruns: 1, hookTimeoutMs: 20_000 },
    mechanisms: [file],
  });
  const summary = await executeRun({ dir: path.join(dir, "run"), config, offline: true, observer: {} });
  const store = RunStore.open(path.join(dir, "run"), { readOnly: true });
  const overruns = store.events().filter((e) => e.kind === "overrun");
  expect(overruns.length).toBe(2);
  expect(overruns.map((e) => e.iteration)).toEqual([1, 2]);
  const m = summary.report.mechanisms.find((r) => r.name === "slow-filter");
  expect(m?.status).toBe("quarantined");
  expect(m?.reason).toMatch(/over its time budget/);
  // Not called after the quarantine.
  expect(store.ledger().filter((l) => l.iteration > 2)).toHaveLength(0);
  store.close();
});

test("Level 2 refuses a mechanism whose code or name is already active, and records the designed name", async () => {
  const dir = tmp();
  const source = readFileSync(example("tabu-search"), "utf8");
  const researcher: Researcher = {
    kind: "llm",
    research: async (input): Promise<ResearchResult> => {
      const report = await input.validate(source);
      return {
        status: "validated",
        origin: "generated",
        name: "tabu-search",
        designName: "c3-alpha",
        source,
        report,
      };
    },
  };
  const config = testConfig({
    ...SYNTHETIC,
    iterations: 4,
    level15: { every: 2 },
    level2: { everyCycles: 1 },
  });
  const { store, loop: l } = loop(dir, config, { researcher });
  await l.run();
  const rows = store.mechanisms();
  expect(rows.map((r) => [r.status, r.designName])).toEqual([
    ["active", "c3-alpha"],
    ["rejected", "c3-alpha"],
  ]);
  expect(rows[1]?.reason).toMatch(/the same code is already active as m1-tabu-search/);
  // The refusal is the session's outcome, and says which design it was.
  expect(store.events().some((e) => e.kind === "rejected" && /designed as c3-alpha/.test(e.message))).toBe(
    true,
  );
  store.close();
});

test("one numbering: the trial number shown, stored and in results.tsv is the same; rows are appended as trials end", async () => {
  const dir = tmp();
  const shown: number[] = [];
  const atEnd: string[] = [];
  const config = testConfig({ ...SYNTHETIC, iterations: 3 });
  const { store, loop: l } = loop(dir, config, {
    observer: {
      trialStart: (id) => shown.push(id),
      trialEnd: (trial) => {
        const lines = readFileSync(path.join(dir, "results.tsv"), "utf8").trim().split("\n");
        atEnd.push(`${trial.id}:${lines.at(-1)?.split("\t")[0]}`);
      },
    },
  });
  await l.run();
  const ids = store.trials().map((t) => t.id);
  expect(shown).toEqual(ids);
  expect(atEnd).toEqual(ids.map((id) => `${id}:trial-${id}`));
  const kept = store.events().filter((e) => e.kind === "kept" || e.kind === "discarded");
  for (const e of kept)
    expect(e.message).toMatch(new RegExp(`^#${(e.data as { trialId: number }).trialId} `));
  store.close();
});

test("status counts iterations completed, also when the last one trained nothing; resume events carry their iteration", async () => {
  const dir = tmp();
  const file = mechanismFile(dir, "reject-all", `filter() { return { verdict: "reject", reason: "no" }; },`, [
    "filter",
  ]);
  const config = testConfig({ ...SYNTHETIC, iterations: 2, mechanisms: [file] });
  const first = await executeRun({ dir: path.join(dir, "run"), config, offline: true, observer: {} });
  expect(first.report.iterationsDone).toBe(2);
  expect(first.report.trials).toBe(3); // baselines only
  const more = { ...config, iterations: 3 };
  checkResumable(config, more);
  const second = await executeRun({
    dir: path.join(dir, "run"),
    config: more,
    offline: true,
    resume: true,
    observer: {},
  });
  expect(second.report.iterationsDone).toBe(3);
  const store = RunStore.open(path.join(dir, "run"), { readOnly: true });
  const resume = store.events().find((e) => e.kind === "resume");
  expect(resume?.iteration).toBe(2);
  expect(resume?.message).toMatch(/resumed after iteration 2.*changed: iterations/);
  store.close();
});

test("a resume refuses changes to what the trials were measured with, naming the field", () => {
  const config = testConfig({ ...SYNTHETIC });
  expect(() => checkResumable(config, { ...config, acceptance: { ...config.acceptance, k: 3 } })).toThrow(
    ConfigError,
  );
  expect(() => checkResumable(config, { ...config, acceptance: { ...config.acceptance, k: 3 } })).toThrow(
    /cannot resume with a different acceptance\.k/,
  );
  expect(() => checkResumable(config, testConfig({ ...SYNTHETIC, device: "cuda" }))).toThrow(/device/);
  expect(() =>
    checkResumable(config, {
      ...config,
      llm: { ...config.llm, model: "x" },
      policy: { ...config.policy, hookTimeoutMs: 50 },
      parallel: 4,
    }),
  ).not.toThrow();
  // Each refused field with its own reason: a name is not about what the trials measured.
  let message = "";
  try {
    checkResumable(config, { ...config, name: "renamed", seed: config.seed + 1 });
  } catch (error) {
    message = (error as Error).message;
  }
  const lines = message.split("\n");
  expect(lines.find((l) => l.includes("different name"))).toMatch(
    /^cannot resume with a different name: the name is the run's identity/,
  );
  expect(lines.find((l) => l.includes("different name"))).not.toMatch(/baselines/);
  expect(lines.find((l) => l.includes("different seed"))).toMatch(/the baselines \(σ\) and every trial/);
  expect(lines.at(-1)).toBe(
    "a resume may change only iterations, parallel, llm, proposer, level15, level2, policy, program (start a new run instead)",
  );
});

test("the same mechanism under two file names is refused as a start mechanism; two approved copies activate once", async () => {
  const dir = tmp();
  const source = readFileSync(example("tabu-search"), "utf8");
  const a = path.join(dir, "mytabu.ts");
  const b = path.join(dir, "same.ts");
  writeFileSync(a, `// my copy\n${source}`);
  writeFileSync(b, source);
  const config = testConfig({ ...SYNTHETIC, iterations: 1, mechanisms: [a, b] });
  const summary = await executeRun({ dir: path.join(dir, "run"), config, offline: true, observer: {} });
  const rows = summary.report.mechanisms;
  expect(rows.map((m) => m.status)).toEqual(["active", "rejected"]);
  expect(rows[1]?.reason).toBe("a mechanism named tabu-search is already active (m1-mytabu)");

  // Level 2 with approval: two validated copies wait; both approved; only the first activates.
  const researcher: Researcher = {
    kind: "llm",
    research: async (input): Promise<ResearchResult> => ({
      status: "validated",
      origin: "generated",
      name: `copy-${input.iteration}`,
      source,
      report: await input.validate(source),
    }),
  };
  const run2 = tmp();
  const approving = testConfig({
    ...SYNTHETIC,
    iterations: 5,
    level15: { every: 1 },
    level2: { everyCycles: 1 },
    policy: { autoActivate: false },
  });
  const { store, loop: l } = loop(run2, approving, {
    researcher,
    observer: {
      iterationStart: (it) => {
        if (it !== 3) return;
        for (const m of store.mechanisms())
          store.setMechanismStatus(m.id, "approved", "approved by the test");
      },
    },
  });
  await l.run();
  const statuses = store
    .mechanisms()
    .slice(0, 2)
    .map((m) => [m.name, m.status, m.reason]);
  expect(statuses).toEqual([
    ["copy-1", "active", null],
    ["copy-2", "rejected", "the same code is already active as m1-copy-1"],
  ]);
  store.close();
});
