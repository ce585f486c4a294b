// The study's statistics against known answers: exact permutation p-values, bootstrap CIs that
// contain the mean and repeat for a seed, and the rule that a CI crossing zero is never a gain.
import {
  bootstrapDiffCI,
  bootstrapMeanCI,
  compare,
  permutationTest,
  summarize,
  verdict,
} from "../../../runtime/study/stats.ts";
import { comparison } from "../../../runtime/study/table.ts";

test("summary: mean, sample sd, median of known values", () => {
  const s = summarize([1, 2, 3, 4], 0);
  expect(s.n).toBe(4);
  expect(s.mean).toBe(2.5);
  expect(s.sd).toBeCloseTo(Math.sqrt(5 / 3), 12);
  expect(s.median).toBe(2.5);
  expect(summarize([7], 0)).toEqual({ n: 1, mean: 7, sd: null, median: 7, ci: null });
  expect(summarize([], 0).mean).toBeNull();
});

test("exact permutation test: clearly separated samples reach the smallest p, identical ones p = 1", () => {
  // 5 vs 5: C(10, 5) = 252 relabellings; only the observed one and its mirror are as extreme.
  const separated = permutationTest([1, 2, 3, 4, 5], [11, 12, 13, 14, 15], 1);
  expect(separated).toEqual({ p: 2 / 252, exact: true });
  expect(permutationTest([3, 3, 3], [3, 3, 3], 1)).toEqual({ p: 1, exact: true });
  // n = 3 per group can never be significant at 0.05: the smallest two-sided p is 2/20.
  expect(permutationTest([1, 2, 3], [10, 11, 12], 1)?.p).toBeCloseTo(0.1, 12);
});

test("Monte Carlo permutation test (too many relabellings to enumerate) is deterministic for a seed", () => {
  const x = Array.from({ length: 14 }, (_, i) => i * 0.1);
  const y = Array.from({ length: 14 }, (_, i) => 5 + i * 0.1);
  const a = permutationTest(x, y, "seed-a");
  expect(a?.exact).toBe(false);
  expect(a?.p).toBeLessThan(0.001);
  expect(permutationTest(x, y, "seed-a")).toEqual(a);
  const same = permutationTest(x, x, "seed-a");
  expect(same?.p).toBe(1);
});

test("bootstrap CI of the mean contains the mean, repeats for a seed, and narrows with more data", () => {
  const values = [0.9, 1.1, 1.0, 1.3, 0.7, 1.05, 0.95, 1.2];
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  const ci = bootstrapMeanCI(values, 42);
  expect(ci).not.toBeNull();
  const [lo, hi] = ci as [number, number];
  expect(lo).toBeLessThan(mean);
  expect(hi).toBeGreaterThan(mean);
  expect(bootstrapMeanCI(values, 42)).toEqual(ci);
  const more = bootstrapMeanCI([...values, ...values, ...values, ...values], 42) as [number, number];
  expect(more[1] - more[0]).toBeLessThan(hi - lo);
  expect(bootstrapMeanCI([1], 42)).toBeNull();
});

test("a difference whose CI crosses zero is never called a gain, whatever p says", () => {
  expect(verdict([-0.01, 0.2], 0.001)).toBe("no detectable difference");
  expect(verdict([0.01, 0.2], 0.2)).toBe("no detectable difference");
  expect(verdict([0.01, 0.2], 0.01)).toBe("better");
  expect(verdict([-0.2, -0.01], 0.01)).toBe("worse");
  expect(verdict(null, 0.01)).toBe("no detectable difference");
});

test("compare: separated groups are better with n stated; the difference CI is deterministic", () => {
  const x = [0.5, 0.6, 0.55, 0.52, 0.58, 0.61];
  const y = [0.1, 0.12, 0.09, 0.11, 0.1, 0.13];
  const c = compare("A", x, y, 7);
  expect(c).toMatchObject({ against: "A", n: 6, nAgainst: 6, exact: true, verdict: "better" });
  expect(c.diff).toBeCloseTo(3.36 / 6 - 0.65 / 6, 12);
  expect(c.ci?.[0]).toBeGreaterThan(0);
  expect(bootstrapDiffCI(x, y, 7)).toEqual(c.ci);
  expect(compare("A", [0.1, 0.2, 0.3], [0.1, 0.2, 0.3], 7).verdict).toBe("no detectable difference");
  // Fewer than two finished runs on a side (e.g. every run of a group failed): nothing to say.
  expect(compare("A", [], [0.1, 0.2, 0.3], 7).verdict).toBe("too few runs");
  expect(compare("A", [0.5], [0.1, 0.2, 0.3], 7).verdict).toBe("too few runs");
  expect(compare("A", [0.5, 0.6], [0.1], 7).verdict).toBe("too few runs");
  // Its cell: no p, so no Monte Carlo mark after it either.
  expect(comparison(compare("A", [], [0.1, 0.2, 0.3], 7))).toMatch(/ p n\/a n=0\/3: too few runs$/);
});
