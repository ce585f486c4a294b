import type { ParamSpec } from "../../mechanism-api/index.d.ts";
import {
  banditArms,
  banditReward,
  banditSelect,
  banditStats,
  sampleBeta,
} from "../../sandbox/capabilities/bandit.ts";
import {
  CapabilityFault,
  type CapabilitySession,
  invokeCapability,
} from "../../sandbox/capabilities/index.ts";
import { orthogonalArrayRows } from "../../sandbox/capabilities/orthogonal.ts";
import {
  clamp,
  distance,
  latinHypercube,
  neighbour,
  orthogonalArray,
} from "../../sandbox/capabilities/space.ts";
import { matches, tabuAdd, tabuClear, tabuContains, tabuSize } from "../../sandbox/capabilities/tabu.ts";
import { fromUnit as denormalise, toUnit as normalise } from "../../sandbox/param-scale.ts";
import { callSeed, hashSeed, sfc32 } from "../../sandbox/rng.ts";

const params: ParamSpec[] = [
  { name: "LR", kind: "float", min: 0.001, max: 1, log: true, default: 0.04, description: "log float" },
  { name: "WD", kind: "float", min: 0, max: 0.5, default: 0.2, description: "linear float" },
  { name: "DEPTH", kind: "int", min: 1, max: 12, default: 4, description: "int" },
  { name: "BATCH", kind: "int", min: 512, max: 1048576, log: true, default: 4096, description: "log int" },
  { name: "WIN", kind: "choice", choices: ["L", "SL", "SSL"], default: "L", description: "string choice" },
  { name: "HEAD", kind: "choice", choices: [32, 64, 128], default: 64, description: "numeric choice" },
];

describe("rng", () => {
  test("sfc32 is deterministic per seed and uniform-ish in [0, 1)", () => {
    const a = sfc32(hashSeed("x"));
    const b = sfc32(hashSeed("x"));
    const c = sfc32(hashSeed("y"));
    const xs = Array.from({ length: 1000 }, () => a());
    expect(Array.from({ length: 1000 }, () => b())).toEqual(xs);
    expect(c()).not.toBe(xs[0]);
    expect(xs.every((x) => x >= 0 && x < 1)).toBe(true);
    const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
    expect(mean).toBeGreaterThan(0.45);
    expect(mean).toBeLessThan(0.55);
  });
  test("call seeds differ by mechanism, iteration, hook and stream", () => {
    const base = callSeed(1, "m", 3, "filter", "guest");
    expect(callSeed(1, "m", 3, "filter", "guest")).toEqual(base);
    for (const other of [
      callSeed(2, "m", 3, "filter", "guest"),
      callSeed(1, "n", 3, "filter", "guest"),
      callSeed(1, "m", 4, "filter", "guest"),
      callSeed(1, "m", 3, "observe", "guest"),
      callSeed(1, "m", 3, "filter", "capabilities"),
    ]) {
      expect(other).not.toEqual(base);
    }
  });
});

