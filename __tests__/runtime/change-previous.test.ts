// Change.previous: every change the host hands a mechanism carries the value it replaced, taken
// from the config the change was applied to and stored with the trial. Real runs, real isolates:
// a witness mechanism records what its filter and observe see (proposal, pending, trial, history),
// and the test holds that against the configs that ran. A mechanism that returns a bogus
// `previous` has it replaced; a store written before the field existed still loads and resumes.
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { DatabaseSync } from "node:sqlite";
import type { Change, Config, ParamValue } from "../../mechanism-api/index.d.ts";
import { effectiveChanges, withPrevious } from "../../runtime/changes.ts";
import type { ResolvedRunConfig } from "../../runtime/config.ts";
import { RunStore, type TrialRow } from "../../runtime/store.ts";
import { executeRun } from "../../runtime/wiring.ts";
import { testConfig } from "../support/run-config.ts";

const HEAD = `import type { Change, Mechanism } from "bilevel/mechanism-api";\n`;

/** Records what filter and observe are handed; previous null = absent. */
const WITNESS = `${HEAD}type Seen = { param: string; value: number | string; previous: number | string | null };
const seen = (changes: readonly Change[]): Seen[] =>
  changes.map((c) => ({ param: c.param, value: c.value, previous: c.previous ?? null }));
type Listed = { id: number; changes: Seen[] };
type State = {
  filter: { it: number; changes: Seen[]; incumbent: (number | string | null)[]; pending: Listed[] }[];
  observe: { it: number; id: number; changes: Seen[]; history: Listed[] }[];
};
export default {
  manifest: { name: "witness", version: 1, hooks: ["init", "filter", "observe"], capabilities: [] },
  init() { return { filter: [], observe: [] }; },
  filter(proposal, ctx) {
    ctx.state.filter.push({
      it: ctx.iteration,
      changes: seen(proposal.changes),
      incumbent: proposal.changes.map((c) => ctx.incumbent.config[c.param] ?? null),
      pending: ctx.pending.map((p) => ({ id: p.id, changes: seen(p.changes) })),
    });
    return { verdict: "accept" };
  },
  observe(trial, ctx) {
    ctx.state.observe.push({
      it: ctx.iteration,
      id: trial.id,
      changes: seen(trial.changes),
      history: ctx.history.map((t) => ({ id: t.id, changes: seen(t.changes) })),
    });
  },
} satisfies Mechanism<State>;`;

/** Suggests (iterations 1 and 4) and modifies (even iterations, to the same changes) with a `previous` that is wrong. */
const LIAR = `${HEAD}export default {
  manifest: { name: "liar", version: 1, hooks: ["suggest", "filter"], capabilities: [] },
  suggest(ctx) {
    if (ctx.iteration !== 1 && ctx.iteration !== 4) return undefined;
    const change: Change = { param: "MATRIX_LR", value: 0.04 + ctx.iteration / 200, previous: -1 };
    return { changes: [change], rationale: "walk" };
  },
  filter(proposal, ctx) {
    if (ctx.iteration % 2 === 1) return { verdict: "accept" };
    const changes: Change[] = proposal.changes.map((c) => ({ ...c, previous: "bogus" }));
    return { verdict: "modify", changes, reason: "restated" };
  },
} satisfies Mechanism;`;

type Seen = { param: string; value: ParamValue; previous: ParamValue | null };
type Listed = { id: number; changes: Seen[] };
interface WitnessState {
  filter: { it: number; changes: Seen[]; incumbent: (ParamValue | null)[]; pending: Listed[] }[];
  observe: { it: number; id: number; changes: Seen[]; history: Listed[] }[];
}

const seen = (changes: readonly Change[]): Seen[] =>
  changes.map((c) => ({ param: c.param, value: c.value, previous: c.previous ?? null }));

function mechanismFiles(dir: string, sources: Record<string, string>): string[] {
  return Object.entries(sources).map(([name, source]) => {
    const file = path.join(dir, `${name}.ts`);
    writeFileSync(file, source);
    return file;
  });
}

