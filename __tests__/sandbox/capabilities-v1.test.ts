// Capabilities for real mechanisms: tabu tolerances per parameter and "near which entry and why",
// bandit policies with optimistic initial values, ε decay and discounting, space sampling in the
// project's one set of normalised coordinates.
import type { ParamSpec } from "../../mechanism-api/index.d.ts";
import * as runtimeScale from "../../runtime/param-scale.ts";
import {
  banditArms,
  banditReward,
  banditSelect,
  banditStats,
  epsilonNow,
} from "../../sandbox/capabilities/bandit.ts";
import { type CapabilitySession, invokeCapability } from "../../sandbox/capabilities/index.ts";
import {
  haltonPoint,
  MAX_SOBOL_DIMENSIONS,
  SOBOL_DIRECTIONS,
  sobolPoint,
} from "../../sandbox/capabilities/sequences.ts";
import { clamp, distance, neighbour, neighbours, sample } from "../../sandbox/capabilities/space.ts";
import { tabuAdd, tabuContains, tabuMatch } from "../../sandbox/capabilities/tabu.ts";
import { fromUnit, toUnit } from "../../sandbox/param-scale.ts";
import { hashSeed, sfc32 } from "../../sandbox/rng.ts";

const params: ParamSpec[] = [
  { name: "LR", kind: "float", min: 0.001, max: 1, log: true, default: 0.04, description: "log float" },
  { name: "WD", kind: "float", min: 0, max: 0.5, default: 0.2, description: "linear float" },
  { name: "DEPTH", kind: "int", min: 1, max: 12, default: 4, description: "int" },
  {
    name: "BATCH",
    kind: "int",
    min: 512,
    max: 1048576,
    log: true,
    powerOfTwo: true,
    default: 4096,
    description: "log int, power of two",
  },
  { name: "WIN", kind: "choice", choices: ["L", "SL", "SSL"], default: "L", description: "string choice" },
  {
    name: "HEAD",
    kind: "choice",
    choices: [32, 64, 128],
    default: 64,
    description: "numeric choice",
    frozen: true,
  },
];
const spec = (name: string) => params.find((p) => p.name === name)!;

describe("normalised coordinates (one implementation)", () => {
  test("runtime/param-scale.ts is the sandbox's implementation, re-exported", () => {
    expect(runtimeScale.toUnit).toBe(toUnit);
    expect(runtimeScale.fromUnit).toBe(fromUnit);
  });
  test("choices: i / (n − 1) forth, n equal bins back, so every choice round-trips and is drawn equally often", () => {
    const win = spec("WIN");
    expect(["L", "SL", "SSL"].map((c) => toUnit(win, c))).toEqual([0, 0.5, 1]);
    for (const c of ["L", "SL", "SSL"]) expect(fromUnit(win, toUnit(win, c))).toBe(c);
    const counts = new Map<unknown, number>();
    for (let i = 0; i < 300; i++)
      counts.set(fromUnit(win, (i + 0.5) / 300), (counts.get(fromUnit(win, (i + 0.5) / 300)) ?? 0) + 1);
    expect([...counts.values()]).toEqual([100, 100, 100]);
    expect(Number.isNaN(toUnit(win, "XXL"))).toBe(true);
  });
  test("values coming back are allowed values: powers of two snapped, floats to 6 digits, clamped", () => {
    const batch = spec("BATCH");
    for (let u = 0; u <= 1; u += 0.05) expect(Math.log2(fromUnit(batch, u) as number) % 1).toBe(0);
    expect(clamp(params, "BATCH", 5000)).toBe(4096);
    expect(toUnit(spec("WD"), 7)).toBe(1);
    expect(String(fromUnit(spec("LR"), 0.123456789))).toMatch(/^0\.\d{0,8}$/);
  });
});