describe("space helpers", () => {
  test("normalise/denormalise use the log scale for log parameters", () => {
    const lr = params[0]!;
    expect(normalise(lr, 0.001)).toBe(0);
    expect(normalise(lr, 1)).toBe(1);
    expect(normalise(lr, Math.sqrt(0.001))).toBeCloseTo(0.5, 10);
    expect(denormalise(lr, 0.5)).toBeCloseTo(Math.sqrt(0.001), 6); // 6 significant digits
    expect(normalise(params[1]!, 0.25)).toBeCloseTo(0.5, 10);
  });
  test("clamp respects bounds, integrality and choices", () => {
    expect(clamp(params, "LR", 5)).toBe(1);
    expect(clamp(params, "LR", -1)).toBe(0.001);
    expect(clamp(params, "DEPTH", 3.6)).toBe(4);
    expect(clamp(params, "DEPTH", 99)).toBe(12);
    expect(clamp(params, "HEAD", 70)).toBe(64);
    expect(clamp(params, "WIN", "SL")).toBe("SL");
  });
  test("clamp rejects unknown parameters, non-choices and non-numbers", () => {
    expect(() => clamp(params, "NOPE", 1)).toThrow(CapabilityFault);
    expect(() => clamp(params, "WIN", "XXL")).toThrow(/not one of the choices/);
    expect(() => clamp(params, "LR", "fast")).toThrow(/finite number/);
  });
  test("neighbour moves one step on the (log) range, at least one unit for ints, clamps at the edges", () => {
    const up = neighbour(params, { LR: 0.01 }, "LR", 1);
    expect(normalise(params[0]!, up.LR as number) - normalise(params[0]!, 0.01)).toBeCloseTo(0.1, 5);
    expect(neighbour(params, { DEPTH: 4 }, "DEPTH", 1, 0.01).DEPTH).toBe(5);
    expect(neighbour(params, { DEPTH: 12 }, "DEPTH", 1).DEPTH).toBe(12);
    expect(neighbour(params, { WIN: "L" }, "WIN", 1).WIN).toBe("SL");
    expect(neighbour(params, { WIN: "L" }, "WIN", -1).WIN).toBe("L");
    // Missing values start from the default; other keys are kept.
    expect(neighbour(params, { X: 1 }, "HEAD", 1)).toEqual({ X: 1, HEAD: 128 });
  });
  test("distance is the RMS of per-parameter distances, in [0, 1]", () => {
    expect(distance(params, {}, {})).toBe(0);
    const far = distance(
      params,
      { LR: 0.001, WD: 0, DEPTH: 1, BATCH: 512, WIN: "L", HEAD: 32 },
      { LR: 1, WD: 0.5, DEPTH: 12, BATCH: 1048576, WIN: "SSL", HEAD: 128 },
    );
    expect(far).toBeCloseTo(1, 10);
    expect(distance(params, { WD: 0 }, { WD: 0.5 })).toBeCloseTo(Math.sqrt(1 / 6), 10);
  });
  test("latinHypercube puts exactly one point in each stratum of each parameter", () => {
    const random = sfc32(hashSeed("lhs"));
    const rows = latinHypercube(params, 8, ["WD", "LR"], random);
    expect(rows).toHaveLength(8);
    for (const name of ["WD", "LR"]) {
      const strata = rows.map((r) =>
        Math.floor(normalise(params.find((p) => p.name === name)!, r[name] as number) * 8),
      );
      expect(new Set(strata).size).toBe(8);
    }
    expect(Object.keys(rows[0]!).sort()).toEqual(["LR", "WD"]);
    expect(latinHypercube(params, 5, undefined, sfc32(hashSeed("lhs")))).toEqual(
      latinHypercube(params, 5, undefined, sfc32(hashSeed("lhs"))),
    );
    expect(() => latinHypercube(params, 3, ["WD", "WD"], random)).toThrow(/twice/);
  });
  test("orthogonal arrays are balanced and pairwise orthogonal (L4, L8, L16, L9, L27)", () => {
    for (const [factors, levels, runs] of [
      [3, 2, 4],
      [7, 2, 8],
      [15, 2, 16],
      [4, 3, 9],
      [13, 3, 27],
      [5, 3, 27],
      [4, 2, 8],
    ] as const) {
      const rows = orthogonalArrayRows(factors, levels);
      expect(rows).toHaveLength(runs);
      for (let i = 0; i < factors; i++) {
        for (let j = i + 1; j < factors; j++) {
          const counts = new Map<string, number>();
          for (const r of rows) counts.set(`${r[i]},${r[j]}`, (counts.get(`${r[i]},${r[j]}`) ?? 0) + 1);
          expect(counts.size).toBe(levels * levels);
          expect(new Set(counts.values()).size).toBe(1);
        }
      }
    }
    expect(() => orthogonalArrayRows(16, 2)).toThrow(/at most 15/);
    expect(() => orthogonalArrayRows(14, 3)).toThrow(/at most 13/);
    expect(() => orthogonalArrayRows(0, 2)).toThrow(CapabilityFault);
  });
  test("orthogonalArray maps levels to low / mid / high", () => {
    const rows = orthogonalArray(params, ["WD", "WIN", "LR"], 3);
    expect(rows).toHaveLength(9);
    expect(new Set(rows.map((r) => r.WD))).toEqual(new Set([0, 0.25, 0.5]));
    expect(new Set(rows.map((r) => r.WIN))).toEqual(new Set(["L", "SL", "SSL"]));
    const lrs = [...new Set(rows.map((r) => r.LR as number))].sort((a, b) => a - b);
    expect(lrs[1]).toBeCloseTo(Math.sqrt(0.001), 6);
    expect(new Set(orthogonalArray(params, ["DEPTH"], 2).map((r) => r.DEPTH))).toEqual(new Set([1, 12]));
  });
});