function runConfig(dir: string, mechanisms: Record<string, string>, extra: object = {}): ResolvedRunConfig {
  return testConfig({
    name: "previous",
    seed: 3,
    iterations: 6,
    budgetSeconds: 1,
    trainer: { kind: "synthetic", delayMs: 0, noise: 0.003 },
    acceptance: { baselineRepeats: 2, mode: "strict" },
    activeParams: ["MATRIX_LR", "WARMDOWN_RATIO", "EMBEDDING_LR"],
    level15: { every: 3, maxFreezesPerCycle: 0, minActive: 3, freezeAfterTries: 2, enabled: false },
    level2: { everyCycles: 0, retireWindow: 0 },
    mechanisms: mechanismFiles(dir, mechanisms),
    ...extra,
  });
}

function read(dir: string) {
  const store = RunStore.open(dir, { readOnly: true });
  try {
    const mechanisms = store.mechanisms();
    return {
      trials: store.trials().filter((t) => t.kind === "search"),
      proposals: store.proposals(),
      ledger: store.ledger(),
      mechanisms,
      witness: mechanisms.find((m) => m.name === "witness")?.state as unknown as WitnessState,
    };
  } finally {
    store.close();
  }
}

/** The trial's config with every change undone to its `previous`: the config it was applied to. */
const undone = (t: TrialRow): Config => ({
  ...t.config,
  ...Object.fromEntries(t.changes.map((c) => [c.param, c.previous as ParamValue])),
});

test("the host sets previous from the base, replacing any given, and leaves it out for a parameter the base lacks", () => {
  const base = { A: 1, B: "x" };
  const given: Change[] = [
    { param: "A", value: 2, previous: 99 },
    { param: "B", value: "y" },
    { param: "C", value: 3, previous: 4 },
  ];
  expect(withPrevious(base, given)).toEqual([
    { param: "A", value: 2, previous: 1 },
    { param: "B", value: "y", previous: "x" },
    { param: "C", value: 3 },
  ]);
  // A no-op is dropped whatever previous it claims.
  expect(effectiveChanges(base, [{ param: "A", value: 1, previous: 0 }, ...given.slice(1, 2)])).toEqual([
    { param: "B", value: "y", previous: "x" },
  ]);
});

test("filter and observe see each change's previous value: the incumbent's, as the trial's record keeps it; a bogus previous from a mechanism is replaced", async () => {
  const dir = mkdtempSync(path.join(tmpdir(), "bilevel-previous-"));
  const config = runConfig(dir, { liar: LIAR, witness: WITNESS });
  await executeRun({ dir: path.join(dir, "run"), config, offline: true, observer: {} });
  const { trials, proposals, ledger, mechanisms, witness } = read(path.join(dir, "run"));
  expect(mechanisms.map((m) => m.status)).toEqual(["active", "active"]);
  expect(trials).toHaveLength(6);
  expect(trials.filter((t) => t.kept).length).toBeGreaterThan(0);

  // Sequential and no restarts: each trial was applied to the last kept trial's config (else the start config).
  let incumbent: Config = config.startConfig;
  for (const t of trials) {
    expect(t.changes.length).toBeGreaterThan(0);
    for (const c of t.changes) expect(c.previous).not.toBe(c.value);
    expect(undone(t)).toEqual(incumbent);
    if (t.kept) incumbent = t.config;
  }
  // The liar's paths ran: its suggestions were trained, its modifications applied (inside the batched chain).
  expect(proposals.filter((p) => p.source === "mechanism" && p.status === "trained").length).toBe(2);
  const liar = mechanisms.find((m) => m.name === "liar")?.id;
  expect(ledger.filter((l) => l.mechanismId === liar && l.outcome === "modified").length).toBe(3);
  // Its previous values were replaced everywhere: in the records and in what the witness saw.
  const everything = JSON.stringify({ trials, proposals, witness });
  expect(everything).not.toContain("bogus");
  expect(everything).not.toContain('"previous":-1');

  // filter (after the liar's modification): each previous is the incumbent's value of that parameter.
  expect(witness.filter.length).toBeGreaterThanOrEqual(6);
  for (const f of witness.filter) expect(f.changes.map((c) => c.previous)).toEqual(f.incumbent);
  // The last proposal the witness saw each iteration is the one trained, previous values and all.
  for (const t of trials)
    expect(witness.filter.findLast((f) => f.it === t.iteration)?.changes).toEqual(seen(t.changes));
  // observe: the trial and ctx.history carry the stored changes.
  const byId = new Map(trials.map((t) => [t.id, t]));
  expect(witness.observe.map((o) => o.id)).toEqual(trials.map((t) => t.id));
  for (const o of witness.observe) {
    expect(o.changes).toEqual(seen(byId.get(o.id)?.changes ?? []));
    for (const h of o.history) expect(h.changes).toEqual(seen(byId.get(h.id)?.changes ?? []));
  }
  expect(witness.observe.at(-1)?.history).toHaveLength(5);
}, 60_000);

