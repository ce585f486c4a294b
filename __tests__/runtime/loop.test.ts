// The bilevel loop end to end on the synthetic trainer (fast, deterministic), with the real
// sandbox and the built-in mechanism library: every level acts and the ledger shows it.
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { formatReport } from "../../runtime/report.ts";
import { RunStore } from "../../runtime/store.ts";
import { executeRun } from "../../runtime/wiring.ts";
import { testConfig } from "../support/run-config.ts";

const root = path.resolve(import.meta.dirname, "../..");

const SYNTHETIC_RUN = {
  name: "loop-test",
  seed: 3,
  iterations: 9,
  budgetSeconds: 1,
  trainer: { kind: "synthetic", delayMs: 0, noise: 0.003 },
  acceptance: { baselineRepeats: 3, k: 1 },
  level15: { every: 3, maxFreezesPerCycle: 2, minActive: 6, freezeAfterTries: 2 },
  level2: { everyCycles: 1, retireWindow: 0 },
  mechanisms: [path.join(root, "examples/mechanisms/tabu-search.ts")],
};

test("an offline run: baselines, Level 1.5 changes, Level 2 activations, mechanisms that fired", async () => {
  const dir = mkdtempSync(path.join(tmpdir(), "bilevel-loop-"));
  const events: string[] = [];
  const summary = await executeRun({
    dir,
    config: testConfig(SYNTHETIC_RUN),
    offline: true,
    observer: { event: (level, message) => events.push(`[${level}] ${message}`) },
  });
  expect(summary.stopped).toBe(false);
  const store = RunStore.open(dir);
  const trials = store.trials();
  expect(trials.filter((t) => t.kind === "baseline")).toHaveLength(3);
  const search = trials.filter((t) => t.kind === "search");
  expect(search.length).toBeGreaterThan(0);
  expect(new Set(search.map((t) => t.iteration)).size).toBe(search.length);
  // The reported best is the true minimum over every scored trial.
  const scored = trials.map((t) => t.valBpb).filter((v): v is number => v !== null);
  expect(summary.best?.valBpb).toBe(Math.min(...scored));
  // Acceptance, recomputed independently from the stored rows: the incumbent starts at the
  // baseline with the run seed and moves only to trials that beat it by more than k·σ.
  const sigma = summary.baseline?.sigma ?? 0;
  let incumbent = trials.find((t) => t.kind === "baseline" && t.seed === SYNTHETIC_RUN.seed)?.valBpb ?? NaN;
  for (const t of search) {
    const shouldKeep = t.valBpb !== null && t.valBpb < incumbent - SYNTHETIC_RUN.acceptance.k * sigma;
    expect({ iteration: t.iteration, kept: t.kept }).toEqual({ iteration: t.iteration, kept: shouldKeep });
    if (t.valBpb !== null) expect(t.delta).toBeCloseTo(t.valBpb - incumbent, 12);
    if (shouldKeep) incumbent = t.valBpb as number;
  }
  expect(search.some((t) => t.kept)).toBe(true);
  expect(search.some((t) => !t.kept)).toBe(true);

  // Level 1.5 ran three times and recorded its search configs.
  expect(store.searchConfigs().filter((c) => c.source === "rules")).toHaveLength(3);
  expect(events.some((e) => e.startsWith("[1.5]"))).toBe(true);
  // Level 2 (offline) activated library mechanisms on top of the start mechanism.
  const mechanisms = store.mechanisms();
  expect(mechanisms.find((m) => m.origin === "file")?.name).toBe("tabu-search");
  expect(mechanisms.filter((m) => m.origin === "library" && m.status === "active").length).toBeGreaterThan(0);
  expect(store.getMeta("mode")).toBe("offline");
  // The ledger: every mechanism's hooks were called; some call changed what the loop did.
  const ledger = store.ledger();
  for (const m of mechanisms.filter((m) => m.status === "active")) {
    expect(ledger.some((l) => l.mechanismId === m.id)).toBe(true);
  }
  expect(ledger.some((l) => ["suggested", "rejected", "modified"].includes(l.outcome))).toBe(true);
  // The report's curve: one point per search trial, best so far never rising, drawn as a chart.
  const curve = summary.report.curve;
  expect(curve.map((c) => c.iteration)).toEqual(search.map((t) => t.iteration));
  for (let i = 1; i < curve.length; i++)
    expect(curve[i]?.best ?? 0).toBeLessThanOrEqual(curve[i - 1]?.best ?? 0);
  expect(curve.at(-1)?.best).toBe(summary.best?.valBpb);
  expect(formatReport(summary.report)).toMatch(
    /val_bpb of the \d+ scored search trials, iterations 1\.\.9.*lower line: best so far:\n.*┤/,
  );
  // results.tsv: a header and one line per trial, Karpathy's columns.
  const tsv = readFileSync(path.join(dir, "results.tsv"), "utf8").trim().split("\n");
  expect(tsv[0]).toBe("commit\tval_bpb\tmemory_gb\tstatus\tdescription");
  expect(tsv).toHaveLength(trials.length + 1);
  store.close();
});

