// The example mechanisms: each validates on the synthetic trace, and each demonstrably acts when
// its hooks are called through the real sandbox.
import { readFileSync } from "node:fs";
import path from "node:path";
import type { Config, HookName, Json, Proposal, Trial } from "../../mechanism-api/index.d.ts";
import { loadDefaultParams, Sandbox, syntheticTrace } from "../../sandbox/index.ts";
import type { CapabilityState, HookContextData, HookOutcome } from "../../sandbox/types.ts";

const dir = path.resolve(import.meta.dirname, "../../examples/mechanisms");
const EXAMPLES = [
  "tabu-search",
  "ucb-bandit",
  "orthogonal-doe",
  "stagnation-restart",
  "paper-tabu-manager",
  "paper-multiscale-bandit",
  "paper-lhs-explorer",
];
const params = loadDefaultParams();
const trace = syntheticTrace(params);
const defaults: Config = Object.fromEntries(params.map((p) => [p.name, p.default]));
const source = (name: string) => readFileSync(path.join(dir, `${name}.ts`), "utf8");

let sandbox: Sandbox;
beforeAll(async () => {
  sandbox = await Sandbox.start();
});
afterAll(async () => {
  await sandbox.close();
});

/** A loaded example with its host-kept state, called hook by hook. */
class Driver {
  state: Json = {};
  capabilities: CapabilityState = { tabu: {}, bandit: {} };
  readonly id: string;
  constructor(id: string) {
    this.id = id;
  }
  static async load(name: string): Promise<Driver> {
    const compiled = await sandbox.compile(source(name), `${name}.ts`);
    if (!compiled.ok) throw new Error(JSON.stringify(compiled.errors));
    const loaded = await sandbox.load(name, compiled.mechanism);
    if (!loaded.ok) throw new Error(loaded.error.message);
    return new Driver(name);
  }
  async call(hook: HookName, context: Partial<HookContextData> = {}, argument?: Proposal | Trial) {
    const outcome: HookOutcome = await sandbox.call({
      mechanismId: this.id,
      hook,
      context: { ...trace.context, ...context },
      state: this.state,
      capabilities: this.capabilities,
      ...(argument ? { argument } : {}),
    });
    if (!outcome.ok) throw new Error(`${hook}: ${outcome.error.code}: ${outcome.error.message}`);
    this.state = outcome.state;
    this.capabilities = outcome.capabilities;
    return outcome.result.value;
  }
  async unload() {
    await sandbox.unload(this.id);
  }
}

const trial = (iteration: number, config: Config, extra: Partial<Trial> = {}): Trial => ({
  id: iteration,
  iteration,
  config,
  changes: [],
  status: "ok",
  valBpb: 2.3,
  kept: false,
  delta: 0.01,
  ...extra,
});
const proposal = (config: Config): Proposal => ({
  changes: [],
  rationale: "test",
  source: "offline",
  config,
});
const apply = (config: Config, changes: readonly { param: string; value: number | string }[]): Config => ({
  ...config,
  ...Object.fromEntries(changes.map((c) => [c.param, c.value])),
});

it.each(EXAMPLES)("%s passes validation on the synthetic trace", async (name) => {
  const report = await sandbox.validate(source(name), trace, `${name}.ts`);
  expect(report.error).toBeNull();
  expect(report.ok).toBe(true);
  expect(report.manifest?.name).toBe(name);
});

it("tabu-search rejects a repeat and a near-repeat, accepts a new config, and keeps failures tabu", async () => {
  const d = await Driver.load("tabu-search");
  try {
    await d.call("init", { iteration: 0 });
    const tried: Config = { ...defaults, MATRIX_LR: 0.05 };
    await d.call("observe", { iteration: 1 }, trial(1, tried));
    const repeat = (await d.call("filter", { iteration: 2 }, proposal(tried))) as { verdict: string };
    expect(repeat.verdict).toBe("reject");
    const near = (await d.call("filter", { iteration: 2 }, proposal({ ...tried, MATRIX_LR: 0.0502 }))) as {
      verdict: string;
    };
    expect(near.verdict).toBe("reject");
    const fresh = (await d.call("filter", { iteration: 2 }, proposal({ ...tried, DEPTH: 6 }))) as {
      verdict: string;
    };
    expect(fresh.verdict).toBe("accept");
    expect((d.state as { rejected: number }).rejected).toBe(2);

    const failed: Config = { ...defaults, EMBEDDING_LR: 2.5 };
    await d.call(
      "observe",
      { iteration: 2 },
      trial(2, failed, { status: "diverged", valBpb: null, delta: null }),
    );
    // Long after the normal tenure (10), the failure is still tabu.
    const later = (await d.call("filter", { iteration: 30 }, proposal(failed))) as {
      verdict: string;
      reason: string;
    };
    expect(later).toEqual({ verdict: "reject", reason: expect.stringMatching(/failed/) });
    const expired = (await d.call("filter", { iteration: 30 }, proposal(tried))) as { verdict: string };
    expect(expired.verdict).toBe("accept");
  } finally {
    await d.unload();
  }
});

