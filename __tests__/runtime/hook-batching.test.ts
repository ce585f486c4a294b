// Hook batching (one round trip to the sandbox child per hook phase, the filter chain run inside
// the child) must not change what a run records: the same seeded run, batched and forced to one
// round trip per call, gives the same trials, proposals, ledger outcomes, events and mechanism rows.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { jest } from "@jest/globals";
import { RunStore } from "../../runtime/store.ts";
import { executeRun } from "../../runtime/wiring.ts";
import { Sandbox } from "../../sandbox/index.ts";
import { testConfig } from "../support/run-config.ts";

const HEAD = `import type { Mechanism } from "bilevel/mechanism-api";\n`;

/** Five mechanisms that use every hook, capabilities, modify (valid and invalid), reject, and one fault. */
const MECHANISMS: Record<string, string> = {
  "a-guide": `${HEAD}export default {
  manifest: { name: "a-guide", version: 1, hooks: ["init", "guide", "observe"], capabilities: ["bandit"] },
  init() { return { seen: 0 }; },
  guide(ctx) {
    ctx.bandit.arms("b", ["x", "y"]);
    const arm = ctx.bandit.select("b", "ucb1");
    ctx.log("arm " + arm);
    return "arm " + arm + " r " + ctx.random().toFixed(6) + " seen " + ctx.state.seen;
  },
  observe(trial, ctx) { ctx.state.seen += 1; ctx.bandit.reward("b", trial.kept ? "x" : "y", trial.kept ? 1 : 0); },
} satisfies Mechanism<{ seen: number }>;`,
  "b-faulty": `${HEAD}export default {
  manifest: { name: "b-faulty", version: 1, hooks: ["guide", "filter"], capabilities: [] },
  guide(ctx) { if (ctx.iteration === 4) throw new Error("boom at 4"); },
  filter() { return { verdict: "accept" }; },
} satisfies Mechanism;`,
  "c-modify": `${HEAD}export default {
  manifest: { name: "c-modify", version: 1, hooks: ["filter", "observe"], capabilities: [] },
  filter(proposal, ctx) {
    if (ctx.iteration % 3 === 0) return { verdict: "modify", changes: [{ param: "MATRIX_LR", value: 99 }], reason: "out of range" };
    if (ctx.iteration % 2 === 0) return { verdict: "modify", changes: [{ param: "WARMDOWN_RATIO", value: 0.5 }], reason: "pin warmdown" };
    return { verdict: "accept" };
  },
  observe(trial, ctx) { ctx.state = { last: trial.valBpb }; },
} satisfies Mechanism<{ last?: number | null }>;`,
  "d-reject": `${HEAD}export default {
  manifest: { name: "d-reject", version: 1, hooks: ["filter", "observe"], capabilities: ["tabu"] },
  filter(proposal, ctx) {
    if (proposal.config.WARMDOWN_RATIO === 0.5 && ctx.random() < 0.5) return { verdict: "reject", reason: "saw 0.5" };
    return ctx.tabu.contains("seen", proposal.config) ? { verdict: "reject", reason: "tabu" } : { verdict: "accept" };
  },
  observe(trial, ctx) { ctx.tabu.add("seen", trial.config, 2); },
} satisfies Mechanism;`,
  "e-suggest": `${HEAD}export default {
  manifest: { name: "e-suggest", version: 1, hooks: ["suggest"], capabilities: [] },
  suggest(ctx) {
    return ctx.iteration % 4 === 1
      ? { changes: [{ param: "MATRIX_LR", value: 0.03 + ctx.iteration / 1000 }], rationale: "walk" }
      : undefined;
  },
} satisfies Mechanism;`,
};

function writeMechanisms(dir: string): string[] {
  return Object.entries(MECHANISMS).map(([name, source]) => {
    const file = path.join(dir, `${name}.ts`);
    writeFileSync(file, source);
    return file;
  });
}

function deeplyFrozen(value: unknown): boolean {
  if (typeof value !== "object" || value === null) return true;
  return Object.isFrozen(value) && Object.values(value).every(deeplyFrozen);
}

