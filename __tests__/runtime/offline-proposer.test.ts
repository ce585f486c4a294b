import { readFileSync } from "node:fs";
import path from "node:path";
import type { Config, ParamSpec } from "../../mechanism-api/index.d.ts";
import { checkChanges } from "../../runtime/changes.ts";
import { OfflineProposer, proposeOffline } from "../../runtime/level1/offline-proposer.ts";
import { fromUnit, spaceKey, toUnit } from "../../runtime/param-scale.ts";
import { createRng } from "../../runtime/rng.ts";

const params: ParamSpec[] = JSON.parse(
  readFileSync(path.resolve(import.meta.dirname, "../../trainer/search-space.json"), "utf8"),
).params;
const defaults: Config = Object.fromEntries(params.map((p) => [p.name, p.default]));

describe("createRng", () => {
  it("is deterministic per seed parts and differs across them", () => {
    const a = createRng("x", 1, 2);
    const b = createRng("x", 1, 2);
    const c = createRng("x", 1, 3);
    const sa = [a.next(), a.next(), a.next()];
    expect([b.next(), b.next(), b.next()]).toEqual(sa);
    expect([c.next(), c.next(), c.next()]).not.toEqual(sa);
    for (const v of sa) expect(v >= 0 && v < 1).toBe(true);
  });

  it("int, pick and normal behave and reject bad arguments", () => {
    const r = createRng(7);
    for (let i = 0; i < 200; i++) {
      const k = r.int(5);
      expect(Number.isInteger(k) && k >= 0 && k < 5).toBe(true);
    }
    expect(["a", "b"]).toContain(r.pick(["a", "b"]));
    const xs = Array.from({ length: 2000 }, () => r.normal());
    const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
    expect(Math.abs(mean)).toBeLessThan(0.1);
    expect(() => r.int(0)).toThrow(RangeError);
    expect(() => r.int(1.5)).toThrow(RangeError);
    expect(() => r.pick([])).toThrow(RangeError);
  });
});

describe("param-scale", () => {
  it("round-trips bounds and uses the log scale for log parameters", () => {
    const lr: ParamSpec = {
      name: "LR",
      kind: "float",
      min: 0.001,
      max: 0.3,
      log: true,
      default: 0.01,
      description: "",
    };
    expect(toUnit(lr, 0.001)).toBeCloseTo(0);
    expect(toUnit(lr, 0.3)).toBeCloseTo(1);
    // Geometric midpoint of [0.001, 0.3].
    expect(fromUnit(lr, 0.5) as number).toBeCloseTo(Math.sqrt(0.001 * 0.3), 5);
    const hd: ParamSpec = {
      name: "HD",
      kind: "choice",
      choices: [32, 64, 128],
      default: 64,
      description: "",
    };
    expect(toUnit(hd, 64)).toBeCloseTo(0.5);
    expect(Number.isNaN(toUnit(hd, 63))).toBe(true);
    expect(fromUnit(hd, 2)).toBe(128);
    expect(fromUnit(hd, Number.NaN)).toBe(32);
  });
});