it("ucb-bandit suggests one neighbour step of the incumbent and rewards the arm by the improvement", async () => {
  const d = await Driver.load("ucb-bandit");
  try {
    await d.call("init", { iteration: 0 });
    const incumbent = trace.context.incumbent.config;
    const s = (await d.call("suggest", { iteration: 6 })) as { changes: { param: string; value: number }[] };
    expect(s.changes).toHaveLength(1);
    const change = s.changes[0] as { param: string; value: number };
    expect(change.value).not.toEqual(incumbent[change.param]);
    const pending = (d.state as { pending: { arm: string } }).pending;
    expect(pending.arm.startsWith(`${change.param}:`)).toBe(true);

    await d.call(
      "observe",
      { iteration: 6 },
      trial(6, apply(incumbent, s.changes), { changes: s.changes, kept: true, delta: -0.05 }),
    );
    const arm = d.capabilities.bandit.moves?.[pending.arm];
    expect(arm).toEqual({ pulls: 1, rewardSum: 1 });
    // The next suggestion is a different (still untried) arm: UCB1 tries every arm once first.
    const next = (await d.call("suggest", { iteration: 7 })) as { changes: { param: string }[] };
    expect((d.state as { pending: { arm: string } }).pending.arm).not.toBe(pending.arm);
    expect(next.changes).toHaveLength(1);
  } finally {
    await d.unload();
  }
});

it("orthogonal-doe suggests nine distinct design rows, then settles once and goes quiet", async () => {
  const d = await Driver.load("orthogonal-doe");
  try {
    const center = trace.context.incumbent.config;
    await d.call("init", { iteration: 0 });
    const { factors, rows } = d.state as { factors: string[]; rows: number[][] };
    expect(factors).toHaveLength(4);
    expect(rows).toHaveLength(9);
    const seen = new Set<string>();
    for (let i = 0; i < 9; i++) {
      const s = (await d.call("suggest", { iteration: i + 1 })) as {
        changes: { param: string; value: number }[];
        rationale: string;
      };
      expect(s.rationale).toMatch(new RegExp(`row ${i + 1}/9`));
      for (const c of s.changes) expect(factors).toContain(c.param);
      const config = apply(center, s.changes);
      seen.add(JSON.stringify(config));
      await d.call(
        "observe",
        { iteration: i + 1 },
        trial(i + 1, config, { changes: s.changes, valBpb: 2 + i / 100 }),
      );
    }
    expect(seen.size).toBe(9);
    // Row 1 scored best: the settled levels are row 1's wherever its levels won on average.
    await d.call("suggest", { iteration: 10 });
    expect((d.state as { phase: string }).phase).toBe("settled");
    expect((d.state as { settledOn: number[] }).settledOn).toHaveLength(4);
    expect(await d.call("suggest", { iteration: 11 })).toBeNull();
  } finally {
    await d.unload();
  }
});

