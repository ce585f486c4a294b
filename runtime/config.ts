// The run config: JSON, validated against a published schema (runtime/run-config.schema.json is
// written from RUN_CONFIG_SCHEMA by `bilevel schema`), merged over defaults.
import { readFileSync } from "node:fs";
import { Ajv, type ErrorObject } from "ajv";
import type { CapabilityName } from "../mechanism-api/index.d.ts";
import type { LlmConfig } from "./llm/client.ts";

export type AcceptanceMode = "noise-aware" | "strict";

export type TrainerConfig =
  | { readonly kind: "python" }
  | {
      readonly kind: "external";
      /** A Karpathy-style train.py whose top-level constants are rewritten per trial. */
      readonly script: string;
      /** The command that runs it, e.g. ["uv", "run", "{script}"]; "{script}" is replaced by the copy's path. Default: a Python with torch. */
      readonly command?: readonly string[];
    }
  | {
      readonly kind: "synthetic";
      /** Simulated training time per trial. */
      readonly delayMs: number;
      /** Standard deviation of the seeded noise added to the objective. */
      readonly noise: number;
    };

export interface RunConfig {
  readonly name: string;
  readonly seed: number;
  readonly iterations: number;
  readonly budgetSeconds: number;
  readonly maxSteps: number | null;
  readonly device: "auto" | "cpu" | "cuda";
  readonly dataDir: string | null;
  readonly trainer: TrainerConfig;
  /** The LLM endpoint (runtime/llm/client.ts); baseURL null = OPENAI_BASE_URL from the environment, else offline. */
  readonly llm: Required<LlmConfig>;
  readonly proposer: {
    readonly maxChanges: number;
    /** Retries of an invalid LLM reply, with the errors fed back. */
    readonly maxRepairs: number;
    /** How many times a filter rejection sends the proposer back. */
    readonly maxFilterRejections: number;
    /** Trials shown to the proposer and to mechanisms. */
    readonly historyWindow: number;
  };
  readonly acceptance: {
    readonly mode: AcceptanceMode;
    /** Baseline runs of the starting config (different seeds) used to measure σ. */
    readonly baselineRepeats: number;
    /** Keep a change only if it beats the incumbent by more than k·σ. */
    readonly k: number;
    /** Lower bound on σ, so a lucky zero-variance baseline does not make every wiggle a win. */
    readonly minSigma: number;
  };
  readonly level15: {
    readonly every: number;
    readonly maxFreezesPerCycle: number;
    readonly minActive: number;
    /** Offline rule: freeze a parameter after this many tries without a kept gain. */
    readonly freezeAfterTries: number;
  };
  readonly level2: {
    /** A research session every this many Level 1.5 cycles (0 = never). */
    readonly everyCycles: number;
    readonly maxRepairs: number;
    /** Retire a mechanism whose hooks fired but brought no kept improvement over this many iterations (0 = never). */
    readonly retireWindow: number;
  };
  readonly policy: {
    readonly capabilities: readonly CapabilityName[];
    readonly hookTimeoutMs: number;
    readonly isolateMemoryMb: number;
    readonly maxActiveMechanisms: number;
    /** false: generated mechanisms wait for `bilevel mechanism approve RUN_DIR ID`. */
    readonly autoActivate: boolean;
    /** false: Level 2 never asks the LLM for code (offline library only). */
    readonly allowCodeGeneration: boolean;
  };
  /** Parameters the search starts with (default: all). */
  readonly activeParams: readonly string[] | null;
  /** Overrides of the starting config (the baseline). */
  readonly startConfig: { readonly [param: string]: number | string };
  /** Hand-written mechanism files activated at the start of the run. */
  readonly mechanisms: readonly string[];
}

