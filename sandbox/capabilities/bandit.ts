// Multi-armed bandits over host-kept statistics per arm, on the call's seeded RNG.
//
// An arm keeps { pulls, rewardSum } and, when its bandit discounts, `weight` (the discounted pull
// count). With discount γ every reward first multiplies all arms' rewardSum and weight by γ, so
// old rewards fade (discounted UCB). With an `initial` value every arm starts with one pseudo-pull
// of that reward (optimistic initial values), so no arm is forced first. Without it, UCB1 and
// ε-greedy try unpulled arms first, in declaration order.
import type {
  ArmStats,
  BanditPolicy,
  BanditSelectOptions,
  BanditSettings,
} from "../../mechanism-api/index.d.ts";
import type { CapabilityState } from "../types.ts";
import { own, withEntry } from "./dict.ts";
import { CapabilityFault } from "./fault.ts";
import { MAX_REWARD } from "./schemas.ts";

export const MAX_BANDITS = 64;
export const MAX_ARMS = 256;

type Bandits = CapabilityState["bandit"];
type Arm = Bandits[string][string];

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

function armsOf(bandits: Bandits, name: string): [string, Arm][] {
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

/** Pulls as the estimates count them: discounted when the bandit discounts, plus the pseudo-pull of `initial`. */
function effective(arm: Arm, initial: number | undefined): { n: number; sum: number } {
  const n = arm.weight ?? arm.pulls;
  return initial === undefined ? { n, sum: arm.rewardSum } : { n: n + 1, sum: arm.rewardSum + initial };
}

/** The value the greedy policies rank an arm by (its pseudo-pull included); 0 for an arm with no data. */
function estimate(arm: Arm, initial: number | undefined): number {
  const { n, sum } = effective(arm, initial);
  return n > 0 ? sum / n : 0;
}

export function banditSelect(
  bandits: Bandits,
  name: string,
  policy: BanditPolicy,
  options: BanditSelectOptions,
  random: () => number,
  settings: BanditSettings = {},
): string {
  const arms = armsOf(bandits, name);
  const { initial } = settings;
  const pick = (scores: readonly number[]) => arms[argmax(scores)]![0];
  if (policy === "thompson") {
    return pick(
      arms.map(([, a]) => {
        const n = a.weight ?? a.pulls;
        const s = Math.min(n, Math.max(0, a.rewardSum));
        return sampleBeta(1 + s, 1 + n - s, random);
      }),
    );
  }
  if (policy === "thompson-gaussian") {
    const sigma = options.sigma ?? 1;
    return pick(
      arms.map(([, a]) => {
        // Normal prior N(initial ?? 0, σ²) as one pseudo-observation, known reward noise σ.
        const { n, sum } = effective(a, initial ?? 0);
        return sum / n + (sigma / Math.sqrt(n)) * sampleNormal(random);
      }),
    );
  }
  if (initial === undefined) {
    const untried = arms.find(([, a]) => a.pulls === 0);
    if (untried) return untried[0];
  }
  if (policy === "ucb1") {
    const c = options.c ?? Math.SQRT2;
    const total = arms.reduce((n, [, a]) => n + effective(a, initial).n, 0);
    return pick(
      arms.map(
        ([, a]) =>
          estimate(a, initial) + c * Math.sqrt(Math.log(Math.max(1, total)) / effective(a, initial).n),
      ),
    );
  }
  if (random() < epsilonNow(arms, options)) return arms[Math.floor(random() * arms.length)]![0];
  return pick(arms.map(([, a]) => estimate(a, initial)));
}

/** ε after t rewards: max(minEpsilon, epsilon · decay^t), t counted over every arm. */
export function epsilonNow(arms: readonly [string, Arm][], options: BanditSelectOptions): number {
  const t = arms.reduce((n, [, a]) => n + a.pulls, 0);
  const decayed = (options.epsilon ?? 0.1) * (options.decay ?? 1) ** t;
  return Math.max(options.minEpsilon ?? 0, decayed);
}

export function banditReward(
  bandits: Bandits,
  name: string,
  arm: string,
  value: number,
  settings: BanditSettings = {},
): Bandits {
  const arms = own(bandits, name);
  const current = arms && own(arms, arm);
  if (!arms || !current) throw new CapabilityFault(`bandit "${name}" has no arm "${arm}"`);
  // Bounded: a sum of huge rewards would overflow to Infinity, which JSON cannot carry back.
  if (!Number.isFinite(value) || Math.abs(value) > MAX_REWARD) {
    throw new CapabilityFault(`a reward must be a finite number in [-${MAX_REWARD}, ${MAX_REWARD}]`);
  }
  const { discount } = settings;
  if (discount === undefined) {
    const updated = { ...current, pulls: current.pulls + 1, rewardSum: current.rewardSum + value };
    return withEntry(bandits, name, withEntry(arms, arm, updated));
  }
  const faded = Object.fromEntries(
    Object.entries(arms).map(([id, a]) => {
      const weight = (a.weight ?? a.pulls) * discount;
      const rewardSum = a.rewardSum * discount;
      return [
        id,
        id === arm
          ? { pulls: a.pulls + 1, rewardSum: rewardSum + value, weight: weight + 1 }
          : { ...a, rewardSum, weight },
      ];
    }),
  );
  return withEntry(bandits, name, faded);
}

export function banditStats(bandits: Bandits, name: string, settings: BanditSettings = {}): ArmStats[] {
  const { initial } = settings;
  return armsOf(bandits, name).map(([arm, a]) => {
    const weight = a.weight ?? a.pulls;
    return {
      arm,
      pulls: a.pulls,
      weight,
      meanReward: weight === 0 ? 0 : a.rewardSum / weight,
      estimate: estimate(a, initial),
    };
  });
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