describe("tabu", () => {
  test("per-parameter tolerances: ratio for log-scale values, absolute in the parameter's units, unit elsewhere", () => {
    const lists = tabuAdd({}, 0, "t", { LR: 0.01, DEPTH: 6, WD: 0.2 }, 10);
    const tolerance = { params: { LR: { ratio: 1.1 }, DEPTH: { absolute: 1 } } };
    expect(tabuContains(lists, params, 1, "t", { LR: 0.0105, DEPTH: 7, WD: 0.21 }, tolerance)).toBe(true);
    expect(tabuContains(lists, params, 1, "t", { LR: 0.0115, DEPTH: 7, WD: 0.21 }, tolerance)).toBe(false);
    expect(tabuContains(lists, params, 1, "t", { LR: 0.0105, DEPTH: 8, WD: 0.21 }, tolerance)).toBe(false);
    // WD falls back to the default unit tolerance (0.05 of its range = 0.025).
    expect(tabuContains(lists, params, 1, "t", { LR: 0.01, WD: 0.23 }, tolerance)).toBe(false);
    expect(tabuContains(lists, params, 1, "t", { LR: 0.01, WD: 0.23 }, { ...tolerance, default: 0.1 })).toBe(
      true,
    );
  });
  test("match names the most recent matching entry and says why; no shared parameter never matches", () => {
    let lists = tabuAdd({}, 2, "t", { LR: 0.01 }, 10);
    lists = tabuAdd(lists, 4, "t", { LR: 0.0102, DEPTH: 6 }, 10);
    const m = tabuMatch(lists, params, 5, "t", { LR: 0.0101, DEPTH: 6 }, { params: { LR: { ratio: 1.05 } } });
    expect(m).toMatchObject({ entry: { LR: 0.0102, DEPTH: 6 }, added: 4, expires: 14 });
    expect(m?.params.map((p) => [p.param, p.measure])).toEqual([
      ["LR", "ratio"],
      ["DEPTH", "unit"],
    ]);
    expect(m?.reason).toMatch(
      /^near the entry added at iteration 4 \(tabu through iteration 13\): LR 0\.0101 vs 0\.0102 \(ratio 1\.01 ≤ 1\.05\), DEPTH 6 vs 6/,
    );
    expect(tabuMatch(lists, params, 5, "t", { WD: 0.2 })).toBeNull();
    expect(tabuMatch(lists, params, 5, "none", { LR: 0.01 })).toBeNull();
  });
  test("changes are the partial config they set: matching on the changed parameters only", () => {
    const lists = tabuAdd({}, 0, "moves", [{ param: "LR", value: 0.02 }], 5);
    expect(lists.moves?.[0]?.config).toEqual({ LR: 0.02 });
    // A proposal that changes LR to about the same value again is tabu whatever else it changes…
    expect(
      tabuContains(lists, params, 1, "moves", [
        { param: "LR", value: 0.0201 },
        { param: "WD", value: 0 },
      ]),
    ).toBe(true);
    // …and one that leaves LR alone is not.
    expect(tabuContains(lists, params, 1, "moves", [{ param: "WD", value: 0 }])).toBe(false);
  });
  test("capacity: the entries that expire soonest are evicted, the earliest added first among equals", () => {
    let lists = tabuAdd({}, 0, "t", { WD: 0 }, 50);
    lists = tabuAdd(lists, 0, "t", { WD: 0.1 }, 5, 2);
    lists = tabuAdd(lists, 0, "t", { WD: 0.2 }, 5, 2);
    expect(lists.t?.map((e) => e.config.WD)).toEqual([0, 0.2]);
    lists = tabuAdd(lists, 1, "t", { WD: 0.3 }, 60, 2);
    expect(lists.t?.map((e) => e.config.WD)).toEqual([0, 0.3]);
  });
  test("entries stored before `added` existed still match, with added: null", () => {
    const lists = { old: [{ config: { WD: 0.2 }, expires: 9 }] };
    expect(tabuMatch(lists, params, 3, "old", { WD: 0.2 })).toMatchObject({ added: null, expires: 9 });
  });
});