test("a mechanism that acts without touching a kept trial over the window is retired, with the reason", async () => {
  const dir = mkdtempSync(path.join(tmpdir(), "bilevel-retire-"));
  await executeRun({
    dir,
    config: testConfig({
      ...SYNTHETIC_RUN,
      iterations: 12,
      level2: { everyCycles: 1, retireWindow: 4 },
      acceptance: { baselineRepeats: 3, k: 3 },
    }),
    offline: true,
    observer: {},
  });
  const store = RunStore.open(dir, { readOnly: true });
  const retired = store.mechanisms().filter((m) => m.status === "retired");
  expect(retired.length).toBeGreaterThan(0);
  for (const m of retired)
    expect(m.reason).toMatch(
      /acted \d+ times in the last 4 iterations \(suggested, modified, rejected or guided\) without touching a kept trial/,
    );
  expect(store.events().filter((e) => e.kind === "retired")).toHaveLength(retired.length);
  store.close();
});

test("mechanisms see Level 1.5's frozen parameters in ctx.params", async () => {
  const dir = mkdtempSync(path.join(tmpdir(), "bilevel-frozen-"));
  const file = path.join(dir, "frozen-reporter.ts");
  writeFileSync(
    file,
    `import type { Mechanism } from "bilevel/mechanism-api";
export default {
  manifest: { name: "frozen-reporter", version: 1, hooks: ["guide"], capabilities: [] },
  guide(ctx) {
    const frozen = ctx.params.filter((p) => p.frozen).map((p) => p.name);
    return frozen.length > 0 ? frozen.join(",") : undefined;
  },
} satisfies Mechanism;
`,
  );
  await executeRun({
    dir: path.join(dir, "run"),
    config: testConfig({
      ...SYNTHETIC_RUN,
      iterations: 6,
      level15: { every: 2, maxFreezesPerCycle: 2, minActive: 2, freezeAfterTries: 1 },
      level2: { everyCycles: 0 },
      mechanisms: [file],
    }),
    offline: true,
    observer: {},
  });
  const store = RunStore.open(path.join(dir, "run"), { readOnly: true });
  const configs = store.searchConfigs();
  const guided = store.ledger().filter((l) => l.hook === "guide" && l.outcome === "guided");
  expect(guided.length).toBeGreaterThan(0);
  for (const row of guided) {
    const inForce = configs.filter((c) => c.iteration < row.iteration).at(-1);
    expect((row.detail as { text: string }).text.split(",")).toEqual(inForce?.config.frozen);
  }
  store.close();
});

test("filters chain: each filter sees the proposal as the ones before it left it", async () => {
  const dir = mkdtempSync(path.join(tmpdir(), "bilevel-chain-"));
  const clamp = path.join(dir, "a-clamp.ts");
  const guard = path.join(dir, "b-guard.ts");
  writeFileSync(
    clamp,
    `import type { Mechanism } from "bilevel/mechanism-api";
export default {
  manifest: { name: "a-clamp", version: 1, hooks: ["filter"], capabilities: [] },
  filter(proposal) {
    if (proposal.config.MATRIX_LR === 0.05) return { verdict: "accept" };
    return { verdict: "modify", changes: [{ param: "MATRIX_LR", value: 0.05 }], reason: "pin the LR" };
  },
} satisfies Mechanism;
`,
  );
  writeFileSync(
    guard,
    `import type { Mechanism } from "bilevel/mechanism-api";
export default {
  manifest: { name: "b-guard", version: 1, hooks: ["filter"], capabilities: [] },
  filter(proposal) {
    return proposal.config.MATRIX_LR === 0.05
      ? { verdict: "reject", reason: "saw the pinned LR" }
      : { verdict: "accept" };
  },
} satisfies Mechanism;
`,
  );
  await executeRun({
    dir: path.join(dir, "run"),
    config: testConfig({
      ...SYNTHETIC_RUN,
      iterations: 2,
      activeParams: ["MATRIX_LR", "WARMDOWN_RATIO"],
      level2: { everyCycles: 0 },
      proposer: { maxFilterRejections: 1 },
      mechanisms: [clamp, guard],
    }),
    offline: true,
    observer: {},
  });
  const store = RunStore.open(path.join(dir, "run"), { readOnly: true });
  const names = new Map(store.mechanisms().map((m) => [m.id, m.name]));
  const filterRows = store.ledger().filter((l) => l.hook === "filter");
  const byGuard = filterRows.filter((l) => names.get(l.mechanismId) === "b-guard");
  // a-clamp pins MATRIX_LR on every proposal, so b-guard (which runs after it) rejects them all.
  expect(
    filterRows.filter((l) => names.get(l.mechanismId) === "a-clamp").every((l) => l.outcome === "modified"),
  ).toBe(true);
  expect(byGuard.length).toBeGreaterThan(0);
  expect(byGuard.every((l) => l.outcome === "rejected")).toBe(true);
  // Nothing b-guard rejected was trained, and nothing was linked to a trial it never shaped.
  expect(store.trials().filter((t) => t.kind === "search")).toHaveLength(0);
  expect(store.ledger().every((l) => l.trialId === null)).toBe(true);
  store.close();
});
