// The built-in synthetic trace for dry runs (`mechanism check`) and the default search space.
import { readFileSync } from "node:fs";
import path from "node:path";
import type { Change, Config, ParamSpec, Trial } from "../mechanism-api/index.d.ts";
import { paramSpecSchema } from "../mechanism-api/schemas.ts";
import { fromUnit, toUnit } from "./param-scale.ts";
import { hashSeed, sfc32 } from "./rng.ts";
import type { DryRunTrace } from "./types.ts";
import { validator } from "./validation.ts";

const SEARCH_SPACE = path.join(import.meta.dirname, "../trainer/search-space.json");

const isParamList = validator<ParamSpec[]>({
  type: "array",
  minItems: 1,
  maxItems: 256,
  items: paramSpecSchema,
});

/** The trainer's declared search space (trainer/search-space.json); throws if the file is missing or invalid. */
export function loadDefaultParams(): ParamSpec[] {
  const raw: unknown = JSON.parse(readFileSync(SEARCH_SPACE, "utf8"));
  const declared = (raw as { params?: unknown } | null)?.params;
  // The trainer may record more per parameter (e.g. GPU defaults); mechanisms see only ParamSpec fields.
  const params = Array.isArray(declared) ? declared.map(pickSpecFields) : declared;
  if (!isParamList(params))
    throw new Error(`invalid search space in ${path.basename(SEARCH_SPACE)}: ${isParamList.explain()}`);
  return params;
}

const SPEC_FIELDS = ["name", "kind", "min", "max", "log", "choices", "default", "description"] as const;

function pickSpecFields(entry: unknown): unknown {
  if (entry === null || typeof entry !== "object") return entry;
  const source = entry as Record<string, unknown>;
  return Object.fromEntries(SPEC_FIELDS.filter((k) => source[k] !== undefined).map((k) => [k, source[k]]));
}

function defaults(params: readonly ParamSpec[]): Config {
  return Object.fromEntries(params.map((p) => [p.name, p.default]));
}

/**
 * A small deterministic trace over `params`: five scored trials around the defaults (one failed),
 * an incumbent, the best so far, a proposal that changes one parameter and the trial it produced.
 */
export function syntheticTrace(params: readonly ParamSpec[], seed = 1): DryRunTrace {
  const random = sfc32(hashSeed(`synthetic-trace|${seed}`));
  const base = defaults(params);
  const numeric = params.filter((p) => p.kind !== "choice");
  const tweak = (config: Config): { config: Config; changes: Change[] } => {
    const spec = numeric[Math.floor(random() * numeric.length)];
    if (!spec) return { config, changes: [] };
    const current = config[spec.name];
    const u = typeof current === "number" ? toUnit(spec, current) : 0.5;
    const value = fromUnit(spec, Math.min(1, Math.max(0, u + (random() < 0.5 ? -0.15 : 0.15))));
    const change =
      current === undefined ? { param: spec.name, value } : { param: spec.name, value, previous: current };
    return { config: { ...config, [spec.name]: value }, changes: [change] };
  };
  const history: Trial[] = [];
  let incumbent = base;
  let incumbentBpb = 2.5;
  for (let i = 0; i < 5; i++) {
    const { config, changes } = tweak(incumbent);
    const failed = i === 2;
    const valBpb = failed ? null : Math.round((incumbentBpb + (random() - 0.6) * 0.1) * 1e4) / 1e4;
    const kept = valBpb !== null && valBpb < incumbentBpb;
    history.push({
      id: i + 1,
      iteration: i,
      config,
      changes,
      status: failed ? "oom" : "ok",
      valBpb,
      kept,
      delta: valBpb === null ? null : Math.round((valBpb - incumbentBpb) * 1e4) / 1e4,
    });
    if (kept && valBpb !== null) {
      incumbent = config;
      incumbentBpb = valBpb;
    }
  }
  const proposed = tweak(incumbent);
  const iteration = history.length;
  const trialBpb = Math.round((incumbentBpb - 0.01) * 1e4) / 1e4;
  return {
    context: {
      iteration,
      params: params.map((p) => ({ ...p, active: p.active ?? !p.frozen })),
      incumbent: { config: incumbent, valBpb: incumbentBpb },
      best: { config: incumbent, valBpb: incumbentBpb },
      history,
      // A run's default rule (noise-aware, k = 1) with the σ of a typical CPU baseline.
      acceptance: { rule: "noise-aware", k: 1, sigma: 0.003, threshold: 0.003 },
      seed,
    },
    proposal: {
      changes: proposed.changes,
      rationale: "synthetic dry-run proposal",
      source: "offline",
      config: proposed.config,
    },
    trial: {
      id: iteration + 1,
      iteration,
      config: proposed.config,
      changes: proposed.changes,
      status: "ok",
      valBpb: trialBpb,
      kept: true,
      delta: Math.round((trialBpb - incumbentBpb) * 1e4) / 1e4,
    },
  };
}