describe("tabu lists", () => {
  test("entries expire `tenure` iterations after they were added", () => {
    let lists = tabuAdd({}, 10, "recent", { WD: 0.2 }, 3);
    expect(tabuSize(lists, 10, "recent")).toBe(1);
    expect(tabuContains(lists, params, 12, "recent", { WD: 0.2 })).toBe(true);
    expect(tabuContains(lists, params, 13, "recent", { WD: 0.2 })).toBe(false);
    lists = tabuAdd(lists, 13, "recent", { WD: 0.4 }, 1);
    // Adding purges expired entries.
    expect(lists.recent).toHaveLength(1);
    expect(tabuClear(lists, "recent")).toEqual({});
  });
  test("tolerance is a fraction of the range, on the log scale for log parameters", () => {
    expect(matches(params, { WD: 0.2 }, { WD: 0.22 })).toBe(true); // 0.04 of the range
    expect(matches(params, { WD: 0.2 }, { WD: 0.23 })).toBe(false); // 0.06
    expect(matches(params, { WD: 0.2 }, { WD: 0.23 }, 0.1)).toBe(true);
    // 0.01 -> 0.0141 is 0.05 of the log range (three decades).
    expect(matches(params, { LR: 0.01 }, { LR: 0.01 * 10 ** 0.14 })).toBe(true);
    expect(matches(params, { LR: 0.01 }, { LR: 0.01 * 10 ** 0.16 })).toBe(false);
    expect(matches(params, { WIN: "L" }, { WIN: "SL" })).toBe(false);
    expect(matches(params, { WD: 0.2, X: "a" }, { WD: 0.2, X: "b" })).toBe(false);
    // Only parameters present in both count; none in common never matches.
    expect(matches(params, { WD: 0.2, DEPTH: 1 }, { WD: 0.2 })).toBe(true);
    expect(matches(params, { WD: 0.2 }, { DEPTH: 3 })).toBe(false);
  });
  test("lists are bounded", () => {
    let lists = {};
    for (let i = 0; i < 64; i++) lists = tabuAdd(lists, 0, `l${i}`, { WD: 0 }, 5);
    expect(() => tabuAdd(lists, 0, "one-more", { WD: 0 }, 5)).toThrow(/at most 64/);
    let one = {};
    for (let i = 0; i < 1005; i++) one = tabuAdd(one, 0, "l", { WD: i / 10000 }, 5);
    expect(tabuSize(one, 0, "l")).toBe(1000);
  });
  test("an entry's config is bounded in size (the lists are guest-filled, host-kept)", () => {
    // n keys of 190 characters with 190-character values: 386 characters of JSON per key.
    const config = (n: number) =>
      Object.fromEntries(Array.from({ length: n }, (_, i) => [`${i}`.padEnd(190, "k"), "v".repeat(190)]));
    expect(JSON.stringify(config(42)).length).toBeLessThanOrEqual(16 * 1024);
    expect(tabuSize(tabuAdd({}, 0, "l", config(42), 5), 0, "l")).toBe(1);
    expect(() => tabuAdd({}, 0, "l", config(43), 5)).toThrow(
      /tabu entry is 16599 characters as JSON, over 16384/,
    );
  });
});

