// Points in the unit cube [0, 1)^d for space.sample: uniform (the call's seeded RNG), Latin
// hypercube (one point per stratum per dimension, seeded), and the low-discrepancy Halton and
// Sobol sequences (deterministic: point i is always the same, so a mechanism can draw a few points
// per iteration and carry on from `start` later).
import { CapabilityFault } from "./fault.ts";

export type SampleMethod = "uniform" | "lhs" | "sobol" | "halton";

/** Sobol direction numbers of Joe & Kuo (2008, new-joe-kuo-6.21201), dimensions 2–32: `s a m_1 … m_s`. */
export const SOBOL_DIRECTIONS: readonly (readonly number[])[] = [
  "1 0 1",
  "2 1 1 3",
  "3 1 1 3 1",
  "3 2 1 1 1",
  "4 1 1 1 3 3",
  "4 4 1 3 5 13",
  "5 2 1 1 5 5 17",
  "5 4 1 1 5 5 5",
  "5 7 1 1 7 11 19",
  "5 11 1 1 5 1 1",
  "5 13 1 1 1 3 11",
  "5 14 1 3 5 5 31",
  "6 1 1 3 3 9 7 49",
  "6 13 1 1 1 15 21 21",
  "6 16 1 3 1 13 27 49",
  "6 19 1 1 1 15 7 5",
  "6 22 1 3 1 15 13 25",
  "6 25 1 1 5 5 19 61",
  "7 1 1 3 7 11 23 15 103",
  "7 4 1 3 7 13 13 15 69",
  "7 7 1 1 3 13 7 35 63",
  "7 8 1 3 5 9 1 25 53",
  "7 14 1 3 1 13 9 35 107",
  "7 19 1 3 1 5 27 61 31",
  "7 21 1 1 5 11 19 41 61",
  "7 28 1 3 5 3 3 13 69",
  "7 31 1 1 7 13 1 19 1",
  "7 32 1 3 7 5 13 19 59",
  "7 37 1 1 3 9 25 29 41",
  "7 41 1 3 5 13 23 1 55",
  "7 42 1 3 7 3 13 59 17",
].map((row) => row.split(" ").map(Number));

/** Dimensions Sobol points are defined for here. */
export const MAX_SOBOL_DIMENSIONS = SOBOL_DIRECTIONS.length + 1;
const BITS = 32;

/** The 32 direction numbers of dimension `d` (0-based), as unsigned 32-bit integers. */
function directions(d: number): number[] {
  const v: number[] = [];
  if (d === 0) {
    for (let i = 0; i < BITS; i++) v.push(2 ** (BITS - 1 - i));
    return v;
  }
  const [s = 1, a = 0, ...m] = SOBOL_DIRECTIONS[d - 1]!;
  for (let i = 0; i < BITS; i++) {
    if (i < s) {
      v.push((m[i]! * 2 ** (BITS - 1 - i)) >>> 0);
      continue;
    }
    let x = (v[i - s]! ^ (v[i - s]! >>> s)) >>> 0;
    for (let k = 1; k < s; k++) if ((a >>> (s - 1 - k)) & 1) x = (x ^ v[i - k]!) >>> 0;
    v.push(x);
  }
  return v;
}

/** Point `index` (0 is the origin) of the Sobol sequence in `dims` dimensions. */
export function sobolPoint(index: number, dims: number): number[] {
  if (dims > MAX_SOBOL_DIMENSIONS) {
    throw new CapabilityFault(`sobol covers at most ${MAX_SOBOL_DIMENSIONS} parameters, got ${dims}`);
  }
  // Gray-code order: point i is the XOR of the direction numbers of the set bits of i ^ (i >> 1).
  const gray = index ^ Math.floor(index / 2);
  return Array.from({ length: dims }, (_, d) => {
    const v = directions(d);
    let x = 0;
    for (let bit = 0; bit < BITS && 2 ** bit <= gray; bit++) {
      if (Math.floor(gray / 2 ** bit) % 2 === 1) x = (x ^ v[bit]!) >>> 0;
    }
    return x / 2 ** BITS;
  });
}

const PRIMES: number[] = [];
function prime(k: number): number {
  for (let n = (PRIMES.at(-1) ?? 1) + 1; PRIMES.length <= k; n++) {
    if (PRIMES.every((p) => n % p !== 0)) PRIMES.push(n);
  }
  return PRIMES[k]!;
}

/** Point `index` (0 is the origin) of the Halton sequence: radical inverses in the first primes. */
export function haltonPoint(index: number, dims: number): number[] {
  return Array.from({ length: dims }, (_, d) => {
    const base = prime(d);
    let f = 1;
    let x = 0;
    for (let i = index; i > 0; i = Math.floor(i / base)) {
      f /= base;
      x += f * (i % base);
    }
    return x;
  });
}

/** n Latin-hypercube points: strata shuffled independently per dimension (Fisher–Yates). */
function latinHypercube(n: number, dims: number, random: () => number): number[][] {
  const points = Array.from({ length: n }, () => new Array<number>(dims).fill(0));
  for (let d = 0; d < dims; d++) {
    const strata = Array.from({ length: n }, (_, i) => i);
    for (let i = n - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [strata[i], strata[j]] = [strata[j]!, strata[i]!];
    }
    for (let i = 0; i < n; i++) points[i]![d] = (strata[i]! + random()) / n;
  }
  return points;
}

/**
 * n points of `method` in [0, 1)^dims. `start` is the sequence index of the first Sobol or Halton
 * point (index 0 is the all-zero corner, so the default is 1); uniform and LHS ignore it.
 */
export function unitPoints(
  method: SampleMethod,
  n: number,
  dims: number,
  random: () => number,
  start = 1,
): number[][] {
  switch (method) {
    case "uniform":
      return Array.from({ length: n }, () => Array.from({ length: dims }, () => random()));
    case "lhs":
      return latinHypercube(n, dims, random);
    case "sobol":
      return Array.from({ length: n }, (_, i) => sobolPoint(start + i, dims));
    case "halton":
      return Array.from({ length: n }, (_, i) => haltonPoint(start + i, dims));
  }
}
