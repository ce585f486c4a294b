// The search space (generated from trainer/hparams.py) and the config validator the
// CLI, the adapter and the loop share: bad keys, wrong types and out-of-range values are
// caught here, before any process starts.
import { readFileSync } from "node:fs";
import path from "node:path";
import type { Config, ParamSpec, ParamValue } from "../mechanism-api/index.d.ts";
import { CachingAjv } from "../sandbox/validation.ts";

export const SEARCH_SPACE_PATH = path.join(import.meta.dirname, "search-space.json");

/** One entry of search-space.json: a ParamSpec plus the GPU default (and GPU choices). */
export interface SpaceEntry extends ParamSpec {
  readonly gpuDefault: ParamValue;
  readonly gpuChoices?: readonly ParamValue[];
}

interface SpaceFile {
  readonly version: number;
  readonly note: string;
  readonly params: readonly SpaceEntry[];
  readonly evalBytes: { readonly cpu: number; readonly cuda: number };
}

const scalar = { type: ["number", "string"] };
const spaceSchema = {
  type: "object",
  additionalProperties: false,
  required: ["version", "note", "params", "evalBytes"],
  properties: {
    version: { type: "integer" },
    note: { type: "string" },
    evalBytes: {
      type: "object",
      additionalProperties: false,
      required: ["cpu", "cuda"],
      properties: { cpu: { type: "integer", minimum: 1 }, cuda: { type: "integer", minimum: 1 } },
    },
    params: {
      type: "array",
      minItems: 1,
      items: {
        type: "object",
        additionalProperties: false,
        required: ["name", "kind", "default", "gpuDefault", "description"],
        properties: {
          name: { type: "string", pattern: "^[A-Z][A-Z0-9_]*$" },
          kind: { enum: ["int", "float", "choice"] },
          min: { type: "number" },
          max: { type: "number" },
          log: { type: "boolean" },
          choices: { type: "array", minItems: 1, items: scalar },
          gpuChoices: { type: "array", minItems: 1, items: scalar },
          default: scalar,
          gpuDefault: scalar,
          description: { type: "string" },
        },
      },
    },
  },
} as const;

// Compiled on first use, its code kept with Node's compile cache (sandbox/validation.ts): loading
// ajv's compiler and compiling took a command that reads the search space ~0.1 s.
const ajv = new CachingAjv({ strict: true, allErrors: true, allowUnionTypes: true });
const validateSpaceFile = ajv.lazy<SpaceFile>(spaceSchema);

let cached: SpaceFile | undefined;

function spaceFile(): SpaceFile {
  if (cached) return cached;
  const raw: unknown = JSON.parse(readFileSync(SEARCH_SPACE_PATH, "utf8"));
  if (!validateSpaceFile(raw)) {
    throw new Error(`${SEARCH_SPACE_PATH} is malformed: ${ajv.errorsText(validateSpaceFile.errors)}`);
  }
  cached = raw;
  return cached;
}

const entries = (): readonly SpaceEntry[] => spaceFile().params;

/** The validation bytes val_bpb is measured on by default (trainer/hparams.py EVAL_BYTES). */
export function defaultEvalBytes(device: "cpu" | "cuda"): number {
  return spaceFile().evalBytes[device];
}

/** The search space as the loop and mechanisms see it, with the given device's defaults and choices. */
export function loadSearchSpace(device: "cpu" | "cuda" = "cpu"): ParamSpec[] {
  return entries().map(({ gpuDefault, gpuChoices, ...spec }) => ({
    ...spec,
    default: device === "cuda" ? gpuDefault : spec.default,
    ...(device === "cuda" && gpuChoices ? { choices: gpuChoices } : {}),
  }));
}

/** The defaults of every parameter for a device. */
export function defaultConfig(device: "cpu" | "cuda" = "cpu"): Config {
  return Object.fromEntries(loadSearchSpace(device).map((p) => [p.name, p.default]));
}

const RUN_LEVEL: Readonly<Record<string, string>> = {
  SEED: "SEED is a run option (--seed), not a hyperparameter",
  MAX_STEPS: "MAX_STEPS is a run option (--max-steps), not a hyperparameter",
  ADAM_BETAS: "ADAM_BETAS is searched as ADAM_BETA1 and ADAM_BETA2",
};

function describe(value: unknown): string {
  return typeof value === "string" ? JSON.stringify(value) : String(value);
}