describe("bandits", () => {
  const fresh = () => banditArms({}, "b", ["a", "b", "c"]);
  test("arms() is idempotent and keeps statistics", () => {
    let bandits = banditReward(fresh(), "b", "a", 1);
    bandits = banditArms(bandits, "b", ["a", "d"]);
    expect(banditStats(bandits, "b")).toEqual([
      { arm: "a", pulls: 1, weight: 1, meanReward: 1, estimate: 1 },
      { arm: "b", pulls: 0, weight: 0, meanReward: 0, estimate: 0 },
      { arm: "c", pulls: 0, weight: 0, meanReward: 0, estimate: 0 },
      { arm: "d", pulls: 0, weight: 0, meanReward: 0, estimate: 0 },
    ]);
  });
  test("UCB1 tries every arm first, then trades mean against the exploration bonus", () => {
    const random = sfc32(hashSeed("b"));
    let bandits = fresh();
    expect(banditSelect(bandits, "b", "ucb1", {}, random)).toBe("a");
    bandits = banditReward(bandits, "b", "a", 0.9);
    expect(banditSelect(bandits, "b", "ucb1", {}, random)).toBe("b");
    bandits = banditReward(banditReward(bandits, "b", "b", 0.1), "b", "c", 0.2);
    expect(banditSelect(bandits, "b", "ucb1", {}, random)).toBe("a");
    for (let i = 0; i < 30; i++) bandits = banditReward(bandits, "b", "a", 0.9);
    // With c = 0 UCB1 is greedy; with a huge c a least-pulled arm wins (c: mean 0.2 beats b: 0.1).
    expect(banditSelect(bandits, "b", "ucb1", { c: 0 }, random)).toBe("a");
    expect(banditSelect(bandits, "b", "ucb1", { c: 100 }, random)).toBe("c");
  });
  test("ε-greedy explores with probability ε on the seeded RNG", () => {
    let bandits = fresh();
    for (const [arm, r] of [
      ["a", 0.1],
      ["b", 0.9],
      ["c", 0.2],
    ] as const) {
      bandits = banditReward(bandits, "b", arm, r);
    }
    const greedy = sfc32(hashSeed("e"));
    expect(
      Array.from({ length: 50 }, () => banditSelect(bandits, "b", "epsilon-greedy", { epsilon: 0 }, greedy)),
    ).toEqual(Array(50).fill("b"));
    const explore = sfc32(hashSeed("e"));
    const picks = Array.from({ length: 300 }, () =>
      banditSelect(bandits, "b", "epsilon-greedy", { epsilon: 1 }, explore),
    );
    expect(new Set(picks)).toEqual(new Set(["a", "b", "c"]));
    const again = sfc32(hashSeed("e"));
    expect(
      Array.from({ length: 300 }, () => banditSelect(bandits, "b", "epsilon-greedy", { epsilon: 1 }, again)),
    ).toEqual(picks);
  });
  test("Thompson sampling favours the better arm and clips rewards to [0, 1]", () => {
    let bandits = banditArms({}, "t", ["good", "bad"]);
    for (let i = 0; i < 40; i++) {
      bandits = banditReward(bandits, "t", "good", 5); // clipped: counts as 1
      bandits = banditReward(bandits, "t", "bad", -3); // clipped: counts as 0
    }
    const random = sfc32(hashSeed("t"));
    const picks = Array.from({ length: 200 }, () => banditSelect(bandits, "t", "thompson", {}, random));
    expect(picks.filter((p) => p === "good").length).toBeGreaterThan(190);
  });
  test("Beta samples have the right mean", () => {
    const random = sfc32(hashSeed("beta"));
    const xs = Array.from({ length: 4000 }, () => sampleBeta(3, 7, random));
    expect(xs.every((x) => x > 0 && x < 1)).toBe(true);
    expect(xs.reduce((s, x) => s + x, 0) / xs.length).toBeCloseTo(0.3, 1);
  });
  test("bad use is a clear fault", () => {
    const random = sfc32(hashSeed("x"));
    expect(() => banditSelect({}, "none", "ucb1", {}, random)).toThrow(/no arms/);
    expect(() => banditReward(fresh(), "b", "zzz", 1)).toThrow(/no arm "zzz"/);
    expect(() => banditReward(fresh(), "b", "a", Number.NaN)).toThrow(/finite/);
    expect(() => banditReward(fresh(), "b", "a", 1e308)).toThrow(/\[-1000000, 1000000\]/);
    expect(() => banditReward(fresh(), "b", "a", -1.000001e6)).toThrow(/finite number in/);
    expect(banditStats(banditReward(fresh(), "b", "a", -1e6), "b")[0]).toEqual({
      arm: "a",
      pulls: 1,
      weight: 1,
      meanReward: -1e6,
      estimate: -1e6,
    });
    expect(() =>
      banditArms(
        {},
        "b",
        Array.from({ length: 257 }, (_, i) => `a${i}`),
      ),
    ).toThrow(/256 arms/);
  });
});

