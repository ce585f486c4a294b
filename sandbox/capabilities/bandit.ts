// Multi-armed bandits over host-kept { pulls, rewardSum } per arm, on the call's seeded RNG.
// Arms never pulled are tried first (in declaration order) by UCB1 and ε-greedy. Thompson
// sampling draws from Beta(1 + s, 1 + pulls − s) with s = rewardSum clipped to [0, pulls], which
// equals clipping each reward to [0, 1] when rewards lie in that range.
import type { ArmStats, BanditPolicy } from "../../mechanism-api/index.d.ts";
import { MAX_REWARD } from "../../mechanism-api/schemas.ts";
import type { CapabilityState } from "../types.ts";
import { own, withEntry } from "./dict.ts";
import { CapabilityFault } from "./fault.ts";

export const MAX_BANDITS = 64;
export const MAX_ARMS = 256;

type Bandits = CapabilityState["bandit"];
type Arms = Bandits[string];

export function banditArms(bandits: Bandits, name: string, ids: readonly string[]): Bandits {
  if (!Object.hasOwn(bandits, name) && Object.keys(bandits).length >= MAX_BANDITS) {
    throw new CapabilityFault(`at most ${MAX_BANDITS} bandits`);
  }
  const arms = new Map(Object.entries(own(bandits, name) ?? {}));
  for (const id of ids) if (!arms.has(id)) arms.set(id, { pulls: 0, rewardSum: 0 });
  if (arms.size > MAX_ARMS) throw new CapabilityFault(`at most ${MAX_ARMS} arms per bandit`);
  // Object.fromEntries defines own properties, "__proto__" included.
  return withEntry(bandits, name, Object.fromEntries(arms));
}

function armsOf(bandits: Bandits, name: string): [string, Arms[string]][] {
  const arms = own(bandits, name);
  const entries = arms ? Object.entries(arms) : [];
  if (entries.length === 0) throw new CapabilityFault(`bandit "${name}" has no arms: call arms() first`);
  return entries;
}

function argmax(values: readonly number[]): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i]! > values[best]!) best = i;
  return best;
}

export function banditSelect(
  bandits: Bandits,
  name: string,
  policy: BanditPolicy,
  options: { epsilon?: number; c?: number },
  random: () => number,
): string {
  const arms = armsOf(bandits, name);
  if (policy === "thompson") {
    const draws = arms.map(([, a]) => {
      const s = Math.min(a.pulls, Math.max(0, a.rewardSum));
      return sampleBeta(1 + s, 1 + a.pulls - s, random);
    });
    return arms[argmax(draws)]![0];
  }
  const untried = arms.find(([, a]) => a.pulls === 0);
  if (untried) return untried[0];
  if (policy === "ucb1") {
    const c = options.c ?? Math.SQRT2;
    const total = arms.reduce((n, [, a]) => n + a.pulls, 0);
    return arms[
      argmax(arms.map(([, a]) => a.rewardSum / a.pulls + c * Math.sqrt(Math.log(total) / a.pulls)))
    ]![0];
  }
  const epsilon = options.epsilon ?? 0.1;
  if (random() < epsilon) return arms[Math.floor(random() * arms.length)]![0];
  return arms[argmax(arms.map(([, a]) => a.rewardSum / a.pulls))]![0];
}

export function banditReward(bandits: Bandits, name: string, arm: string, value: number): Bandits {
  const arms = own(bandits, name);
  const current = arms && own(arms, arm);
  if (!arms || !current) throw new CapabilityFault(`bandit "${name}" has no arm "${arm}"`);
  // Bounded: a sum of huge rewards would overflow to Infinity, which JSON cannot carry back.
  if (!Number.isFinite(value) || Math.abs(value) > MAX_REWARD) {
    throw new CapabilityFault(`a reward must be a finite number in [-${MAX_REWARD}, ${MAX_REWARD}]`);
  }
  const updated = { pulls: current.pulls + 1, rewardSum: current.rewardSum + value };
  return withEntry(bandits, name, withEntry(arms, arm, updated));
}

export function banditStats(bandits: Bandits, name: string): ArmStats[] {
  return armsOf(bandits, name).map(([arm, a]) => ({
    arm,
    pulls: a.pulls,
    meanReward: a.pulls === 0 ? 0 : a.rewardSum / a.pulls,
  }));
}

/** Standard normal by Box–Muller (one of the pair). */
function sampleNormal(random: () => number): number {
  const u = 1 - random(); // (0, 1]
  const v = random();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}

/** Gamma(shape, 1) by Marsaglia–Tsang; shape ≥ 1 here (Beta parameters are ≥ 1). */
function sampleGamma(shape: number, random: () => number): number {
  const d = shape - 1 / 3;
  const c = 1 / Math.sqrt(9 * d);
  for (;;) {
    let x: number;
    let v: number;
    do {
      x = sampleNormal(random);
      v = 1 + c * x;
    } while (v <= 0);
    v = v * v * v;
    const u = 1 - random();
    if (u < 1 - 0.0331 * x ** 4 || Math.log(u) < 0.5 * x * x + d * (1 - v + Math.log(v))) return d * v;
  }
}

export function sampleBeta(alpha: number, beta: number, random: () => number): number {
  const x = sampleGamma(alpha, random);
  const y = sampleGamma(beta, random);
  return x / (x + y);
}