it("stagnation-restart guides while stalling, then fires a multi-parameter restart from the best", async () => {
  const d = await Driver.load("stagnation-restart");
  try {
    await d.call("init", { iteration: 0 });
    const best = trace.context.best?.config as Config;
    for (let it = 1; it <= 5; it++) {
      expect(await d.call("suggest", { iteration: it })).toBeNull();
      const guide = await d.call("guide", { iteration: it });
      if (it >= 4) expect(guide).toMatch(/No kept improvement for \d iterations/);
      else expect(guide).toBeNull();
      await d.call("observe", { iteration: it }, trial(it, { ...best, DEPTH: it }));
    }
    await d.call("observe", { iteration: 6 }, trial(6, { ...best, DEPTH: 7 }));
    const s = (await d.call("suggest", { iteration: 7 })) as {
      changes: { param: string }[];
      rationale: string;
    };
    expect(s.rationale).toMatch(/restart #1/);
    expect(s.changes.length).toBeGreaterThanOrEqual(2);
    const state = d.state as { restarts: { iteration: number }[]; sinceImprovement: number };
    expect(state.restarts).toEqual([expect.objectContaining({ iteration: 7 })]);
    expect(state.sinceImprovement).toBe(0);
    // A kept trial resets the count: no restart right after.
    await d.call("observe", { iteration: 7 }, trial(7, best, { kept: true, delta: -0.1 }));
    expect(await d.call("suggest", { iteration: 8 })).toBeNull();
  } finally {
    await d.unload();
  }
});

it("the paper's three mechanisms are under ~80 lines each", () => {
  for (const name of ["paper-tabu-manager", "paper-multiscale-bandit", "paper-lhs-explorer"]) {
    expect(source(name).trimEnd().split("\n").length).toBeLessThanOrEqual(80);
  }
});

it("paper-tabu-manager rejects a repeated move with the entry and the reason, per-parameter thresholds, then lets a third try pass", async () => {
  const d = await Driver.load("paper-tabu-manager");
  try {
    await d.call("init", { iteration: 0 });
    const thresholds = (d.state as { thresholds: Record<string, unknown> }).thresholds;
    expect(thresholds.MATRIX_LR).toEqual({ ratio: 1.15 });
    expect(thresholds.DEPTH).toEqual({ absolute: 1 });
    expect(thresholds.HEAD_DIM).toEqual({ unit: 0 });
    const move = [{ param: "MATRIX_LR", value: 0.05 }];
    await d.call("observe", { iteration: 1 }, trial(1, apply(defaults, move), { changes: move }));
    const again = (c: { param: string; value: number }[]) =>
      d.call("filter", { iteration: 2 }, { ...proposal(apply(defaults, c)), changes: c }) as Promise<{
        verdict: string;
        reason?: string;
      }>;
    // 0.055 is within the 1.15 ratio of 0.05, whatever else changes; 0.06 is not.
    const near = await again([
      { param: "MATRIX_LR", value: 0.055 },
      { param: "DEPTH", value: 3 },
    ]);
    expect(near.verdict).toBe("reject");
    expect(near.reason).toMatch(
      /repeats a recent move: near the entry added at iteration 1 .*MATRIX_LR 0\.055 vs 0\.05 \(ratio 1\.1 ≤ 1\.15\)/,
    );
    expect((await again([{ param: "MATRIX_LR", value: 0.06 }])).verdict).toBe("accept");
    expect((await again([{ param: "DEPTH", value: 3 }])).verdict).toBe("accept");
    expect((await again([{ param: "MATRIX_LR", value: 0.05 }])).verdict).toBe("reject");
    // Two rejections this iteration: the third proposal passes so the iteration is not skipped.
    expect((await again([{ param: "MATRIX_LR", value: 0.05 }])).verdict).toBe("accept");
  } finally {
    await d.unload();
  }
});

it("paper-multiscale-bandit suggests (parameter, step) moves and rewards the arm; optimistic arms persist", async () => {
  const d = await Driver.load("paper-multiscale-bandit");
  try {
    await d.call("init", { iteration: 0 });
    const incumbent = trace.context.incumbent.config;
    const s = (await d.call("suggest", { iteration: 3 })) as { changes: { param: string; value: number }[] };
    expect(s.changes).toHaveLength(1);
    const pending = (d.state as { pending: { arm: string; param: string } }).pending;
    expect(pending.arm).toMatch(new RegExp(`^${pending.param}@0\\.(05|2)$`));
    expect(s.changes[0]?.value).not.toEqual(incumbent[pending.param]);
    expect(d.capabilities.banditSettings).toEqual({ "param-step": { initial: 0.5 } });
    await d.call(
      "observe",
      { iteration: 3 },
      trial(3, apply(incumbent, s.changes), { changes: s.changes, kept: true, delta: -0.05 }),
    );
    expect(d.capabilities.bandit["param-step"]?.[pending.arm]).toEqual({ pulls: 1, rewardSum: 1 });
  } finally {
    await d.unload();
  }
});

it("paper-lhs-explorer walks a Latin-hypercube block of three-parameter moves, then decays the step", async () => {
  const d = await Driver.load("paper-lhs-explorer");
  try {
    await d.call("init", { iteration: 0 });
    const incumbent = trace.context.incumbent.config;
    const groups = new Set<string>();
    for (let i = 1; i <= 4; i++) {
      const s = (await d.call("suggest", { iteration: i })) as {
        changes: { param: string; value: number | string }[];
        rationale: string;
      };
      expect(s.rationale).toMatch(new RegExp(`LHS block move ${i}/4`));
      expect(s.changes.length).toBeGreaterThanOrEqual(1);
      expect(s.changes.length).toBeLessThanOrEqual(3);
      for (const c of s.changes) groups.add(c.param);
      await d.call(
        "observe",
        { iteration: i },
        trial(i, apply(incumbent, s.changes), { changes: s.changes }),
      );
    }
    expect(groups.size).toBeLessThanOrEqual(3);
    expect((d.state as { step: number }).step).toBe(0.25);
    // The block found nothing: the next block starts with a smaller step, on the next group.
    const next = (await d.call("suggest", { iteration: 5 })) as { changes: { param: string }[] };
    expect((d.state as { step: number }).step).toBeCloseTo(0.15, 10);
    for (const c of next.changes) expect(groups.has(c.param)).toBe(false);
  } finally {
    await d.unload();
  }
});