describe("capability dispatcher", () => {
  const session = (overrides: Partial<CapabilitySession> = {}): CapabilitySession => ({
    params,
    iteration: 5,
    allowed: new Set(["tabu", "space"]),
    declared: new Set(["tabu", "space", "bandit"]),
    budget: 3,
    random: sfc32(hashSeed("d")),
    calls: 0,
    state: { tabu: {}, bandit: {} },
    ...overrides,
  });
  test("applies an operation and updates the session state", () => {
    const s = session();
    expect(invokeCapability(s, "tabu.add", JSON.stringify(["l", { WD: 0.1 }, 2]))).toEqual({
      ok: true,
      value: null,
    });
    expect(s.state.tabu.l).toEqual([{ config: { WD: 0.1 }, expires: 7, added: 5 }]);
    expect(invokeCapability(s, "tabu.contains", JSON.stringify(["l", { WD: 0.1 }]))).toEqual({
      ok: true,
      value: true,
    });
    expect(s.calls).toBe(2);
  });
  test("undeclared or ungranted capabilities are denied, naming why", () => {
    const s = session({ declared: new Set(["tabu"]), allowed: new Set(["tabu"]) });
    const denied = invokeCapability(s, "space.clamp", JSON.stringify(["WD", 1]));
    expect(denied).toMatchObject({ ok: false, code: "capability-denied" });
    expect(denied.ok ? "" : denied.message).toMatch(/does not declare/);
    const ungranted = invokeCapability(session(), "bandit.arms", JSON.stringify(["b", ["x"]]));
    expect(ungranted).toMatchObject({ ok: false, code: "capability-denied" });
    expect(ungranted.ok ? "" : ungranted.message).toMatch(/policy does not grant/);
  });
  test("the per-call budget is enforced", () => {
    const s = session();
    for (let i = 0; i < 3; i++) expect(invokeCapability(s, "tabu.size", '["l"]').ok).toBe(true);
    expect(invokeCapability(s, "tabu.size", '["l"]')).toMatchObject({ ok: false, code: "capability-budget" });
  });
  test.each([
    ["unknown op", "tabu.explode", "[]"],
    ["not a string op", 42, "[]"],
    ["non-JSON args", "tabu.size", "{nope"],
    ["args not a string", "tabu.size", 7],
    ["wrong arity", "tabu.add", '["l", {}]'],
    ["wrong type", "tabu.add", '["l", {"WD": 0.1}, "forever"]'],
    ["negative tenure", "tabu.add", '["l", {"WD": 0.1}, -1]'],
    ["tolerance > 1", "tabu.contains", '["l", {}, 2]'],
    ["config with an object value", "tabu.contains", '["l", {"WD": {"x": 1}}]'],
    ["extra argument", "tabu.size", '["l", 1]'],
    ["bad direction", "space.neighbour", '[{}, "WD", 2]'],
    ["unknown parameter", "space.clamp", '["NOPE", 1]'],
    ["too many LHS points", "space.latinHypercube", "[100000]"],
    ["bad levels", "space.orthogonalArray", '[["WD"], 4]'],
    ["huge args", "tabu.size", JSON.stringify(["x".repeat(300000)])],
    // Two of these used to sum to Infinity, which serialises to null and killed the sandbox child.
    ["a reward of 1e308", "bandit.reward", '["b", "a", 1e308]'],
    ["a reward below -1e6", "bandit.reward", '["b", "a", -2e6]'],
  ])("bad input is a capability-error: %s", (_label, op, args) => {
    const s = session({ budget: 100, allowed: new Set(["tabu", "space", "bandit"]) });
    s.state.bandit = banditArms({}, "b", ["a"]);
    const result = invokeCapability(s, op, args);
    expect(result).toMatchObject({ ok: false, code: "capability-error" });
    expect(result.ok ? "" : result.message.length).toBeGreaterThan(5);
  });
});