describe("bandit", () => {
  const three = () => banditArms({}, "b", ["a", "b", "c"]);
  test("optimistic initial values: no arm is forced first; arms are ranked by (initial + Σr) / (1 + n)", () => {
    const random = sfc32(hashSeed("o"));
    let b = banditReward(three(), "b", "a", 0.4, { initial: 1 });
    // a: (1 + 0.4) / 2 = 0.7 < 1 for the unpulled arms, so greedy moves on to b.
    expect(banditSelect(b, "b", "epsilon-greedy", { epsilon: 0 }, random, { initial: 1 })).toBe("b");
    b = banditReward(banditReward(b, "b", "b", 0, { initial: 1 }), "b", "c", 0, { initial: 1 });
    expect(banditSelect(b, "b", "epsilon-greedy", { epsilon: 0 }, random, { initial: 1 })).toBe("a");
    expect(banditStats(b, "b", { initial: 1 }).map((s) => s.estimate)).toEqual([0.7, 0.5, 0.5]);
    // Without an initial value the unpulled arms come first, as before.
    expect(banditSelect(banditReward(three(), "b", "a", 0.4), "b", "ucb1", {}, random)).toBe("b");
  });
  test("ε decays as max(minEpsilon, ε · decay^t) over the bandit's rewards", () => {
    let b = three();
    for (let i = 0; i < 10; i++) b = banditReward(b, "b", "a", 1);
    const arms = Object.entries(b.b!);
    expect(epsilonNow(arms, { epsilon: 0.5, decay: 0.9 })).toBeCloseTo(0.5 * 0.9 ** 10, 12);
    expect(epsilonNow(arms, { epsilon: 0.5, decay: 0.5, minEpsilon: 0.05 })).toBe(0.05);
    expect(epsilonNow(arms, {})).toBe(0.1);
  });
  test("discounting fades old rewards: a once-good arm that turned bad loses to a steady one", () => {
    const settings = { discount: 0.8 };
    let b = banditArms({}, "d", ["old", "steady"]);
    for (let i = 0; i < 20; i++) b = banditReward(b, "d", "old", 1, settings);
    for (let i = 0; i < 10; i++) {
      b = banditReward(b, "d", "old", 0, settings);
      b = banditReward(b, "d", "steady", 0.5, settings);
    }
    const [old, steady] = banditStats(b, "d", settings);
    expect(old?.pulls).toBe(30);
    expect(old!.weight).toBeLessThan(5);
    expect(old!.meanReward).toBeLessThan(0.1);
    expect(steady!.meanReward).toBeCloseTo(0.5, 10);
    expect(banditSelect(b, "d", "ucb1", { c: 0 }, sfc32(hashSeed("d")), settings)).toBe("steady");
    // Undiscounted, the same history still favours the old arm (mean 20/30).
    let plain = banditArms({}, "d", ["old", "steady"]);
    for (let i = 0; i < 20; i++) plain = banditReward(plain, "d", "old", 1);
    for (let i = 0; i < 10; i++) plain = banditReward(banditReward(plain, "d", "old", 0), "d", "steady", 0.5);
    expect(banditSelect(plain, "d", "ucb1", { c: 0 }, sfc32(hashSeed("d")))).toBe("old");
  });
  test("Gaussian Thompson sampling favours the better mean, with negative rewards too", () => {
    let b = banditArms({}, "g", ["good", "bad"]);
    for (let i = 0; i < 30; i++) {
      b = banditReward(b, "g", "good", -1 + 0.1 * Math.sin(i));
      b = banditReward(b, "g", "bad", -2 + 0.1 * Math.cos(i));
    }
    const random = sfc32(hashSeed("g"));
    const picks = Array.from({ length: 200 }, () =>
      banditSelect(b, "g", "thompson-gaussian", { sigma: 2.5 }, random),
    );
    expect(picks.filter((p) => p === "good").length).toBeGreaterThan(170);
    expect(new Set(picks).size).toBe(2); // it still explores
  });
  test("arms added later are tried next by UCB1; settings given to arms() persist with the state", () => {
    const s: CapabilitySession = {
      params,
      iteration: 1,
      allowed: new Set(["bandit"]),
      declared: new Set(["bandit"]),
      budget: 100,
      random: sfc32(hashSeed("s")),
      calls: 0,
      state: { tabu: {}, bandit: {} },
    };
    const call = (op: string, ...args: unknown[]) => invokeCapability(s, op, JSON.stringify(args));
    expect(call("bandit.arms", "m", ["x"], { initial: 2, discount: 0.9 })).toEqual({ ok: true, value: null });
    expect(s.state.banditSettings).toEqual({ m: { initial: 2, discount: 0.9 } });
    call("bandit.reward", "m", "x", 1);
    expect(s.state.bandit.m?.x).toEqual({ pulls: 1, rewardSum: 1, weight: 1 });
    call("bandit.arms", "m", ["y"]);
    expect(s.state.banditSettings).toEqual({ m: { initial: 2, discount: 0.9 } });
    expect(call("bandit.select", "m", "ucb1", { c: 0 })).toEqual({ ok: true, value: "y" });
    expect(call("bandit.arms", "m", ["z"], { discount: 0 })).toMatchObject({
      ok: false,
      code: "capability-error",
    });
    expect(call("bandit.select", "m", "epsilon-greedy", { decay: 2 })).toMatchObject({ ok: false });
  });
});

