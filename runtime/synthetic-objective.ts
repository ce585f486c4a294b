// A deterministic stand-in for a training run over the default search space, for the mechanism
// regression harness and tests: a smooth bowl in normalised (log) coordinates with a known optimum
// away from the defaults, parameter interactions, failure regions (diverged, oom, invalid-config)
// and an optional seeded noise term. Values look like val_bpb: about 1.5 at the optimum, about
// 2.3 at the defaults, never above 3.1.
import type { Config, ParamSpec, TrialStatus } from "../mechanism-api/index.d.ts";
import { checkValue } from "../trainer/search-space.ts";
import { fullConfig, toUnit } from "./param-scale.ts";
import { createRng } from "./rng.ts";

/** The optimum, in parameter values (defaults in trainer/search-space.json differ on purpose). */
export const SYNTHETIC_OPTIMUM: Readonly<Record<string, number | string>> = {
  DEPTH: 4,
  ASPECT_RATIO: 48,
  HEAD_DIM: 32,
  WINDOW_PATTERN: "SL",
  SEQ_LEN: 256,
  TOTAL_BATCH_SIZE: 2048,
  DEVICE_BATCH_SIZE: 8,
  EMBEDDING_LR: 0.3,
  UNEMBEDDING_LR: 0.008,
  MATRIX_LR: 0.06,
  SCALAR_LR: 0.5,
  WEIGHT_DECAY: 0.1,
  ADAM_BETA1: 0.85,
  ADAM_BETA2: 0.97,
  WARMUP_RATIO: 0.05,
  WARMDOWN_RATIO: 0.6,
  FINAL_LR_FRAC: 0.05,
};

/** How much each parameter matters (curvature of the bowl along it): a few dominate, as in practice. */
const WEIGHTS: Readonly<Record<string, number>> = {
  MATRIX_LR: 3,
  TOTAL_BATCH_SIZE: 2.5,
  DEPTH: 2,
  EMBEDDING_LR: 1.5,
  ASPECT_RATIO: 1.2,
  SEQ_LEN: 1,
  WARMDOWN_RATIO: 1,
  UNEMBEDDING_LR: 1,
  WEIGHT_DECAY: 0.6,
  WARMUP_RATIO: 0.5,
  ADAM_BETA1: 0.4,
  ADAM_BETA2: 0.4,
  FINAL_LR_FRAC: 0.3,
  HEAD_DIM: 0.3,
  WINDOW_PATTERN: 0.3,
  DEVICE_BATCH_SIZE: 0.2,
  SCALAR_LR: 0.2,
};

export const SYNTHETIC_FLOOR = 1.5;
const SPAN = 1.6;
/** Bowl scale: chosen so that the defaults score about 2.3. */
const SCALE = 0.5;
/** Activation-memory proxy (DEVICE_BATCH_SIZE × SEQ_LEN × DEPTH × d_model) above which a trial is "oom". */
export const SYNTHETIC_MEMORY_CAP = 2 ** 25;

export interface SyntheticOptions {
  /** Gaussian noise with this standard deviation (default 0: noiseless). */
  readonly noiseSigma?: number;
  /** The noise stream: the same (seed, draw) gives the same noise. */
  readonly noiseSeed?: number;
  /** Which draw of the stream, e.g. the trial number; repeated configs get fresh noise per draw. */
  readonly draw?: number;
}

export interface SyntheticResult {
  readonly status: TrialStatus;
  /** null unless status is "ok". */
  readonly valBpb: number | null;
  readonly message: string;
}

/** Score `config` (missing parameters take defaults). Pure and deterministic. */
export function syntheticObjective(
  params: readonly ParamSpec[],
  config: Config,
  options: SyntheticOptions = {},
): SyntheticResult {
  const unknown = Object.keys(config).filter((k) => !params.some((p) => p.name === k));
  if (unknown.length > 0) {
    return {
      status: "invalid-config",
      valBpb: null,
      message: `unknown hyperparameter ${unknown.join(", ")}`,
    };
  }
  const full = fullConfig(params, config);
  const problems = params.flatMap((p) => (full[p.name] === undefined ? [] : checkValue(p, full[p.name])));
  if (problems.length > 0) return { status: "invalid-config", valBpb: null, message: problems.join("; ") };

  const spec = new Map(params.map((p) => [p.name, p]));
  const u = (name: string): number => {
    const p = spec.get(name);
    const v = full[name];
    return p && v !== undefined ? toUnit(p, v) : 0.5;
  };
  const opt = (name: string): number => {
    const p = spec.get(name);
    const v = SYNTHETIC_OPTIMUM[name];
    return p && v !== undefined ? toUnit(p, v) : 0.5;
  };

  // Failure regions, checked before scoring, as a real run would end early.
  const matrixLrLimit = 0.8 + 0.6 * u("WARMUP_RATIO");
  if (u("MATRIX_LR") > matrixLrLimit) {
    return {
      status: "diverged",
      valBpb: null,
      message: "loss became NaN: MATRIX_LR too high for the warmup",
    };
  }
  if (u("EMBEDDING_LR") > 0.92) {
    return { status: "diverged", valBpb: null, message: "loss became NaN: EMBEDDING_LR too high" };
  }
  const depth = Number(full.DEPTH);
  const dModel = depth * Number(full.ASPECT_RATIO);
  const memory = Number(full.DEVICE_BATCH_SIZE) * Number(full.SEQ_LEN) * depth * dModel;
  if (memory > SYNTHETIC_MEMORY_CAP) {
    return {
      status: "oom",
      valBpb: null,
      message: `out of memory (activation proxy ${memory} > ${SYNTHETIC_MEMORY_CAP})`,
    };
  }

  let q = 0;
  for (const p of params) {
    const w = WEIGHTS[p.name] ?? 0.2;
    let target = opt(p.name);
    // The best MATRIX_LR grows with the batch (larger batches tolerate larger steps).
    if (p.name === "MATRIX_LR") target += 0.5 * (u("TOTAL_BATCH_SIZE") - opt("TOTAL_BATCH_SIZE"));
    q += w * (u(p.name) - target) ** 2;
  }
  // Model size: depth and width trade off against each other inside a fixed time budget.
  q += 1.5 * (u("DEPTH") + u("ASPECT_RATIO") - opt("DEPTH") - opt("ASPECT_RATIO")) ** 2;
  // A long warmdown with a high final LR is worse than either alone.
  q += 0.8 * Math.max(0, u("WARMDOWN_RATIO") - opt("WARMDOWN_RATIO")) * Math.max(0, u("FINAL_LR_FRAC") - 0.2);
  // Momentum: beta1 and beta2 too close together hurts.
  q += 0.5 * Math.max(0, u("ADAM_BETA1") - u("ADAM_BETA2")) ** 2;

  let value = SYNTHETIC_FLOOR + SPAN * (1 - Math.exp(-q / SCALE));
  const sigma = options.noiseSigma ?? 0;
  if (sigma > 0)
    value += sigma * createRng("synthetic-noise", options.noiseSeed ?? 0, options.draw ?? 0).normal();
  return { status: "ok", valBpb: Number(value.toFixed(6)), message: "synthetic objective" };
}