describe("names are plain data: Object.prototype's member names are ordinary names", () => {
  const NAMES = ["toString", "constructor", "__proto__", "hasOwnProperty", "valueOf"] as const;
  const session = (): CapabilitySession => ({
    params,
    iteration: 5,
    allowed: new Set(["tabu", "space", "bandit"]),
    declared: new Set(["tabu", "space", "bandit"]),
    budget: 1000,
    random: sfc32(hashSeed("names")),
    calls: 0,
    state: { tabu: {}, bandit: {} },
  });
  const call = (s: CapabilitySession, op: string, ...args: unknown[]) =>
    invokeCapability(s, op, JSON.stringify(args));
  /** What the state is after the trip through the host and back (JSON both ways). */
  const roundTrip = <T>(value: T): T => JSON.parse(JSON.stringify(value)) as T;

  test.each(NAMES)("a tabu list named %s", (name) => {
    const s = session();
    expect(call(s, "tabu.size", name)).toEqual({ ok: true, value: 0 });
    expect(call(s, "tabu.contains", name, { WD: 0.1 })).toEqual({ ok: true, value: false });
    expect(call(s, "tabu.add", name, { WD: 0.1 }, 3)).toEqual({ ok: true, value: null });
    expect(call(s, "tabu.add", name, { WD: 0.3 }, 3)).toEqual({ ok: true, value: null });
    expect(Object.hasOwn(s.state.tabu, name)).toBe(true);
    expect(Object.getPrototypeOf(s.state.tabu)).toBe(Object.prototype);
    s.state.tabu = roundTrip(s.state.tabu);
    expect(call(s, "tabu.size", name)).toEqual({ ok: true, value: 2 });
    expect(call(s, "tabu.contains", name, { WD: 0.1 })).toEqual({ ok: true, value: true });
    expect(call(s, "tabu.clear", name)).toEqual({ ok: true, value: null });
    expect(Object.hasOwn(s.state.tabu, name)).toBe(false);
    expect(call(s, "tabu.size", name)).toEqual({ ok: true, value: 0 });
  });

  test.each(NAMES)("a bandit named %s, with arms named like Object.prototype's members", (name) => {
    const s = session();
    expect(call(s, "bandit.stats", name)).toMatchObject({ ok: false, code: "capability-error" });
    expect(call(s, "bandit.reward", name, "toString", 1)).toMatchObject({
      ok: false,
      code: "capability-error",
      message: `bandit.reward: bandit "${name}" has no arm "toString"`,
    });
    expect(call(s, "bandit.arms", name, [...NAMES])).toEqual({ ok: true, value: null });
    s.state.bandit = roundTrip(s.state.bandit);
    for (const arm of NAMES)
      expect(call(s, "bandit.reward", name, arm, 0.5)).toEqual({ ok: true, value: null });
    expect(call(s, "bandit.reward", name, "__proto__", 1)).toEqual({ ok: true, value: null });
    s.state.bandit = roundTrip(s.state.bandit);
    const stats = call(s, "bandit.stats", name);
    expect(stats).toEqual({
      ok: true,
      value: NAMES.map((arm) => ({
        arm,
        pulls: arm === "__proto__" ? 2 : 1,
        weight: arm === "__proto__" ? 2 : 1,
        meanReward: arm === "__proto__" ? 0.75 : 0.5,
        estimate: arm === "__proto__" ? 0.75 : 0.5,
      })),
    });
    expect(call(s, "bandit.select", name, "ucb1")).toMatchObject({ ok: true });
    expect(Object.keys(s.state.bandit)).toEqual([name]);
    expect(Object.keys(s.state.bandit[name]!)).toEqual([...NAMES]);
  });

  test.each(NAMES)("a parameter named %s that the space does not have: capability-error", (name) => {
    for (const [op, args] of [
      ["space.clamp", [name, 1]],
      ["space.neighbour", [{ WD: 0.1 }, name, 1]],
      ["space.latinHypercube", [2, [name]]],
      ["space.orthogonalArray", [[name], 2]],
    ] as const) {
      const result = call(session(), op, ...args);
      expect(result).toEqual({
        ok: false,
        code: "capability-error",
        message: `${op}: unknown parameter "${name}"`,
      });
    }
  });

  test("a space whose parameters have such names works, and configs never read inherited members", () => {
    const odd: ParamSpec[] = NAMES.map((name) => ({
      name,
      kind: "float",
      min: 0,
      max: 1,
      default: 0.5,
      description: "odd name",
    }));
    const s = { ...session(), params: odd };
    const rows = call(s, "space.latinHypercube", 3);
    expect(rows.ok).toBe(true);
    for (const row of (rows.ok ? rows.value : []) as Record<string, number>[]) {
      expect(Object.keys(row)).toEqual([...NAMES]);
      expect(Object.getPrototypeOf(row)).toBe(Object.prototype);
    }
    const array = call(s, "space.orthogonalArray", [...NAMES], 2);
    expect(array.ok && (array.value as object[]).every((r) => Object.keys(r).length === NAMES.length)).toBe(
      true,
    );
    // A config without the parameter: the default, not Object.prototype.constructor.
    expect(call(s, "space.neighbour", {}, "constructor", 1)).toEqual({
      ok: true,
      value: { constructor: 0.6 },
    });
    expect(call(s, "space.distance", {}, {})).toEqual({ ok: true, value: 0 });
  });
});
