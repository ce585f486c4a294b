import { readFileSync } from "node:fs";
import path from "node:path";
import {
  DEFAULT_SETTINGS,
  type HarnessMechanism,
  type HarnessSettings,
  type HarnessSummary,
  runHarness,
} from "../../runtime/harness.ts";
import { compareToBaseline, parseBaseline } from "../../runtime/harness-baseline.ts";
import { loadDefaultParams, Sandbox } from "../../sandbox/index.ts";
import { testConfig } from "../support/run-config.ts";

const examples = path.resolve(import.meta.dirname, "../../examples/mechanisms");
const params = loadDefaultParams();
const settings = (seeds: number[], iterations: number): HarnessSettings => ({
  ...DEFAULT_SETTINGS,
  seeds,
  iterations,
});

let sandbox: Sandbox;
beforeAll(async () => {
  sandbox = await Sandbox.start();
});
afterAll(async () => {
  await sandbox.close();
});

const BASE = testConfig({});

async function compile(source: string): Promise<HarnessMechanism> {
  const out = await sandbox.compile(source, "test.ts");
  if (!out.ok) throw new Error(JSON.stringify(out.errors));
  return { fileName: "test.ts", source, compiled: out.mechanism };
}
const example = (name: string) => readFileSync(path.join(examples, `${name}.ts`), "utf8");

const header = (name: string, hooks: string[], capabilities: string[] = []) =>
  `import type { Mechanism } from "bilevel/mechanism-api";
export default { manifest: { name: "${name}", version: 1, hooks: ${JSON.stringify(hooks)}, capabilities: ${JSON.stringify(capabilities)} },`;

