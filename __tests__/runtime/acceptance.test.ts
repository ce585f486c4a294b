import { decide, estimateNoise } from "../../runtime/level1/acceptance.ts";

test("σ is the sample standard deviation of the baselines, floored", () => {
  const n = estimateNoise([2.0, 2.02, 1.98], 0);
  expect(n.mean).toBeCloseTo(2.0, 10);
  expect(n.sigma).toBeCloseTo(0.02, 10);
  expect(estimateNoise([2.0], 0.005).sigma).toBe(0.005);
  expect(() => estimateNoise([], 0)).toThrow(/no baseline/);
});

test("noise-aware keeps only gains beyond k·σ; strict keeps any gain", () => {
  const noise = { mean: 2, sigma: 0.01, n: 3 };
  expect(decide("noise-aware", 1.995, 2, noise, 1).kept).toBe(false);
  expect(decide("noise-aware", 1.985, 2, noise, 1).kept).toBe(true);
  expect(decide("noise-aware", 1.985, 2, noise, 2).kept).toBe(false);
  expect(decide("strict", 1.9999, 2, noise, 2).kept).toBe(true);
  expect(decide("strict", 2, 2, noise, 2).kept).toBe(false);
  expect(decide("noise-aware", 1.995, 2, noise, 1).reason).toMatch(/within noise/);
});
