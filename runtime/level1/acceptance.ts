// Acceptance: whether a trial replaces the incumbent. Noise-aware by default: the
// improvement must exceed k·σ, with σ measured from repeated baseline runs.
import type { Acceptance } from "../../mechanism-api/index.d.ts";
import type { AcceptanceMode } from "../config.ts";

export interface NoiseEstimate {
  readonly mean: number;
  /** Sample standard deviation of the baseline runs, floored at minSigma. */
  readonly sigma: number;
  readonly n: number;
}

export function estimateNoise(values: readonly number[], minSigma: number): NoiseEstimate {
  const n = values.length;
  if (n === 0) throw new Error("no baseline values to estimate noise from");
  const mean = values.reduce((a, b) => a + b, 0) / n;
  const variance = n > 1 ? values.reduce((a, v) => a + (v - mean) ** 2, 0) / (n - 1) : 0;
  return { mean, sigma: Math.max(Math.sqrt(variance), minSigma), n };
}

export interface AcceptanceDecision {
  readonly kept: boolean;
  /** valBpb − incumbent (negative = better). */
  readonly delta: number;
  /** The improvement needed to keep it. */
  readonly threshold: number;
  readonly reason: string;
}

/** The rule as mechanisms see it (ctx.acceptance): the same threshold `decide` applies. */
export function acceptanceRule(mode: AcceptanceMode, noise: NoiseEstimate | null, k: number): Acceptance {
  const threshold = mode === "strict" || noise === null ? 0 : k * noise.sigma;
  return { rule: mode, k, sigma: noise?.sigma ?? null, threshold };
}

export function decide(
  mode: AcceptanceMode,
  valBpb: number,
  incumbent: number,
  noise: NoiseEstimate | null,
  k: number,
): AcceptanceDecision {
  const delta = valBpb - incumbent;
  const { threshold } = acceptanceRule(mode, noise, k);
  const kept = delta < -threshold;
  const reason =
    mode === "strict"
      ? kept
        ? `improved by ${(-delta).toFixed(4)} (strict: any gain)`
        : `no gain (${delta >= 0 ? "+" : ""}${delta.toFixed(4)})`
      : kept
        ? `improved by ${(-delta).toFixed(4)} > ${k}·σ = ${threshold.toFixed(4)}`
        : `${delta < 0 ? `gain ${(-delta).toFixed(4)} within noise` : `worse by ${delta.toFixed(4)}`} (need > ${threshold.toFixed(4)})`;
  return { kept, delta, threshold, reason };
}
