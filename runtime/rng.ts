// Seeded randomness for the runtime's non-LLM deciders (offline proposer, synthetic objective,
// regression harness). It reuses the sandbox's generator (sfc32 over a cyrb128 string hash) so the
// whole project has one RNG; this module only adds conveniences on top.
import { hashSeed, sfc32 } from "../sandbox/rng.ts";

export interface Rng {
  /** Uniform [0, 1). */
  next(): number;
  /** Uniform integer in [0, n). */
  int(n: number): number;
  /** One element of a non-empty array. */
  pick<T>(items: readonly T[]): T;
  /** Standard normal (Box–Muller). */
  normal(): number;
}

/**
 * A generator seeded from any sequence of numbers and strings: the same parts give the same
 * stream, e.g. `createRng("proposer", runSeed, iteration, attempt)`.
 */
export function createRng(...parts: readonly (number | string)[]): Rng {
  const next = sfc32(hashSeed(parts.map(String).join("|")));
  return {
    next,
    int(n: number): number {
      if (!Number.isInteger(n) || n <= 0) throw new RangeError(`int(n) needs a positive integer, got ${n}`);
      return Math.floor(next() * n);
    },
    pick<T>(items: readonly T[]): T {
      if (items.length === 0) throw new RangeError("pick() from an empty array");
      return items[Math.floor(next() * items.length)] as T;
    },
    normal(): number {
      // 1 - u keeps the logarithm's argument in (0, 1].
      const u = 1 - next();
      const v = next();
      return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
    },
  };
}