describe("space", () => {
  test("sobol: the direction numbers come from primitive polynomials, and 2^k points fill every 1/2^k stratum", () => {
    const isPrimitive = (degree: number, poly: number) => {
      // x has order 2^degree − 1 modulo the polynomial (bit i = coefficient of x^i).
      let x = 1;
      for (let k = 1; k <= 2 ** degree - 1; k++) {
        x <<= 1;
        if (x & (1 << degree)) x ^= poly;
        if (x === 1) return k === 2 ** degree - 1;
      }
      return false;
    };
    expect(MAX_SOBOL_DIMENSIONS).toBe(32);
    const points = Array.from({ length: 64 }, (_, i) => sobolPoint(i, MAX_SOBOL_DIMENSIONS));
    for (let d = 0; d < MAX_SOBOL_DIMENSIONS; d++) {
      expect(new Set(points.map((p) => Math.floor(p[d]! * 64))).size).toBe(64);
    }
    expect(points[1]).toEqual(Array(MAX_SOBOL_DIMENSIONS).fill(0.5));
    // Row d: degree s, inner coefficients a; m_i odd and below 2^i.
    for (const [s = 0, a = 0, ...m] of SOBOL_DIRECTIONS) {
      expect(isPrimitive(s, (1 << s) | (a << 1) | 1)).toBe(true);
      m.forEach((mi, i) => {
        expect(mi % 2).toBe(1);
        expect(mi).toBeLessThan(2 ** (i + 1));
      });
    }
    expect(() => sobolPoint(1, 33)).toThrow(/at most 32 parameters/);
  });
  test("halton: radical inverses in the first primes", () => {
    expect(haltonPoint(1, 3)).toEqual([1 / 2, 1 / 3, 1 / 5]);
    const [x, y] = haltonPoint(5, 2);
    expect(x).toBe(5 / 8);
    expect(y).toBeCloseTo(7 / 9, 14);
  });
  test("sample: the active parameters by default, deterministic sequences that continue from `start`", () => {
    const random = sfc32(hashSeed("s"));
    const rows = sample(params, 4, { method: "sobol" }, random);
    expect(Object.keys(rows[0]!)).toEqual(["LR", "WD", "DEPTH", "BATCH", "WIN"]); // HEAD is frozen
    expect(sample(params, 2, { method: "sobol", start: 3 }, random)).toEqual(rows.slice(2));
    expect(rows[0]).toEqual({
      LR: fromUnit(spec("LR"), 0.5),
      WD: 0.25,
      DEPTH: fromUnit(spec("DEPTH"), 0.5),
      BATCH: fromUnit(spec("BATCH"), 0.5),
      WIN: "SL",
    });
    const lhs = sample(params, 10, { params: ["WD"] }, random);
    expect(new Set(lhs.map((r) => Math.floor((r.WD as number) / 0.05))).size).toBe(10);
    const uniform = sample(params, 50, { method: "uniform", params: ["HEAD"] }, random);
    expect(new Set(uniform.map((r) => r.HEAD))).toEqual(new Set([32, 64, 128]));
    expect(sample(params, 3, { method: "halton", params: ["WD"] }, random)).toEqual([
      { WD: 0.25 },
      { WD: 0.125 },
      { WD: 0.375 },
    ]);
  });
  test("neighbours at a scale: up and down per active parameter, moves that change nothing left out", () => {
    const at = { LR: 1, WD: 0.2, DEPTH: 4, BATCH: 4096, WIN: "L", HEAD: 64 };
    const n = neighbours(params, at, 0.1);
    // LR is at its top (no up move), WIN at its first choice (no down move), HEAD frozen.
    expect(n.map((c) => Object.keys(c).find((k) => c[k] !== at[k as keyof typeof at]))).toEqual([
      "LR",
      "WD",
      "WD",
      "DEPTH",
      "DEPTH",
      "BATCH",
      "BATCH",
      "WIN",
    ]);
    expect(n[3]).toEqual({ ...at, DEPTH: 5 });
    expect(neighbour(params, at, "BATCH", 1, 0.01).BATCH).toBe(8192); // a power of two moves ×2
    expect(neighbours(params, at, 0.1, ["HEAD"])).toHaveLength(2);
  });
  test("distance over chosen parameters", () => {
    expect(distance(params, { WD: 0, DEPTH: 1 }, { WD: 0.5, DEPTH: 12 }, ["WD"])).toBe(1);
    expect(distance(params, { WIN: "L" }, { WIN: "SL" }, ["WIN"])).toBe(0.5);
  });
});

