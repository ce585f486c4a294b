// The statistics of a study: summaries with a percentile-bootstrap 95% CI, a two-sided
// permutation test on the difference of means (exact when the relabellings are few enough to
// enumerate, otherwise Monte Carlo), and the verdict rule: a difference is a gain only when its
// CI excludes zero AND p < 0.05. Everything random is seeded, so the same data give the same numbers.
import {
  mean,
  median,
  permutationTest as monteCarloPermutation,
  quantileSorted,
  sampleStandardDeviation,
} from "simple-statistics";
import { createRng } from "../rng.ts";

export const CI_LEVEL = 0.95;
export const ALPHA = 0.05;
const RESAMPLES = 10_000;
/** Relabellings enumerated exactly up to this many (C(16, 8) = 12870). */
const EXACT_LIMIT = 20_000;

export type Interval = readonly [number, number];

export interface Summary {
  readonly n: number;
  readonly mean: number | null;
  /** Sample standard deviation (n − 1); null for n < 2. */
  readonly sd: number | null;
  readonly median: number | null;
  /** Percentile bootstrap CI of the mean; null for n < 2. */
  readonly ci: Interval | null;
}

function percentileInterval(values: number[], level = CI_LEVEL): Interval {
  values.sort((a, b) => a - b);
  const tail = (1 - level) / 2;
  return [quantileSorted(values, tail), quantileSorted(values, 1 - tail)];
}

/** Percentile-bootstrap CI of the mean of `values` (null for fewer than 2 values). */
export function bootstrapMeanCI(
  values: readonly number[],
  seed: number | string,
  resamples = RESAMPLES,
): Interval | null {
  if (values.length < 2) return null;
  const rng = createRng("bootstrap-mean", seed);
  const means = Array.from({ length: resamples }, () => {
    let total = 0;
    for (let k = 0; k < values.length; k++) total += values[rng.int(values.length)] as number;
    return total / values.length;
  });
  return percentileInterval(means);
}

/** Percentile-bootstrap CI of mean(x) − mean(y), each sample resampled on its own. */
export function bootstrapDiffCI(
  x: readonly number[],
  y: readonly number[],
  seed: number | string,
  resamples = RESAMPLES,
): Interval | null {
  if (x.length < 2 || y.length < 2) return null;
  const rng = createRng("bootstrap-diff", seed);
  const resampleMean = (v: readonly number[]) => {
    let total = 0;
    for (let k = 0; k < v.length; k++) total += v[rng.int(v.length)] as number;
    return total / v.length;
  };
  return percentileInterval(Array.from({ length: resamples }, () => resampleMean(x) - resampleMean(y)));
}

export function summarize(values: readonly number[], seed: number | string): Summary {
  const n = values.length;
  return {
    n,
    mean: n > 0 ? mean([...values]) : null,
    sd: n > 1 ? sampleStandardDeviation([...values]) : null,
    median: n > 0 ? median([...values]) : null,
    ci: bootstrapMeanCI(values, seed),
  };
}

function binomial(n: number, k: number): number {
  let c = 1;
  for (let i = 1; i <= k; i++) c = (c * (n - k + i)) / i;
  return Math.round(c);
}

/** Calls `visit` with every k-subset of 0..n-1 (as a boolean mask). */
function forEachSubset(n: number, k: number, visit: (inX: readonly boolean[]) => void): void {
  const idx = Array.from({ length: k }, (_, i) => i);
  const mask = Array.from({ length: n }, (_, i) => i < k);
  for (;;) {
    visit(mask);
    let i = k - 1;
    while (i >= 0 && idx[i] === n - k + i) i--;
    if (i < 0) return;
    for (let j = i; j < k; j++) mask[idx[j] as number] = false;
    idx[i] = (idx[i] as number) + 1;
    for (let j = i + 1; j < k; j++) idx[j] = (idx[j - 1] as number) + 1;
    for (let j = i; j < k; j++) mask[idx[j] as number] = true;
  }
}

export interface TestResult {
  /** Two-sided p-value of the difference of means. */
  readonly p: number;
  /** Whether every relabelling was enumerated (else Monte Carlo with RESAMPLES draws). */
  readonly exact: boolean;
}

/** Two-sided permutation test of mean(x) − mean(y) (p ≥ 1/relabellings: never 0). */
export function permutationTest(
  x: readonly number[],
  y: readonly number[],
  seed: number | string,
): TestResult | null {
  if (x.length === 0 || y.length === 0) return null;
  const pooled = [...x, ...y];
  const observed = Math.abs(mean([...x]) - mean([...y]));
  // Equal differences up to rounding count as "as extreme" (identical samples give p = 1).
  const eps = 1e-12 * Math.max(1, ...pooled.map(Math.abs));
  const total = pooled.reduce((a, b) => a + b, 0);
  if (binomial(pooled.length, x.length) <= EXACT_LIMIT) {
    let extreme = 0;
    let count = 0;
    forEachSubset(pooled.length, x.length, (inX) => {
      let sx = 0;
      for (let i = 0; i < pooled.length; i++) if (inX[i]) sx += pooled[i] as number;
      const d = sx / x.length - (total - sx) / y.length;
      if (Math.abs(d) >= observed - eps) extreme++;
      count++;
    });
    return { p: extreme / count, exact: true };
  }
  const rng = createRng("permutation", seed);
  const share = monteCarloPermutation([...x], [...y], "two_side", RESAMPLES, () => rng.next());
  // simple-statistics returns extreme/k; (extreme + 1)/(k + 1) counts the observed labelling too.
  return { p: (share * RESAMPLES + 1) / (RESAMPLES + 1), exact: false };
}

/** "too few runs": fewer than two finished runs on a side, so nothing can be said either way. */
export type Verdict = "better" | "worse" | "no detectable difference" | "too few runs";

export interface Comparison {
  readonly against: string;
  readonly n: number;
  readonly nAgainst: number;
  /** mean(group) − mean(reference) of the improvement: positive = the group improved more. */
  readonly diff: number | null;
  readonly ci: Interval | null;
  readonly p: number | null;
  readonly exact: boolean;
  readonly verdict: Verdict;
}

/** The verdict rule: better/worse only when the CI excludes zero and p < ALPHA. */
export function verdict(ci: Interval | null, p: number | null): Verdict {
  if (ci === null || p === null || p >= ALPHA) return "no detectable difference";
  if (ci[0] > 0) return "better";
  if (ci[1] < 0) return "worse";
  return "no detectable difference";
}

/** Compare a group's improvements with a reference group's. */
export function compare(
  against: string,
  x: readonly number[],
  y: readonly number[],
  seed: number | string,
): Comparison {
  const test = permutationTest(x, y, seed);
  const ci = bootstrapDiffCI(x, y, seed);
  return {
    against,
    n: x.length,
    nAgainst: y.length,
    diff: x.length > 0 && y.length > 0 ? mean([...x]) - mean([...y]) : null,
    ci,
    p: test?.p ?? null,
    exact: test?.exact ?? false,
    verdict: x.length < 2 || y.length < 2 ? "too few runs" : verdict(ci, test?.p ?? null),
  };
}