/** Errors for one value of one parameter (empty when valid). */
export function checkValue(spec: ParamSpec, value: unknown): string[] {
  if (spec.kind === "choice") {
    const choices = spec.choices ?? [];
    return choices.some((c) => c === value)
      ? []
      : [`${spec.name} must be one of ${choices.map(describe).join(", ")}, got ${describe(value)}`];
  }
  if (typeof value !== "number") {
    return [`${spec.name} must be a number (${spec.kind}), got ${typeof value} ${describe(value)}`];
  }
  if (!Number.isFinite(value)) return [`${spec.name} must be finite, got ${value}`];
  if (spec.kind === "int" && !Number.isInteger(value)) {
    return [`${spec.name} must be an integer, got ${value}`];
  }
  const min = spec.min ?? Number.NEGATIVE_INFINITY;
  const max = spec.max ?? Number.POSITIVE_INFINITY;
  if (value < min || value > max) return [`${spec.name} must be in [${min}, ${max}], got ${value}`];
  if (spec.powerOfTwo && !isPowerOfTwo(value)) return [`${spec.name} must be a power of two, got ${value}`];
  if (spec.multipleOf !== undefined && !isMultiple(value, spec.multipleOf)) {
    return [`${spec.name} must be a multiple of ${spec.multipleOf}, got ${value}`];
  }
  return [];
}

export function isPowerOfTwo(value: number): boolean {
  return value > 0 && Number.isInteger(value) && Number.isInteger(Math.log2(value));
}

/** Whether `value` is a whole multiple of `step` (floats within rounding error). */
export function isMultiple(value: number, step: number): boolean {
  const q = value / step;
  return Math.abs(q - Math.round(q)) <= 1e-9 * Math.max(1, Math.abs(q));
}

/** Every problem with a (partial) config: unknown keys, wrong types, out-of-range values. */
export function validateConfig(config: unknown): string[] {
  if (typeof config !== "object" || config === null || Array.isArray(config)) {
    return ["a config must be an object of hyperparameters"];
  }
  const specs = new Map(entries().map((p) => [p.name, p]));
  const errors: string[] = [];
  for (const [key, value] of Object.entries(config)) {
    const spec = specs.get(key);
    if (!spec) {
      const hint = RUN_LEVEL[key] ? ` (${RUN_LEVEL[key]})` : "";
      errors.push(`unknown hyperparameter ${JSON.stringify(key)}${hint}`);
      continue;
    }
    errors.push(...checkValue(spec, value));
  }
  return errors;
}

/**
 * Parse `KEY=VALUE` (the CLI's --set) into config entries, typed by the search space.
 * `ADAM_BETAS=0.8,0.95` (or `(0.8, 0.95)`) expands to ADAM_BETA1 and ADAM_BETA2.
 * Returns errors instead of throwing.
 */
export function parseAssignment(text: string): { entries: [string, ParamValue][]; errors: string[] } {
  const eq = text.indexOf("=");
  if (eq <= 0) return { entries: [], errors: [`--set expects KEY=VALUE, got ${JSON.stringify(text)}`] };
  const key = text.slice(0, eq).trim();
  const raw = text.slice(eq + 1).trim();
  if (key === "ADAM_BETAS") {
    const parts = raw
      .replace(/^[([]|[)\]]$/g, "")
      .split(",")
      .map((s) => s.trim())
      .filter((s) => s !== "");
    if (parts.length !== 2) {
      return {
        entries: [],
        errors: [`ADAM_BETAS must be two numbers like 0.8,0.95, got ${JSON.stringify(raw)}`],
      };
    }
    const out: [string, ParamValue][] = [];
    const errors: string[] = [];
    parts.forEach((part, i) => {
      const r = parseAssignment(`ADAM_BETA${i + 1}=${part}`);
      out.push(...r.entries);
      errors.push(...r.errors);
    });
    return errors.length ? { entries: [], errors } : { entries: out, errors };
  }
  const spec = entries().find((p) => p.name === key);
  if (!spec) {
    const hint = RUN_LEVEL[key] ? ` (${RUN_LEVEL[key]})` : "";
    return { entries: [], errors: [`unknown hyperparameter ${JSON.stringify(key)}${hint}`] };
  }
  if (raw === "") return { entries: [], errors: [`${key} needs a value`] };
  let value: ParamValue = raw;
  const numericChoice = spec.kind === "choice" && (spec.choices ?? []).some((c) => typeof c === "number");
  if (spec.kind !== "choice" || numericChoice) {
    const n = parseNumber(raw);
    if (n === null) {
      return { entries: [], errors: [`${key} must be a number (${spec.kind}), got ${JSON.stringify(raw)}`] };
    }
    value = n;
  } else {
    value = raw.replace(/^(["'])(.*)\1$/, "$2");
  }
  const errors = checkValue(spec, value);
  return errors.length ? { entries: [], errors } : { entries: [[key, value]], errors: [] };
}

/** A decimal, exponent, or `2**k` (Karpathy writes batch sizes that way); null if not a number. */
export function parseNumber(raw: string): number | null {
  const pow = /^(\d+)\s*\*\*\s*(\d+)$/.exec(raw);
  if (pow) return Number(pow[1]) ** Number(pow[2]);
  if (!/^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i.test(raw)) return null;
  const n = Number(raw);
  return Number.isFinite(n) ? n : null;
}