describe("runHarness", () => {
  it("gives identical summaries for identical seeds, and timing only outside them", async () => {
    const m = await compile(example("tabu-search"));
    const a = await runHarness(sandbox, m, params, settings([1, 2], 12), BASE);
    const b = await runHarness(sandbox, m, params, settings([1, 2], 12), BASE);
    expect(b.summary).toEqual(a.summary);
    expect(JSON.stringify(a.summary)).not.toMatch(/Ms"/);
    expect(a.timing.hooks.filter?.calls).toBe(a.summary.totals.calls.filter);
    expect(a.timing.hooks.filter?.medianMs).toBeGreaterThanOrEqual(0);
    // A different seed set behaves differently.
    const c = await runHarness(sandbox, m, params, settings([3, 4], 12), BASE);
    expect(c.summary.seeds.map((s) => s.trajectory)).not.toEqual(a.summary.seeds.map((s) => s.trajectory));
  });

  it("runs a control without a mechanism: no hook calls, one trial per iteration", async () => {
    const r = await runHarness(sandbox, null, params, settings([1], 10), BASE);
    const s = r.summary.seeds[0];
    expect(r.summary.mechanism).toBeNull();
    expect(s?.trials).toBe(10);
    expect(Object.values(s?.calls ?? {}).every((n) => n === 0)).toBe(true);
    expect(s?.best).toBeLessThanOrEqual(s?.baseline ?? 0);
  });

  it("counts rejections and skips the iteration when every proposal is rejected", async () => {
    const m = await compile(
      `${header("reject-all", ["filter"])}
  filter() { return { verdict: "reject", reason: "no" }; },
} satisfies Mechanism;`,
    );
    const r = await runHarness(sandbox, m, params, settings([1], 5), BASE);
    const s = r.summary.seeds[0];
    expect(s?.rejected).toBe(5 * (DEFAULT_SETTINGS.maxFilterRejections + 1));
    expect(s?.skipped).toBe(5);
    expect(s?.trials).toBe(0);
    expect(s?.best).toBe(s?.baseline);
  });

  it("applies valid modifications and counts invalid ones", async () => {
    const m = await compile(
      `${header("modify", ["filter"])}
  filter(p, ctx) {
    return ctx.iteration % 2 === 0
      ? { verdict: "modify", changes: [{ param: "WEIGHT_DECAY", value: ctx.incumbent.config.WEIGHT_DECAY === 0.123 ? 0.321 : 0.123 }], reason: "pin" }
      : { verdict: "modify", changes: [{ param: "WEIGHT_DECAY", value: 99 }], reason: "out of range" };
  },
} satisfies Mechanism;`,
    );
    const r = await runHarness(sandbox, m, params, settings([1], 6), BASE);
    const s = r.summary.seeds[0];
    expect(s?.modified).toBe(3);
    expect(s?.invalidModifications).toBe(3);
  });

  it("records a fault, quarantines the mechanism for the seed, and runs on", async () => {
    const m = await compile(
      `${header("faulty", ["observe"])}
  observe(trial) { if (trial.iteration === 3) throw new Error("boom"); },
} satisfies Mechanism;`,
    );
    const r = await runHarness(sandbox, m, params, settings([1, 2], 6), BASE);
    for (const s of r.summary.seeds) {
      expect(s.calls.observe).toBe(3);
      expect(s.trials).toBe(6);
      expect(s.quarantined).toBe(true);
      expect(s.faults).toEqual([
        { iteration: 3, hook: "observe", code: "thrown", message: expect.stringMatching(/boom/) },
      ]);
    }
    expect(r.summary.totals.faults).toBe(2);
  });

  it("counts suggestions and rejects suggestions outside the space", async () => {
    const m = await compile(
      `${header("suggester", ["suggest"])}
  suggest(ctx) {
    return ctx.iteration % 2 === 0
      ? { changes: [{ param: "DEPTH", value: ctx.incumbent.config.DEPTH === 3 ? 4 : 3 }], rationale: "depth" }
      : { changes: [{ param: "NOPE", value: 1 }], rationale: "bad" };
  },
} satisfies Mechanism;`,
    );
    const r = await runHarness(sandbox, m, params, settings([1], 6), BASE);
    expect(r.summary.seeds[0]?.suggested).toBe(3);
    expect(r.summary.seeds[0]?.invalidSuggestions).toBe(3);
  });
});

describe("compareToBaseline and parseBaseline", () => {
  let base: HarnessSummary;
  beforeAll(async () => {
    const m = await compile(example("tabu-search"));
    base = (await runHarness(sandbox, m, params, settings([1, 2], 20), BASE)).summary;
  });

  it("finds no regression against itself and says behaviour is identical", () => {
    const c = compareToBaseline(base, base, 0.005);
    expect(c.regressions).toEqual([]);
    expect(c.notes.join("\n")).toMatch(/identical/);
  });

  it("flags a worse best, a silent hook, lost actions and new faults", () => {
    const worse: HarnessSummary = JSON.parse(JSON.stringify(base));
    const seeds = worse.seeds as unknown as Record<string, unknown>[];
    seeds[0] = { ...seeds[0], best: (base.seeds[0]?.best ?? 0) + 0.1, rejected: 0 };
    seeds[1] = {
      ...seeds[1],
      rejected: 0,
      faults: [{ iteration: 2, hook: "filter", code: "timeout", message: "too slow" }],
    };
    (worse.totals.calls as Record<string, number>).filter = 0;
    const c = compareToBaseline(worse, base, 0.005);
    const text = c.regressions.join("\n");
    expect(text).toMatch(/seed 1: best .* worse than the baseline/);
    expect(text).toMatch(/hook filter no longer fires/);
    expect(base.totals.rejected).toBeGreaterThan(0);
    expect(text).toMatch(/filter no longer rejects/);
    expect(text).toMatch(/new fault: seed 2, iteration 2, filter\/timeout/);
    // Within tolerance is fine.
    const slightly: HarnessSummary = JSON.parse(JSON.stringify(base));
    (slightly.seeds[0] as { best: number }).best += 0.001;
    expect(compareToBaseline(slightly, base, 0.005).regressions).toEqual([]);
  });

  it("refuses to compare runs with different settings", () => {
    const other = { ...base, settings: { ...base.settings, iterations: 99 } };
    expect(compareToBaseline(other, base, 0.005).regressions[0]).toMatch(/settings differ.*iterations/);
  });

  it("refuses to compare runs on different search spaces", () => {
    const other = { ...base, spaceHash: "0".repeat(64) };
    expect(compareToBaseline(other, base, 0.005).regressions[0]).toMatch(/search space .* changed/);
  });

  it("round-trips a summary and rejects garbage clearly", () => {
    const ok = parseBaseline(JSON.stringify(base));
    expect(ok).toEqual({ ok: true, summary: base });
    const cases: [string, RegExp][] = [
      ["{not json", /not JSON/],
      ["null", /not a bilevel-mechanism-test\/2 summary/],
      ["[]", /not a bilevel-mechanism-test\/2 summary/],
      [JSON.stringify({ ...base, format: "other/9" }), /format/],
      [JSON.stringify({ ...base, totals: undefined }), /totals/],
      [JSON.stringify({ ...base, extra: 1 }), /additional properties/],
      [JSON.stringify({ ...base, seeds: [{ ...base.seeds[0], best: "1.5" }, base.seeds[1]] }), /best/],
      [JSON.stringify({ ...base, settings: { ...base.settings, seeds: [1, 5] } }), /do not match/],
    ];
    for (const [text, message] of cases) {
      const r = parseBaseline(text);
      expect(r.ok).toBe(false);
      if (!r.ok) expect(r.error).toMatch(message);
    }
  });
});