/** What a run recorded, without wall-clock fields. */
function records(dir: string) {
  const store = RunStore.open(dir, { readOnly: true });
  try {
    return {
      trials: store.trials().map(({ durationMs: _d, result: _r, ...t }) => t),
      proposals: store.proposals(),
      ledger: store.ledger().map(({ latencyMs: _l, ...row }) => row),
      events: store.events().map(({ createdAt: _c, ...e }) => e),
      mechanisms: store
        .mechanisms()
        .map(({ id, name, status, reason, state, capabilities, activatedIteration }) => ({
          id,
          name,
          status,
          reason,
          state,
          capabilities,
          activatedIteration,
        })),
    };
  } finally {
    store.close();
  }
}

test("a seeded run records the same with hook batching as with one round trip per call", async () => {
  const dir = mkdtempSync(path.join(tmpdir(), "bilevel-batching-"));
  const config = testConfig({
    name: "batching",
    seed: 5,
    iterations: 9,
    budgetSeconds: 1,
    trainer: { kind: "synthetic", delayMs: 0, noise: 0.003 },
    acceptance: { baselineRepeats: 2, k: 1 },
    activeParams: ["MATRIX_LR", "WARMDOWN_RATIO", "EMBEDDING_LR"],
    level15: { every: 3, maxFreezesPerCycle: 1, minActive: 2, freezeAfterTries: 2 },
    level2: { everyCycles: 1, retireWindow: 0 },
    policy: { maxActiveMechanisms: 7 },
    proposer: { maxFilterRejections: 2 },
    mechanisms: writeMechanisms(dir),
  });
  const batches = jest.spyOn(Sandbox.prototype, "callBatch");
  const run = (name: string, hookBatching: boolean) =>
    executeRun({ dir: path.join(dir, name), config, offline: true, observer: {}, hookBatching });
  await run("unbatched", false);
  expect(batches).not.toHaveBeenCalled();
  await run("batched", true);
  // The batched run did batch: guide, suggest, filter chains and observe, several calls per request.
  const sent = await Promise.all(batches.mock.results.map((r) => r.value as Promise<unknown[] | null>));
  const hooks = new Set(batches.mock.calls.map(([b]) => b.hook));
  expect([...hooks].sort()).toEqual(["filter", "guide", "observe", "suggest"]);
  expect(sent.some((outcomes) => outcomes !== null && outcomes.length > 1)).toBe(true);
  expect(batches.mock.calls.some(([b]) => b.chain !== undefined && b.calls.length > 1)).toBe(true);
  // ctx.params and ctx.history cross as the same deeply frozen arrays within an iteration (each is
  // serialised once), and as new ones once a trial has finished.
  const contexts = batches.mock.calls.map(([b]) => ({ hook: b.hook, context: b.context }));
  for (const { context } of contexts) {
    expect(deeplyFrozen(context.history)).toBe(true);
    expect(deeplyFrozen(context.params)).toBe(true);
  }
  // With one trial at a time, an iteration's observe sees the rows its guide did (the new trial not yet among them).
  for (const a of contexts)
    for (const b of contexts)
      if (a.context.iteration === b.context.iteration) {
        expect(b.context.history).toBe(a.context.history);
        expect(b.context.params).toBe(a.context.params);
      }
  expect(new Set(contexts.map((c) => c.context.history)).size).toBeGreaterThan(3);
  batches.mockRestore();

  const expected = records(path.join(dir, "unbatched"));
  const actual = records(path.join(dir, "batched"));
  // The run exercised what batching must preserve.
  const outcomes = new Set(expected.ledger.map((l) => `${l.hook}:${l.outcome}`));
  for (const o of ["guide:guided", "filter:modified", "filter:invalid-modification", "filter:rejected"])
    expect(outcomes).toContain(o);
  expect(outcomes).toContain("guide:fault");
  expect(expected.mechanisms.find((m) => m.name === "b-faulty")?.status).toBe("quarantined");
  expect(expected.trials.filter((t) => t.kind === "search").length).toBeGreaterThan(3);
  expect(actual).toEqual(expected);
  rmSync(dir, { recursive: true, force: true });
});

/** A well-behaved mechanism with guide, filter and observe. */
function wellBehaved(name: string): string {
  return `${HEAD}export default {
  manifest: { name: "${name}", version: 1, hooks: ["guide", "filter", "observe"], capabilities: [] },
  guide(ctx) { return "${name} " + ctx.iteration; },
  filter() { return { verdict: "accept" }; },
  observe(trial, ctx) { ctx.state = { n: ((ctx.state.n as number | undefined) ?? 0) + 1 }; },
} satisfies Mechanism;`;
}