export const DEFAULT_RUN_CONFIG: RunConfig = {
  name: "bilevel-run",
  seed: 1,
  iterations: 30,
  budgetSeconds: 60,
  maxSteps: null,
  device: "auto",
  dataDir: null,
  trainer: { kind: "python" },
  llm: {
    baseURL: null,
    apiKeyEnv: "OPENAI_API_KEY",
    model: "gpt-4o-mini",
    temperature: 0.7,
    maxTokens: 4000,
    timeoutMs: 120_000,
    maxRetries: 2,
    maxTokensField: "max_tokens",
  },
  proposer: { maxChanges: 3, maxRepairs: 2, maxFilterRejections: 3, historyWindow: 12 },
  acceptance: { mode: "noise-aware", baselineRepeats: 3, k: 1, minSigma: 0.001 },
  level15: { every: 5, maxFreezesPerCycle: 2, minActive: 4, freezeAfterTries: 3 },
  level2: { everyCycles: 2, maxRepairs: 3, retireWindow: 12 },
  policy: {
    capabilities: ["tabu", "bandit", "space"],
    hookTimeoutMs: 1000,
    isolateMemoryMb: 32,
    maxActiveMechanisms: 3,
    autoActivate: true,
    allowCodeGeneration: true,
  },
  activeParams: null,
  startConfig: {},
  mechanisms: [],
};

const positiveInt = { type: "integer", minimum: 1 } as const;
const nonNegInt = { type: "integer", minimum: 0 } as const;

export const RUN_CONFIG_SCHEMA = {
  $id: "https://bilevel.dev/schemas/run-config.json",
  title: "bilevel run config",
  type: "object",
  additionalProperties: false,
  required: Object.keys(DEFAULT_RUN_CONFIG),
  properties: {
    $schema: { type: "string" },
    name: { type: "string", minLength: 1, maxLength: 100 },
    seed: { type: "integer", minimum: 0, maximum: 2 ** 31 - 1 },
    iterations: { type: "integer", minimum: 1, maximum: 100_000 },
    budgetSeconds: { type: "number", exclusiveMinimum: 0, maximum: 86_400 },
    maxSteps: { anyOf: [positiveInt, { type: "null" }] },
    device: { enum: ["auto", "cpu", "cuda"] },
    dataDir: { type: ["string", "null"] },
    trainer: {
      oneOf: [
        {
          type: "object",
          additionalProperties: false,
          required: ["kind"],
          properties: { kind: { const: "python" } },
        },
        {
          type: "object",
          additionalProperties: false,
          required: ["kind", "script"],
          properties: {
            kind: { const: "external" },
            script: { type: "string", minLength: 1 },
            command: { type: "array", minItems: 1, items: { type: "string", minLength: 1 } },
          },
        },
        {
          type: "object",
          additionalProperties: false,
          required: ["kind", "delayMs", "noise"],
          properties: {
            kind: { const: "synthetic" },
            delayMs: { type: "integer", minimum: 0, maximum: 600_000 },
            noise: { type: "number", minimum: 0, maximum: 1 },
          },
        },
      ],
    },
    llm: {
      type: "object",
      additionalProperties: false,
      required: [
        "baseURL",
        "apiKeyEnv",
        "model",
        "temperature",
        "maxTokens",
        "timeoutMs",
        "maxRetries",
        "maxTokensField",
      ],
      properties: {
        baseURL: { type: ["string", "null"], pattern: "^https?://" },
        apiKeyEnv: { type: "string", pattern: "^[A-Za-z_][A-Za-z0-9_]*$" },
        model: { type: "string", minLength: 1 },
        temperature: { type: "number", minimum: 0, maximum: 2 },
        maxTokens: positiveInt,
        timeoutMs: { type: "integer", minimum: 100 },
        maxRetries: { type: "integer", minimum: 0, maximum: 10 },
        maxTokensField: { enum: ["max_tokens", "max_completion_tokens"] },
      },
    },
    proposer: {
      type: "object",
      additionalProperties: false,
      required: ["maxChanges", "maxRepairs", "maxFilterRejections", "historyWindow"],
      properties: {
        maxChanges: { type: "integer", minimum: 1, maximum: 3 },
        maxRepairs: { type: "integer", minimum: 0, maximum: 10 },
        maxFilterRejections: { type: "integer", minimum: 0, maximum: 20 },
        historyWindow: { type: "integer", minimum: 1, maximum: 200 },
      },
    },
    acceptance: {
      type: "object",
      additionalProperties: false,
      required: ["mode", "baselineRepeats", "k", "minSigma"],
      properties: {
        mode: { enum: ["noise-aware", "strict"] },
        baselineRepeats: { type: "integer", minimum: 1, maximum: 50 },
        k: { type: "number", minimum: 0, maximum: 10 },
        minSigma: { type: "number", minimum: 0, maximum: 1 },
      },
    },
    level15: {
      type: "object",
      additionalProperties: false,
      required: ["every", "maxFreezesPerCycle", "minActive", "freezeAfterTries"],
      properties: {
        every: positiveInt,
        maxFreezesPerCycle: nonNegInt,
        minActive: positiveInt,
        freezeAfterTries: positiveInt,
      },
    },
    level2: {
      type: "object",
      additionalProperties: false,
      required: ["everyCycles", "maxRepairs", "retireWindow"],
      properties: {
        everyCycles: nonNegInt,
        maxRepairs: { type: "integer", minimum: 0, maximum: 10 },
        retireWindow: nonNegInt,
      },
    },
    policy: {
      type: "object",
      additionalProperties: false,
      required: [
        "capabilities",
        "hookTimeoutMs",
        "isolateMemoryMb",
        "maxActiveMechanisms",
        "autoActivate",
        "allowCodeGeneration",
      ],
      properties: {
        capabilities: { type: "array", uniqueItems: true, items: { enum: ["tabu", "bandit", "space"] } },
        hookTimeoutMs: { type: "integer", minimum: 10, maximum: 60_000 },
        isolateMemoryMb: { type: "integer", minimum: 8, maximum: 1024 },
        maxActiveMechanisms: { type: "integer", minimum: 0, maximum: 20 },
        autoActivate: { type: "boolean" },
        allowCodeGeneration: { type: "boolean" },
      },
    },
    activeParams: {
      anyOf: [{ type: "array", items: { type: "string" }, uniqueItems: true }, { type: "null" }],
    },
    startConfig: { type: "object", additionalProperties: { type: ["number", "string"] } },
    mechanisms: { type: "array", items: { type: "string", minLength: 1 } },
  },
} as const;