test("names stay plain data in the new arguments: tolerances, bandit settings and sample params", () => {
  const s: CapabilitySession = {
    params: [{ name: "__proto__", kind: "float", min: 0, max: 1, default: 0.5, description: "odd name" }],
    iteration: 0,
    allowed: new Set(["tabu", "bandit", "space"]),
    declared: new Set(["tabu", "bandit", "space"]),
    budget: 100,
    random: sfc32(hashSeed("n")),
    calls: 0,
    state: { tabu: {}, bandit: {} },
  };
  // JSON.parse makes "__proto__" an own key, as the guest's arguments arrive.
  const call = (op: string, json: string) => invokeCapability(s, op, json);
  call("tabu.add", '["toString", {"__proto__": 0.5}, 5]');
  const tol = '{"params": {"__proto__": {"absolute": 0.2}}}';
  expect(call("tabu.contains", `["toString", {"__proto__": 0.65}, ${tol}]`)).toEqual({
    ok: true,
    value: true,
  });
  expect(call("tabu.contains", `["toString", {"__proto__": 0.75}, ${tol}]`)).toEqual({
    ok: true,
    value: false,
  });
  call("bandit.arms", '["__proto__", ["constructor"], {"initial": 3}]');
  expect(Object.keys(s.state.banditSettings ?? {})).toEqual(["__proto__"]);
  expect(call("bandit.stats", '["__proto__"]')).toMatchObject({
    ok: true,
    value: [{ arm: "constructor", estimate: 3 }],
  });
  const sampled = call("space.sample", '[2, {"method": "halton"}]') as { value: object[] };
  expect(sampled.value.map((c) => Object.keys(c))).toEqual([["__proto__"], ["__proto__"]]);
});