/** The offender misbehaves once, at iteration 2, in one hook. */
const OFFENDERS: [string, string, RegExp][] = [
  [
    "throws in guide",
    `guide(ctx) { if (ctx.iteration === 2) throw new Error("boom"); return "b"; },
  filter() { return { verdict: "accept" }; },
  observe() {},`,
    /^guide\/thrown/,
  ],
  [
    "runs past the host's deadline in filter (the child is killed and restarted)",
    `guide() { return "b"; },
  filter(p, ctx) { return ctx.iteration === 2 ? { verdict: "reject", reason: String(BigInt("1".repeat(30_000_000))).slice(0, 3) } : { verdict: "accept" }; },
  observe() {},`,
    /^filter\/timeout: filter did not finish within \d+ ms \(policy.hookTimeoutMs\); the sandbox child gave no answer within/,
  ],
  [
    "returns an invalid state from observe",
    `guide() { return "b"; },
  filter() { return { verdict: "accept" }; },
  observe(trial, ctx) { if (ctx.iteration === 2) return { n: Number.NaN }; },`,
    /^observe\/invalid-state/,
  ],
];

test.each(OFFENDERS)(
  "one of three mechanisms %s: only it is quarantined, the others' calls stand, one ledger row per call",
  async (_label, hooks, reason) => {
    const dir = mkdtempSync(path.join(tmpdir(), "bilevel-offender-"));
    const files = [
      ["a-first", wellBehaved("a-first")],
      [
        "b-offender",
        `${HEAD}export default {\n  manifest: { name: "b-offender", version: 1, hooks: ["guide", "filter", "observe"], capabilities: [] },\n  ${hooks}\n} satisfies Mechanism;`,
      ],
      ["c-last", wellBehaved("c-last")],
    ].map(([name, source]) => {
      const file = path.join(dir, `${name}.ts`);
      writeFileSync(file, source as string);
      return file;
    });
    const config = testConfig({
      name: "offender",
      seed: 2,
      iterations: 3,
      budgetSeconds: 1,
      trainer: { kind: "synthetic", delayMs: 0, noise: 0.003 },
      acceptance: { baselineRepeats: 1, k: 1 },
      level15: { every: 50 },
      level2: { everyCycles: 0 },
      // Long enough for a healthy hook on a loaded machine; the offender runs for tens of seconds.
      policy: { hookTimeoutMs: 1_000 },
      mechanisms: files,
    });
    const run = (name: string, hookBatching: boolean) =>
      executeRun({ dir: path.join(dir, name), config, offline: true, observer: {}, hookBatching });
    await run("batched", true);
    await run("unbatched", false);
    const batched = records(path.join(dir, "batched"));
    expect(batched).toEqual(records(path.join(dir, "unbatched")));

    const byName = new Map(batched.mechanisms.map((m) => [m.name, m]));
    expect(byName.get("b-offender")?.status).toBe("quarantined");
    expect(byName.get("b-offender")?.reason).toMatch(reason);
    expect(byName.get("a-first")?.status).toBe("active");
    expect(byName.get("c-last")?.status).toBe("active");
    // The offender's calls end with its one fault, at iteration 2.
    const offenderRows = batched.ledger.filter((l) => l.mechanismId === byName.get("b-offender")?.id);
    expect(offenderRows.filter((l) => l.outcome === "fault").map((l) => l.iteration)).toEqual([2]);
    expect(offenderRows.every((l) => l.iteration <= 2)).toBe(true);
    // The others were called once per hook per iteration, before and after the fault.
    for (const name of ["a-first", "c-last"]) {
      const rows = batched.ledger.filter((l) => l.mechanismId === byName.get(name)?.id);
      for (const hook of ["guide", "filter", "observe"]) {
        expect(rows.filter((l) => l.hook === hook).map((l) => l.iteration)).toEqual([1, 2, 3]);
      }
      expect(rows.every((l) => l.outcome !== "fault")).toBe(true);
      expect(byName.get(name)?.state).toEqual({ n: 3 });
    }
  },
);
