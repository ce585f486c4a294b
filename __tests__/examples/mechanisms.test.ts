// The example mechanisms: each validates on the synthetic trace, and each demonstrably acts when
// its hooks are called through the real sandbox.
import { readFileSync } from "node:fs";
import path from "node:path";
import type { Config, HookName, Json, Proposal, Trial } from "../../mechanism-api/index.d.ts";
import { loadDefaultParams, Sandbox, syntheticTrace } from "../../sandbox/index.ts";
import type { CapabilityState, HookContextData, HookOutcome } from "../../sandbox/types.ts";

const dir = path.resolve(import.meta.dirname, "../../examples/mechanisms");
const EXAMPLES = ["tabu-search", "ucb-bandit", "orthogonal-doe", "stagnation-restart"];
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