describe("proposeOffline", () => {
  it("returns 1-3 valid changes inside bounds, integers rounded, choices from the list", () => {
    for (let i = 0; i < 300; i++) {
      const p = proposeOffline({ params, incumbent: defaults, history: [], rng: createRng("t", i) });
      if (!p.ok) throw new Error(p.reason);
      expect(p.changes.length).toBeGreaterThanOrEqual(1);
      expect(p.changes.length).toBeLessThanOrEqual(3);
      expect(checkChanges(p.changes, params, { maxChanges: 3 })).toEqual([]);
      for (const c of p.changes) expect(c.value).not.toEqual(defaults[c.param]);
    }
  });

  it("is deterministic for the same seed", () => {
    const run = () =>
      proposeOffline({ params, incumbent: defaults, history: [], rng: createRng("same", 42) });
    expect(run()).toEqual(run());
  });

  it("only touches active parameters and respects maxChanges", () => {
    for (let i = 0; i < 100; i++) {
      const p = proposeOffline({
        params,
        incumbent: defaults,
        history: [],
        active: ["DEPTH", "HEAD_DIM"],
        maxChanges: 1,
        rng: createRng("active", i),
      });
      if (!p.ok) throw new Error(p.reason);
      expect(p.changes).toHaveLength(1);
      expect(["DEPTH", "HEAD_DIM"]).toContain(p.changes[0]?.param);
    }
  });

  it("moves choices to a neighbour and steps away from a bound", () => {
    const atTop: Config = { ...defaults, HEAD_DIM: 128, WEIGHT_DECAY: 0.5 };
    for (let i = 0; i < 50; i++) {
      const p = proposeOffline({
        params,
        incumbent: atTop,
        history: [],
        active: ["HEAD_DIM", "WEIGHT_DECAY"],
        maxChanges: 2,
        rng: createRng("edge", i),
      });
      if (!p.ok) throw new Error(p.reason);
      for (const c of p.changes) {
        if (c.param === "HEAD_DIM") expect(c.value).toBe(64);
        if (c.param === "WEIGHT_DECAY") expect(c.value as number).toBeLessThan(0.5);
      }
    }
  });

  it("avoids exact repeats of the history when it can, and says so when it cannot", () => {
    // DEPTH alone from 1 (range 1..12, steps up to a quarter of it) reaches 2, 3 or 4; 2 was tried.
    const inc: Config = { ...defaults, DEPTH: 1 };
    const history = [{ config: { ...defaults, DEPTH: 2 } }];
    const p = proposeOffline({
      params,
      incumbent: inc,
      history,
      active: ["DEPTH"],
      rng: createRng("rep", 1),
    });
    if (!p.ok) throw new Error(p.reason);
    expect([3, 4]).toContain(p.changes[0]?.value);
    expect(p.repeat).toBe(false);

    const choiceOnly = { ...defaults, HEAD_DIM: 32 };
    const tried = [{ config: { ...defaults, HEAD_DIM: 64 } }];
    const q = proposeOffline({
      params,
      incumbent: choiceOnly,
      history: tried,
      active: ["HEAD_DIM"],
      rng: createRng("rep", 2),
    });
    if (!q.ok) throw new Error(q.reason);
    expect(q.repeat).toBe(true);
    expect(q.rationale).toMatch(/repeated/);
  });

  it("avoids configs passed in `avoid` too", () => {
    const seen = new Set<string>();
    const avoid: Config[] = [];
    for (let i = 0; i < 20; i++) {
      const p = proposeOffline({
        params,
        incumbent: defaults,
        history: [],
        avoid,
        rng: createRng("avoid", i),
      });
      if (!p.ok) throw new Error(p.reason);
      const config = { ...defaults, ...Object.fromEntries(p.changes.map((c) => [c.param, c.value])) };
      const key = spaceKey(params, config);
      expect(seen.has(key)).toBe(false);
      seen.add(key);
      avoid.push(config);
    }
  });

  it("copes with garbage incumbents and reports when nothing can move", () => {
    const garbage = {
      DEPTH: Number.NaN,
      HEAD_DIM: "wide",
      MATRIX_LR: 99,
      NOT_A_PARAM: 3,
    } as unknown as Config;
    for (let i = 0; i < 30; i++) {
      const p = proposeOffline({ params, incumbent: garbage, history: [], rng: createRng("g", i) });
      if (!p.ok) throw new Error(p.reason);
      expect(checkChanges(p.changes, params)).toEqual([]);
    }
    const none = proposeOffline({ params, incumbent: defaults, history: [], active: [], rng: createRng(1) });
    expect(none.ok).toBe(false);
    const unknown = proposeOffline({
      params,
      incumbent: defaults,
      history: [],
      active: ["NOPE"],
      rng: createRng(1),
    });
    expect(unknown).toEqual({ ok: false, reason: expect.stringMatching(/no active parameter/) });
  });
});

describe("OfflineProposer (the loop's Proposer)", () => {
  const input = (
    attempt: number,
    rejected: { changes: { param: string; value: number | string }[]; reason: string }[],
  ) => ({
    iteration: 4,
    params,
    search: { strategy: "balanced" as const, active: ["MATRIX_LR", "DEPTH"], frozen: [], guidance: "" },
    incumbent: { config: defaults, valBpb: 2.2 },
    best: null,
    history: [],
    crashLessons: [],
    guidance: [],
    rejected,
    maxChanges: 2,
    seed: 9,
    attempt,
  });

  it("is seeded by (seed, iteration, attempt), keeps to active parameters and avoids rejected proposals", async () => {
    const p = new OfflineProposer();
    expect(p.kind).toBe("offline");
    const a = await p.propose(input(0, []));
    expect(await p.propose(input(0, []))).toEqual(a);
    if (!a.ok) throw new Error(a.reason);
    for (const c of a.changes) expect(["MATRIX_LR", "DEPTH"]).toContain(c.param);
    expect(a.changes.length).toBeLessThanOrEqual(2);
    const b = await p.propose(input(1, [{ changes: [...a.changes], reason: "tabu" }]));
    if (!b.ok) throw new Error(b.reason);
    expect(b.changes).not.toEqual(a.changes);
  });

  it("reports failure when nothing is active", async () => {
    const r = await new OfflineProposer().propose({
      ...input(0, []),
      search: { ...input(0, []).search, active: [] },
    });
    expect(r.ok).toBe(false);
  });
});
