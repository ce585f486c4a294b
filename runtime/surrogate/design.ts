// The recording design: space-filling points (Latin hypercube) over the whole search space and
// near the defaults, then local moves around the best results, then repeated points (several
// seeds each) that measure run-to-run noise. Deterministic for a seed and the results so far.
import type { Config, ParamSpec, ParamValue } from "../../mechanism-api/index.d.ts";
import { fromUnit, toUnit } from "../param-scale.ts";
import { createRng, type Rng } from "../rng.ts";
import type { DesignPhase } from "./data.ts";

export interface DesignPoint {
  readonly i: number;
  readonly phase: DesignPhase;
  readonly seed: number;
  readonly config: Config;
}

export interface DesignPlan {
  readonly space: number;
  readonly nearDefault: number;
  /** Local moves, in two rounds (the second around the best of everything before it). */
  readonly local: readonly [number, number];
  /** Points measured `repeats` times each (seeds 0..repeats-1). */
  readonly repeatPoints: number;
  readonly repeats: number;
}

/** How `trials` trials are shared out: ~12% repeats, then 35/25/40 space / near-default / local. */
export function planDesign(trials: number, repeats: number): DesignPlan {
  const repeatPoints = repeats > 1 ? Math.max(1, Math.round((0.12 * trials) / repeats)) : 0;
  const rest = Math.max(0, trials - repeatPoints * repeats);
  const space = Math.round(rest * 0.35);
  const nearDefault = Math.round(rest * 0.25);
  const local = rest - space - nearDefault;
  const first = Math.ceil(local / 2);
  return { space, nearDefault, local: [first, local - first], repeatPoints, repeats };
}

/** n points of a Latin hypercube in [lo, hi]^d: each dimension's n strata used once. */
export function latinHypercube(rng: Rng, n: number, d: number, lo = 0, hi = 1): number[][] {
  const columns = Array.from({ length: d }, () => {
    const perm = Array.from({ length: n }, (_, k) => k);
    for (let k = n - 1; k > 0; k--) {
      const j = rng.int(k + 1);
      [perm[k], perm[j]] = [perm[j] as number, perm[k] as number];
    }
    return perm.map((stratum) => lo + ((stratum + rng.next()) / n) * (hi - lo));
  });
  return Array.from({ length: n }, (_, k) => columns.map((c) => c[k] as number));
}

function configAt(params: readonly ParamSpec[], unit: readonly number[]): Config {
  return Object.fromEntries(params.map((p, k) => [p.name, fromUnit(p, unit[k] ?? 0)]));
}

function unitOf(params: readonly ParamSpec[], config: Config): number[] {
  return params.map((p) => toUnit(p, config[p.name] ?? p.default));
}

/** The space-filling phases: the whole space, and a box of ±0.15 (unit scale) around the defaults. */
export function spaceFillingPoints(
  params: readonly ParamSpec[],
  plan: DesignPlan,
  seed: number,
): DesignPoint[] {
  const rng = createRng("surrogate-design", seed, "space");
  const whole = latinHypercube(rng, plan.space, params.length);
  const centre = unitOf(params, Object.fromEntries(params.map((p) => [p.name, p.default])));
  const box = latinHypercube(rng, plan.nearDefault, params.length, -0.15, 0.15).map((u) =>
    u.map((v, k) => (centre[k] ?? 0.5) + v),
  );
  return [
    ...whole.map((u, k) => ({ i: k, phase: "space" as const, seed: 0, config: configAt(params, u) })),
    ...box.map((u, k) => ({
      i: plan.space + k,
      phase: "near-default" as const,
      seed: 0,
      config: configAt(params, u),
    })),
  ];
}

export interface Scored {
  readonly config: Config;
  readonly valBpb: number | null;
}

/** The best `k` distinct configs among the scored ones (lowest val_bpb first). */
export function bestConfigs(scored: readonly Scored[], k: number): Config[] {
  const ok = scored.filter((s): s is Scored & { valBpb: number } => s.valBpb !== null);
  ok.sort((a, b) => a.valBpb - b.valBpb);
  const seen = new Set<string>();
  const out: Config[] = [];
  for (const s of ok) {
    const key = JSON.stringify(s.config);
    if (seen.has(key)) continue;
    seen.add(key);
    out.push(s.config);
    if (out.length === k) break;
  }
  return out;
}

/** `n` local moves: 1–4 parameters of one of the best 8 configs moved by N(0, 0.08) in unit scale. */
export function localPoints(
  params: readonly ParamSpec[],
  scored: readonly Scored[],
  n: number,
  firstIndex: number,
  seed: number,
): DesignPoint[] {
  const rng = createRng("surrogate-design", seed, "local", firstIndex);
  const centres = bestConfigs(scored, 8);
  if (centres.length === 0) centres.push(Object.fromEntries(params.map((p) => [p.name, p.default])));
  return Array.from({ length: n }, (_, k) => {
    const centre = centres[k % centres.length] as Config;
    const unit = unitOf(params, centre);
    const moved = 1 + rng.int(4);
    for (let m = 0; m < moved; m++) {
      const d = rng.int(params.length);
      unit[d] = (unit[d] ?? 0.5) + 0.08 * rng.normal();
    }
    return { i: firstIndex + k, phase: "local" as const, seed: 0, config: configAt(params, unit) };
  });
}

/**
 * The repeated points: the defaults, then the best configs, then configs spread over the
 * results' quantiles (noise may depend on the level), each run with seeds 0..repeats-1.
 */
export function repeatPoints(
  params: readonly ParamSpec[],
  scored: readonly Scored[],
  plan: DesignPlan,
  firstIndex: number,
): DesignPoint[] {
  const defaults: Config = Object.fromEntries(params.map((p) => [p.name, p.default]));
  const ranked = bestConfigs(scored, scored.length);
  const nBest = Math.ceil((plan.repeatPoints - 1) / 2);
  const picks: Config[] = [defaults, ...ranked.slice(0, nBest)];
  const nSpread = plan.repeatPoints - picks.length;
  for (let k = 1; k <= nSpread && ranked.length > 0; k++) {
    picks.push(ranked[Math.floor((k / (nSpread + 1)) * (ranked.length - 1))] as Config);
  }
  const points: DesignPoint[] = [];
  for (const config of picks.slice(0, plan.repeatPoints)) {
    for (let r = 0; r < plan.repeats; r++) {
      points.push({ i: firstIndex + points.length, phase: "repeat", seed: r, config });
    }
  }
  return points;
}

/** A config's values in the order of `names` (for a data record). */
export function configValues(names: readonly string[], config: Config): ParamValue[] {
  return names.map((n) => config[n] as ParamValue);
}