test("ctx.pending's changes carry previous values, the ones stored with those trials", async () => {
  const dir = mkdtempSync(path.join(tmpdir(), "bilevel-previous-pending-"));
  const config = runConfig(
    dir,
    { witness: WITNESS },
    { parallel: 2, trainer: { kind: "synthetic", delayMs: 300, noise: 0.003 } },
  );
  await executeRun({ dir: path.join(dir, "run"), config, offline: true, observer: {} });
  const { trials, witness } = read(path.join(dir, "run"));
  const byId = new Map(trials.map((t) => [t.id, t]));
  const pending = witness.filter.flatMap((f) => f.pending);
  expect(pending.length).toBeGreaterThan(0);
  for (const p of pending) {
    expect(p.changes.every((c) => c.previous !== null)).toBe(true);
    expect(p.changes).toEqual(seen(byId.get(p.id)?.changes ?? []));
  }
}, 60_000);

test("a store recorded without previous values still resumes: those trials' changes have none, the new ones do", async () => {
  const dir = mkdtempSync(path.join(tmpdir(), "bilevel-previous-old-"));
  const run = path.join(dir, "run");
  const config = runConfig(dir, { witness: WITNESS }, { iterations: 3 });
  await executeRun({ dir: run, config, offline: true, observer: {} });
  // What a bilevel before Change.previous stored: the same rows, changes without the field.
  const db = new DatabaseSync(path.join(run, "run.db"));
  for (const table of ["trials", "proposals"]) {
    const rows = db.prepare(`SELECT id, changes_json FROM ${table}`).all() as {
      id: number;
      changes_json: string;
    }[];
    for (const r of rows) {
      const bare = (JSON.parse(r.changes_json) as Change[]).map(({ param, value }) => ({ param, value }));
      db.prepare(`UPDATE ${table} SET changes_json = ? WHERE id = ?`).run(JSON.stringify(bare), r.id);
    }
  }
  db.close();

  await executeRun({
    dir: run,
    config: { ...config, iterations: 5 },
    offline: true,
    observer: {},
    resume: true,
  });
  const { trials, mechanisms, witness } = read(run);
  expect(mechanisms.map((m) => m.status)).toEqual(["active"]);
  expect(trials.map((t) => t.iteration)).toEqual([1, 2, 3, 4, 5]);
  const old = new Set(trials.filter((t) => t.iteration <= 3).map((t) => t.id));
  const last = witness.observe.at(-1);
  expect(last?.it).toBe(5);
  expect(last?.history.map((h) => old.has(h.id))).toEqual([true, true, true, false]);
  for (const h of last?.history ?? [])
    expect(h.changes.every((c) => (c.previous === null) === old.has(h.id))).toBe(true);
  expect(last?.changes.every((c) => c.previous !== null)).toBe(true);
}, 60_000);