const ajv = new Ajv({ allErrors: true, strict: true, allowUnionTypes: true, coerceTypes: false });
const validateRunConfig = ajv.compile<RunConfig>(RUN_CONFIG_SCHEMA);

export class ConfigError extends Error {
  override name = "ConfigError";
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Deep-merge plain objects; arrays and scalars from `override` replace. */
function merge(base: unknown, override: unknown): unknown {
  if (!isPlainObject(base) || !isPlainObject(override)) return override;
  const out: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(override)) {
    // A trainer of another kind replaces the default one whole (its fields differ).
    out[key] = key === "trainer" ? value : merge(base[key], value);
  }
  return out;
}

function describe(errors: readonly ErrorObject[]): string {
  const lines = errors
    .filter((e) => e.keyword !== "oneOf" && e.keyword !== "anyOf" && e.keyword !== "const")
    .map((e) => {
      const field = e.instancePath === "" ? "(top level)" : e.instancePath.slice(1).replaceAll("/", ".");
      if (e.keyword === "additionalProperties") {
        const extra = (e.params as { additionalProperty: string }).additionalProperty;
        return `${field === "(top level)" ? "" : `${field}.`}${extra}: unknown field`;
      }
      if (e.keyword === "enum") {
        return `${field}: must be one of ${JSON.stringify((e.params as { allowedValues: unknown }).allowedValues)}`;
      }
      return `${field}: ${e.message ?? "is invalid"}`;
    });
  const unique = [...new Set(lines)];
  return unique.length > 0
    ? unique.join("\n")
    : errors.map((e) => `${e.instancePath}: ${e.message}`).join("\n");
}

/** Merge a user's partial config over the defaults and validate it; throws ConfigError naming the field. */
export function resolveRunConfig(partial: unknown, overrides: Partial<RunConfig> = {}): RunConfig {
  if (!isPlainObject(partial)) throw new ConfigError("the run config must be a JSON object");
  const merged = merge(merge(DEFAULT_RUN_CONFIG, partial), overrides);
  if (isPlainObject(merged)) delete merged.$schema;
  if (!validateRunConfig(merged)) {
    throw new ConfigError(`invalid run config:\n${describe(validateRunConfig.errors ?? [])}`);
  }
  return merged;
}

export function loadRunConfig(file: string, overrides: Partial<RunConfig> = {}): RunConfig {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (error) {
    throw new ConfigError(
      `cannot read config ${file}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`,
    );
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new ConfigError(`config ${file} is not valid JSON: ${(error as Error).message}`);
  }
  return resolveRunConfig(parsed, overrides);
}
