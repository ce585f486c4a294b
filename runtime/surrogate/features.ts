// The surrogate's inputs: every parameter in unit scale (runtime/param-scale.ts), plus a few
// quantities the trainer computes from them that decide speed, memory and so val_bpb at a fixed
// budget (model width, parameter count, tokens per forward and per step, FLOPs per step). Trees
// split on one feature at a time, so handing them these products saves most of the data they
// would need to find them.
import type { Config, ParamSpec } from "../../mechanism-api/index.d.ts";
import { fullConfig, toUnit } from "../param-scale.ts";

const DERIVED_NEEDS = [
  "DEPTH",
  "ASPECT_RATIO",
  "HEAD_DIM",
  "SEQ_LEN",
  "TOTAL_BATCH_SIZE",
  "DEVICE_BATCH_SIZE",
];

/** Names of the feature vector's entries, in order. */
export function featureNames(params: readonly ParamSpec[]): string[] {
  const names = params.map((p) => p.name);
  if (!DERIVED_NEEDS.every((n) => names.includes(n))) return names;
  return [...names, "log_d_model", "log_params", "log_tokens_forward", "log_grad_accum", "log_flops_step"];
}

/** The feature vector of `config` (defaults fill missing parameters). */
export function features(params: readonly ParamSpec[], config: Config): number[] {
  const full = fullConfig(params, config);
  const unit = params.map((p) => {
    const u = toUnit(p, full[p.name] ?? p.default);
    return Number.isFinite(u) ? u : 0.5;
  });
  if (featureNames(params).length === unit.length) return unit;
  const n = (name: string) => Number(full[name]);
  // As trainer/model.py computes them: d_model rounded up to a multiple of HEAD_DIM.
  const headDim = n("HEAD_DIM");
  const dModel = Math.ceil((n("DEPTH") * n("ASPECT_RATIO")) / headDim) * headDim;
  const weights = 12 * n("DEPTH") * dModel * dModel;
  const forward = n("DEVICE_BATCH_SIZE") * n("SEQ_LEN");
  const accum = Math.max(1, Math.round(n("TOTAL_BATCH_SIZE") / forward));
  const flops = 6 * (weights + 2 * 256 * dModel) * forward * accum;
  return [...unit, Math.log(dModel), Math.log(weights), Math.log(forward), Math.log(accum), Math.log(flops)];
}
