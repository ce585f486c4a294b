// The run config: one declaration (RUN_CONFIG_SCHEMA; the RunConfig type is derived from it),
// merged over defaults, validated, then resolved once at load into a ResolvedRunConfig: device
// defaults, absolute paths, the full sandbox policy, the search space and the starting config.
// The resolved config is what run.db stores and what `bilevel config show` prints.
import { readFileSync, statSync } from "node:fs";
import path from "node:path";
import type { ErrorObject, ValidateFunction } from "ajv";
import type { FromSchema } from "json-schema-to-ts";
import type { Config, ParamSpec } from "../mechanism-api/index.d.ts";
import { DEFAULT_POLICY } from "../sandbox/index.ts";
import { sandboxPolicySchema } from "../sandbox/schemas.ts";
import type { SandboxPolicy } from "../sandbox/types.ts";
import { CachingAjv } from "../sandbox/validation.ts";
import { ENV_ALLOW_ENTRY } from "../trainer/child-env.ts";
import { dataProblems } from "../trainer/data-sizes.ts";
import { cudaAvailable } from "../trainer/python.ts";
import type { ParamDeclaration } from "../trainer/script-space.ts";
import { checkValue, defaultEvalBytes, loadSearchSpace } from "../trainer/search-space.ts";
import { closestName } from "./closest.ts";
import { UserError } from "./errors.ts";
import { type ResearchBrief, resolveExternal } from "./external-script.ts";
import { jsonInputProblem } from "./json-input.ts";
import { readMechanismFile } from "./mechanism-file.ts";
import { checkSurrogateFile, DEFAULT_SURROGATE_FILE, surrogateDevice } from "./surrogate/data.ts";

const positiveInt = { type: "integer", minimum: 1 } as const;
const nonNegInt = { type: "integer", minimum: 0 } as const;
const closed = <const P extends Record<string, unknown>>(properties: P) =>
  ({
    type: "object",
    additionalProperties: false,
    required: Object.keys(properties) as (keyof P & string)[],
    properties,
  }) as const;

/**
 * Environment variables a trial may see beyond the default allow-list (trainer/child-env.ts);
 * "NAME" or a prefix "NAME_*". Secret-looking names (KEY, TOKEN, SECRET, …) and the LLM key's
 * variable are never passed, whatever this says.
 */
const ENV_ALLOW_SCHEMA = {
  type: "array",
  maxItems: 100,
  uniqueItems: true,
  items: { type: "string", pattern: ENV_ALLOW_ENTRY.source },
} as const;

/**
 * How one constant of an external script is searched (trainer.params.NAME); every field is
 * optional: the range is derived from the script's value (docs/coming-from-autoresearch.md).
 */
const PARAM_DECLARATION_SCHEMA = {
  type: "object",
  additionalProperties: false,
  properties: {
    min: { type: "number" },
    max: { type: "number" },
    log: { type: "boolean" },
    choices: { type: "array", minItems: 1, maxItems: 256, items: { type: ["number", "string"] } },
    integer: { type: "boolean" },
    multipleOf: { type: "number", exclusiveMinimum: 0 },
    powerOfTwo: { type: "boolean" },
    /** Python expression(s) over the script's constants that every trial must satisfy. */
    constraint: {
      anyOf: [
        { type: "string", minLength: 1, maxLength: 1000 },
        { type: "array", maxItems: 16, items: { type: "string", minLength: 1, maxLength: 1000 } },
      ],
    },
    description: { type: "string", maxLength: 1000 },
  },
} as const;

/** Local slots: CUDA slots get a GPU each (slot mod gpus), CPU slots an equal share of the cores. */
const LOCAL_EXECUTOR_SCHEMA = {
  type: "object",
  additionalProperties: false,
  required: ["kind"],
  properties: {
    kind: { const: "local" },
    /** GPUs to spread CUDA slots over; default: as many as slots. */
    gpus: positiveInt,
    /** Cores to share between CPU slots; default: the machine's. */
    cores: positiveInt,
  },
} as const;

/** One Slurm job per trial (sbatch, squeue, scontrol, scancel); every resource field is optional. */
const SLURM_EXECUTOR_SCHEMA = {
  type: "object",
  additionalProperties: false,
  required: ["kind"],
  properties: {
    kind: { const: "slurm" },
    partition: { type: "string", minLength: 1, maxLength: 200 },
    account: { type: "string", minLength: 1, maxLength: 200 },
    qos: { type: "string", minLength: 1, maxLength: 200 },
    /** sbatch --gres (e.g. "gpu:1") and --gpus. */
    gres: { type: "string", minLength: 1, maxLength: 200 },
    gpus: { type: "string", minLength: 1, maxLength: 200 },
    cpusPerTask: positiveInt,
    /** sbatch --mem, e.g. "16G". */
    mem: { type: "string", pattern: "^[0-9]+[KMGT]?$" },
    /** A job is cancelled (a `timeout` trial) at budgetSeconds × timeoutFactor + graceSeconds after it starts; its Slurm time limit adds a minute. */
    timeoutFactor: { type: "number", minimum: 1, maximum: 100 },
    graceSeconds: { type: "number", minimum: 0, maximum: 86400 },
    /** How often squeue is asked. */
    pollSeconds: { type: "number", minimum: 0.1, maximum: 600 },
    /** More sbatch options, passed as they are (e.g. ["--constraint=a100"]). */
    extraArgs: { type: "array", maxItems: 50, items: { type: "string", pattern: "^--?[A-Za-z]" } },
    /** Check at the start, with a small job, that the nodes see the run folder (default true). */
    checkSharedFolder: { type: "boolean" },
  },
} as const;

export const RUN_CONFIG_SCHEMA = {
  $id: "https://bilevel.dev/schemas/run-config.json",
  title: "bilevel run config",
  type: "object",
  additionalProperties: false,
  required: [
    "name",
    "seed",
    "iterations",
    "budgetSeconds",
    "maxSteps",
    "device",
    "dataDir",
    "trainer",
    "llm",
    "proposer",
    "acceptance",
    "level15",
    "level2",
    "policy",
    "activeParams",
    "startConfig",
    "mechanisms",
  ],
  properties: {
    /** Lets editors find this schema; ignored by bilevel. */
    $schema: { type: "string" },
    name: { type: "string", minLength: 1, maxLength: 100, pattern: "^[A-Za-z0-9][A-Za-z0-9._-]*$" },
    seed: { type: "integer", minimum: 0, maximum: 2147483647 },
    iterations: { type: "integer", minimum: 1, maximum: 100000 },
    budgetSeconds: { type: "number", exclusiveMinimum: 0, maximum: 86400 },
    maxSteps: { anyOf: [positiveInt, { type: "null" }] },
    /** "auto" is resolved at load: cuda when the trainer's Python sees a GPU, else cpu. */
    device: { enum: ["auto", "cpu", "cuda"] },
    /** A folder of .txt/.jsonl files (relative to the config file); null: the built-in corpus. */
    dataDir: { type: ["string", "null"], minLength: 1 },
    trainer: {
      oneOf: [
        {
          type: "object",
          additionalProperties: false,
          required: ["kind"],
          properties: { kind: { const: "python" }, env: ENV_ALLOW_SCHEMA },
        },
        {
          type: "object",
          additionalProperties: false,
          required: ["kind", "script"],
          properties: {
            kind: { const: "external" },
            /** A Karpathy-style train.py (relative to the config file). */
            script: { type: "string", minLength: 1 },
            /** The command that runs it; "{script}" is replaced by the copy's path (e.g. ["uv", "run", "{script}"]). */
            command: { type: "array", minItems: 1, items: { type: "string", minLength: 1 } },
            env: ENV_ALLOW_SCHEMA,
            /** The searched constants, by name; the range of each is derived from its value unless declared. */
            params: {
              type: "object",
              maxProperties: 256,
              propertyNames: { pattern: "^[A-Za-z_][A-Za-z0-9_]*(\\[[0-9]+\\])?$" },
              additionalProperties: PARAM_DECLARATION_SCHEMA,
            },
            /** A branch bilevel/<name> with one commit per trial; default: on when the script is in a git repository. */
            git: { type: "boolean" },
            /** The research brief for the LLM (relative to the config file); default program.md next to the script; null: none. */
            program: { type: ["string", "null"], minLength: 1 },
            /** A trial is killed after budgetSeconds × timeoutFactor + graceSeconds. */
            timeoutFactor: { type: "number", minimum: 1, maximum: 100 },
            graceSeconds: { type: "number", minimum: 0, maximum: 86400 },
          },
        },
        closed({
          kind: { const: "synthetic" },
          delayMs: { type: "integer", minimum: 0, maximum: 600000 },
          noise: { type: "number", minimum: 0, maximum: 1 },
        }),
        {
          /** A model fitted to recorded trials (runtime/surrogate/); docs/studies.md. */
          type: "object",
          additionalProperties: false,
          required: ["kind"],
          properties: {
            kind: { const: "surrogate" },
            /** The recorded data (relative to the config file); default: the committed CPU recording. */
            file: { type: "string", minLength: 1 },
            /** σ of the noise added to predictions; default: the σ measured from the repeated points. */
            noise: { type: "number", minimum: 0, maximum: 1 },
            delayMs: { type: "integer", minimum: 0, maximum: 600000 },
          },
        },
      ],
    },
    /** Trials in flight at once (docs/cluster.md); 1: one after the other. */
    parallel: { type: "integer", minimum: 1, maximum: 1024 },
    /** Where trials run: slots on this machine, or one Slurm job per trial (docs/cluster.md). */
    executor: { oneOf: [LOCAL_EXECUTOR_SCHEMA, SLURM_EXECUTOR_SCHEMA] },
    /** Level 1 options. restartEvery K > 0: every K iterations the incumbent is reset to the best trial so far (group R of a study). */
    level1: {
      type: "object",
      additionalProperties: false,
      required: ["restartEvery"],
      properties: { restartEvery: { type: "integer", minimum: 0, maximum: 100000 } },
    },
    llm: closed({
      baseURL: { type: ["string", "null"], pattern: "^https?://" },
      apiKeyEnv: { type: "string", pattern: "^[A-Za-z_][A-Za-z0-9_]*$" },
      model: { type: "string", minLength: 1 },
      /** null: not sent (reasoning models refuse it). */
      temperature: { type: ["number", "null"], minimum: 0, maximum: 2 },
      maxTokens: positiveInt,
      timeoutMs: { type: "integer", minimum: 100 },
      /** Retries of a transient fault (timeout, connection, 408/409/429/5xx, a broken body). */
      maxRetries: { type: "integer", minimum: 0, maximum: 10 },
      maxTokensField: { enum: ["max_tokens", "max_completion_tokens"] },
      /** How JSON replies are asked for; auto: json_schema, falling back on an "unsupported" 400. */
      structuredOutput: { enum: ["auto", "json_schema", "json_object", "tools", "text"] },
      /** A truncated reply is retried once with max tokens doubled, up to this. */
      maxTokensCap: positiveInt,
      retryBaseMs: { type: "integer", minimum: 0, maximum: 600000 },
      maxRetryWaitMs: { type: "integer", minimum: 0, maximum: 3600000 },
      /** The run stops (non-zero, resumable) after this many calls in a row fail the same way; 0: never. */
      maxConsecutiveFailures: { type: "integer", minimum: 0, maximum: 1000 },
      /** A provider outage (a transient fault outlasting a call's retries) the run waits out, calling again; 0: none. */
      maxOutageMs: { type: "integer", minimum: 0, maximum: 86400000 },
      /** Prompt + completion tokens the run may spend; null: no limit. */
      maxTokensPerRun: { anyOf: [positiveInt, { type: "null" }] },
      onBudgetExhausted: { enum: ["offline", "stop"] },
    }),
    proposer: closed({
      maxChanges: { type: "integer", minimum: 1, maximum: 3 },
      maxRepairs: { type: "integer", minimum: 0, maximum: 10 },
      maxFilterRejections: { type: "integer", minimum: 0, maximum: 20 },
      historyWindow: { type: "integer", minimum: 1, maximum: 200 },
    }),
    acceptance: closed({
      mode: { enum: ["noise-aware", "strict"] },
      baselineRepeats: { type: "integer", minimum: 1, maximum: 50 },
      k: { type: "number", minimum: 0, maximum: 10 },
      minSigma: { type: "number", minimum: 0, maximum: 1 },
    }),
    level15: {
      type: "object",
      additionalProperties: false,
      required: ["every", "maxFreezesPerCycle", "minActive", "freezeAfterTries"],
      properties: {
        every: positiveInt,
        maxFreezesPerCycle: nonNegInt,
        minActive: positiveInt,
        freezeAfterTries: positiveInt,
        /** false: no Level 1.5 steps (Level 2 still runs every `every` × level2.everyCycles iterations). */
        enabled: { type: "boolean" },
      },
    },
    level2: closed({
      everyCycles: nonNegInt,
      maxRepairs: { type: "integer", minimum: 0, maximum: 10 },
      retireWindow: nonNegInt,
    }),
    /** The sandbox policy (the same fields and defaults `mechanism check` uses) plus the run's rules for mechanisms. */
    policy: closed({
      ...sandboxPolicySchema.properties,
      maxActiveMechanisms: { type: "integer", minimum: 0, maximum: 20 },
      autoActivate: { type: "boolean" },
      allowCodeGeneration: { type: "boolean" },
      mechanismBudgetMs: { type: "integer", minimum: 1, maximum: 3600000 },
      maxOverruns: positiveInt,
    }),
    activeParams: {
      anyOf: [{ type: "array", items: { type: "string" }, uniqueItems: true }, { type: "null" }],
    },
    startConfig: { type: "object", additionalProperties: { type: ["number", "string"] } },
    /** Hand-written mechanism files (relative to the config file) activated at the start. */
    mechanisms: { type: "array", items: { type: "string", minLength: 1 } },
  },
} as const;

/** A complete run config (the user's file merged over DEFAULT_RUN_CONFIG). */
export type RunConfig = FromSchema<typeof RUN_CONFIG_SCHEMA>;
export type AcceptanceMode = RunConfig["acceptance"]["mode"];
export type TrainerConfig = RunConfig["trainer"];
export type ExecutorConfig = NonNullable<RunConfig["executor"]>;
export type RunPolicy = RunConfig["policy"];

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
    structuredOutput: "auto",
    maxTokensCap: 16_000,
    retryBaseMs: 1000,
    maxRetryWaitMs: 60_000,
    maxConsecutiveFailures: 3,
    maxOutageMs: 1_800_000,
    maxTokensPerRun: null,
    onBudgetExhausted: "offline",
  },
  proposer: { maxChanges: 3, maxRepairs: 2, maxFilterRejections: 3, historyWindow: 12 },
  level1: { restartEvery: 0 },
  parallel: 1,
  executor: { kind: "local" },
  acceptance: { mode: "noise-aware", baselineRepeats: 3, k: 1, minSigma: 0.001 },
  level15: { every: 5, maxFreezesPerCycle: 2, minActive: 4, freezeAfterTries: 3, enabled: true },
  level2: { everyCycles: 2, maxRepairs: 3, retireWindow: 12 },
  policy: {
    ...DEFAULT_POLICY,
    grantedCapabilities: [...DEFAULT_POLICY.grantedCapabilities],
    maxActiveMechanisms: 3,
    autoActivate: true,
    allowCodeGeneration: true,
    mechanismBudgetMs: 5000,
    maxOverruns: 3,
  },
  activeParams: null,
  startConfig: {},
  mechanisms: [],
};

/** A run config resolved once at load: what a run stores in run.db and does. */
export interface ResolvedRunConfig extends Omit<RunConfig, "device" | "startConfig"> {
  /** The device trials run on ("auto" resolved). */
  readonly device: "cpu" | "cuda";
  /** The search space with the device's defaults and ranges. */
  readonly searchSpace: readonly ParamSpec[];
  /** The baseline config: the device's defaults (an external script: its constants) with the config's startConfig applied. */
  readonly startConfig: Config;
  /** The user's research brief (an external script's program.md), given to the LLM; null: none. */
  readonly program: ResearchBrief | null;
}

/** Where a config came from: relative paths resolve against `baseDir`. */
export interface ConfigSource {
  readonly baseDir: string;
  /** Shown in messages, e.g. the config file's path. */
  readonly label: string;
}

export interface ResolveOptions {
  /** Overrides applied last (CLI flags). */
  readonly overrides?: DeepPartial<RunConfig>;
  /** Whether the trainer's Python sees a CUDA device (for device "auto"); default: ask it. */
  readonly probeCuda?: () => boolean;
}

export type DeepPartial<T> = { [K in keyof T]?: T[K] extends object ? DeepPartial<T[K]> : T[K] };

// Compiled on first use, its code kept with Node's compile cache (sandbox/validation.ts): a
// command that reads no config does not pay for the schema, and one that does, once.
const ajv = new CachingAjv({ allErrors: true, strict: true, allowUnionTypes: true, coerceTypes: false });
const validateRunConfig = ajv.lazy<RunConfig>(RUN_CONFIG_SCHEMA);

/** A bad run config: exit 2, nothing created. */
export class ConfigError extends UserError {
  override name = "ConfigError";
  constructor(message: string) {
    super(message, 2);
  }
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

const RENAMED: Readonly<Record<string, string>> = {
  "policy.capabilities": "policy.grantedCapabilities",
};

/** The keys the object schema at `schemaPath` (an additionalProperties error's, under `root`) knows. */
function knownKeys(root: unknown, schemaPath: string): string[] {
  let node: unknown = root;
  for (const segment of schemaPath.replace(/^#\//, "").split("/").slice(0, -1)) {
    node =
      isPlainObject(node) || Array.isArray(node) ? (node as Record<string, unknown>)[segment] : undefined;
  }
  return isPlainObject(node) && isPlainObject(node.properties) ? Object.keys(node.properties) : [];
}

/** An unknown field's line: what it was renamed to, else the closest known key ("did you mean"). */
function unknownField(name: string, extra: string, known: readonly string[]): string {
  const renamed = RENAMED[name];
  if (renamed) return `${name}: unknown field (renamed to ${renamed})`;
  const near = closestName(extra, known);
  return `${name}: unknown field${near ? ` (did you mean ${near}?)` : ""}`;
}

/**
 * One line per problem, naming the field (an unknown one with the closest known key); `root`: the
 * schema the errors' schemaPaths point into (the run config's, or another file's, e.g. a study's).
 */
export function describeSchemaErrors(
  errors: readonly ErrorObject[],
  root: unknown = RUN_CONFIG_SCHEMA,
): string {
  const lines = errors
    .filter((e) => e.keyword !== "oneOf" && e.keyword !== "anyOf" && e.keyword !== "const")
    .map((e) => {
      const field = e.instancePath === "" ? "" : e.instancePath.slice(1).replaceAll("/", ".");
      if (e.keyword === "additionalProperties") {
        const extra = (e.params as { additionalProperty: string }).additionalProperty;
        return unknownField(field === "" ? extra : `${field}.${extra}`, extra, knownKeys(root, e.schemaPath));
      }
      if (e.keyword === "enum") {
        return `${field}: must be one of ${JSON.stringify((e.params as { allowedValues: unknown }).allowedValues)}`;
      }
      return `${field || "(top level)"}: ${e.message ?? "is invalid"}`;
    });
  const unique = [...new Set(lines)];
  return unique.length > 0
    ? unique.join("\n")
    : errors.map((e) => `${e.instancePath}: ${e.message}`).join("\n");
}

/** Sections that are a oneOf over `kind`, each branch's validator by its kind. */
const KIND_SECTIONS = Object.fromEntries(
  (["trainer", "executor"] as const).map((section) => [
    section,
    new Map<string, { validate: ValidateFunction; schema: unknown }>(
      RUN_CONFIG_SCHEMA.properties[section].oneOf.map((branch) => [
        branch.properties.kind.const,
        { validate: ajv.lazy(branch), schema: branch },
      ]),
    ),
  ]),
) as Record<"trainer" | "executor", Map<string, { validate: ValidateFunction; schema: unknown }>>;

/** The errors of a section with kinds (trainer, executor) against the branch its `kind` names. */
function describeKinded(section: keyof typeof KIND_SECTIONS, value: unknown): string[] {
  const branches = KIND_SECTIONS[section];
  const kind = isPlainObject(value) ? value.kind : undefined;
  const branch = typeof kind === "string" ? branches.get(kind) : undefined;
  if (!branch) return [`${section}.kind: must be one of ${JSON.stringify([...branches.keys()])}`];
  const { validate, schema } = branch;
  validate(value);
  return (validate.errors ?? []).map((e) => {
    const inner = describeSchemaErrors([{ ...e, instancePath: `/${section}${e.instancePath}` }], schema);
    return e.keyword === "required" ? `${section}: ${e.message ?? "is invalid"} (kind ${kind})` : inner;
  });
}

/**
 * Merge a user's partial config over the defaults and validate it; throws ConfigError naming the
 * field (and `label`, where the config came from: its file).
 */
export function mergeRunConfig(
  partial: unknown,
  overrides: DeepPartial<RunConfig> = {},
  label?: string,
): RunConfig {
  const invalid = `invalid run config${label === undefined ? "" : ` (${label})`}`;
  if (!isPlainObject(partial)) throw new ConfigError(`${invalid}: the run config must be a JSON object`);
  const problem = jsonInputProblem(partial);
  if (problem !== null) throw new ConfigError(`${invalid}:\n${problem}`);
  const { $schema: _schema, ...rest } = partial;
  const merged = merge(merge(DEFAULT_RUN_CONFIG, rest), overrides);
  if (!validateRunConfig(merged)) {
    let rest = [...(validateRunConfig.errors ?? [])];
    const lines: string[] = [];
    // oneOf over a section's kinds reports every branch's errors: judge only the branch `kind` names.
    for (const section of ["trainer", "executor"] as const) {
      const inSection = (e: ErrorObject) =>
        e.instancePath === `/${section}` || e.instancePath.startsWith(`/${section}/`);
      if (!rest.some(inSection)) continue;
      lines.push(...describeKinded(section, isPlainObject(merged) ? merged[section] : undefined));
      rest = rest.filter((e) => !inSection(e));
    }
    if (rest.length > 0) lines.push(describeSchemaErrors(rest));
    throw new ConfigError(`${invalid}:\n${lines.join("\n")}`);
  }
  return merged;
}

/**
 * A stored run config with the fields added since it was stored (a run made by an older bilevel,
 * resumed by this one) at their defaults: the stored config merged over the defaults, as a user's
 * file is (every stored field stays as it is).
 */
export function withNewDefaults(stored: ResolvedRunConfig): ResolvedRunConfig {
  return merge(DEFAULT_RUN_CONFIG, stored) as ResolvedRunConfig;
}

/** Merge, validate and resolve: device, paths, policy, search space, starting config. */
export function resolveRunConfig(
  partial: unknown,
  source: ConfigSource,
  options: ResolveOptions = {},
): ResolvedRunConfig {
  const config = mergeRunConfig(partial, options.overrides, source.label);
  const problems: string[] = [];
  const at = (p: string) => path.resolve(source.baseDir, p);
  const dataDir = config.dataDir === null ? null : at(config.dataDir);
  if (dataDir !== null) problems.push(...checkPath("dataDir", dataDir, "dir"));
  let trainer = config.trainer;
  if (trainer.kind === "external") {
    trainer = { ...trainer, script: at(trainer.script) };
    problems.push(...checkPath("trainer.script", trainer.script, "file"));
  }
  if (trainer.kind === "surrogate") {
    const file = trainer.file === undefined ? DEFAULT_SURROGATE_FILE : at(trainer.file);
    trainer = { ...trainer, file };
    problems.push(...checkSurrogateFile(file, config.device));
  }
  const mechanisms = config.mechanisms.map(at);
  mechanisms.forEach((file, i) => {
    const read = readMechanismFile(file);
    if (!read.ok) problems.push(`mechanisms[${i}]: ${read.message}`);
  });
  if (problems.length > 0)
    throw new ConfigError(`invalid run config (${source.label}):\n${problems.join("\n")}`);
  const device = resolveDevice({ ...config, trainer }, options.probeCuda);
  if (trainer.kind === "external") {
    // The search space and the baseline come from the user's script, not the built-in trainer.
    const budgetGiven = isPlainObject(partial) && "budgetSeconds" in partial;
    const ext = resolveExternal({
      script: trainer.script,
      ...(trainer.params ? { params: trainer.params as Record<string, ParamDeclaration> } : {}),
      activeParams: config.activeParams,
      startConfig: config.startConfig,
      baseDir: source.baseDir,
      ...(trainer.program !== undefined ? { program: trainer.program } : {}),
      ...(trainer.git !== undefined ? { git: trainer.git } : {}),
      budgetGiven: budgetGiven || options.overrides?.budgetSeconds !== undefined,
    });
    // One branch moves with each verdict: its trials must run one after the other, here.
    if (ext.git && ((config.parallel ?? 1) > 1 || config.executor?.kind === "slurm"))
      ext.problems.push(
        "parallel > 1 and the slurm executor need trainer.git false: under git each trial is a commit on the run's branch, which moves with every verdict",
      );
    if (ext.problems.length > 0)
      throw new ConfigError(`invalid run config (${source.label}):\n${ext.problems.join("\n")}`);
    return {
      ...config,
      ...(ext.budgetSeconds !== null ? { budgetSeconds: ext.budgetSeconds } : {}),
      device,
      dataDir,
      trainer: { ...trainer, git: ext.git, ...(ext.program ? { program: ext.program.file } : {}) },
      mechanisms,
      activeParams: ext.activeParams,
      searchSpace: ext.searchSpace,
      startConfig: ext.startConfig,
      program: ext.program,
    };
  }
  // The device's evaluation size must fit the data the trials will read (else every trial exits 2).
  const data = config.trainer.kind === "python" ? dataProblems(defaultEvalBytes(device), dataDir) : [];
  if (data.length > 0)
    throw new ConfigError(`invalid run config (${source.label}):\ndataDir: ${data.join("\ndataDir: ")}`);
  const searchSpace = loadSearchSpace(device);
  const startConfig = resolveStart(config, searchSpace, source.label);
  return { ...config, device, dataDir, trainer, mechanisms, searchSpace, startConfig, program: null };
}

function resolveDevice(config: RunConfig, probeCuda?: () => boolean): "cpu" | "cuda" {
  if (config.device !== "auto") return config.device;
  // The synthetic objective has no device; a surrogate has the one it was recorded on.
  if (config.trainer.kind === "synthetic") return "cpu";
  if (config.trainer.kind === "surrogate")
    return surrogateDevice(config.trainer.file ?? DEFAULT_SURROGATE_FILE);
  return (probeCuda ?? cudaAvailable)() ? "cuda" : "cpu";
}

function resolveStart(config: RunConfig, space: readonly ParamSpec[], label: string): Config {
  const byName = new Map(space.map((p) => [p.name, p]));
  const problems: string[] = [];
  for (const name of config.activeParams ?? []) {
    if (!byName.has(name)) problems.push(`activeParams: unknown parameter ${JSON.stringify(name)}`);
  }
  const start: Record<string, number | string> = Object.fromEntries(space.map((p) => [p.name, p.default]));
  for (const [name, value] of Object.entries(config.startConfig)) {
    const spec = byName.get(name);
    if (!spec) {
      problems.push(`startConfig.${name}: unknown parameter`);
      continue;
    }
    for (const e of checkValue(spec, value)) problems.push(`startConfig.${name}: ${e}`);
    start[name] = value;
  }
  if (problems.length > 0) throw new ConfigError(`invalid run config (${label}):\n${problems.join("\n")}`);
  return start;
}

function checkPath(field: string, file: string, kind: "file" | "dir"): string[] {
  let stat: ReturnType<typeof statSync>;
  try {
    stat = statSync(file);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    return [`${field}: ${file} ${code === "ENOENT" ? "does not exist" : `cannot be read (${code})`}`];
  }
  if (kind === "dir" && !stat.isDirectory()) return [`${field}: ${file} is not a folder`];
  if (kind === "file" && !stat.isFile()) return [`${field}: ${file} is not a file`];
  return [];
}

/** Read a JSON config file; relative paths in it resolve against its folder. */
export function loadRunConfig(file: string, options: ResolveOptions = {}): ResolvedRunConfig {
  return resolveRunConfig(
    readConfigFile(file),
    { baseDir: path.dirname(path.resolve(file)), label: file },
    options,
  );
}

export function readConfigFile(file: string): unknown {
  let text: string;
  try {
    if (statSync(file).size > 4 * 1024 * 1024) throw new ConfigError(`config ${file} is larger than 4 MiB`);
    text = readFileSync(file, "utf8");
  } catch (error) {
    if (error instanceof ConfigError) throw error;
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT") throw new ConfigError(`no such file: ${file}`);
    if (code === "EISDIR") throw new ConfigError(`config ${file} is a folder, not a file`);
    throw new ConfigError(`cannot read config ${file}: ${code ?? String(error)}`);
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new ConfigError(`config ${file} is not valid JSON: ${(error as Error).message}`);
  }
}

/** The sandbox limits of a run's policy. */
export function sandboxPolicy(policy: RunPolicy): SandboxPolicy {
  return {
    grantedCapabilities: policy.grantedCapabilities,
    hookTimeoutMs: policy.hookTimeoutMs,
    isolateMemoryMb: policy.isolateMemoryMb,
    capabilityCallBudget: policy.capabilityCallBudget,
    maxJsonBytes: policy.maxJsonBytes,
    maxStateBytes: policy.maxStateBytes,
    maxCapabilityStateBytes: policy.maxCapabilityStateBytes,
    maxLogLines: policy.maxLogLines,
  };
}

/** The fields a resumed run may change; everything else was what the stored trials were measured with. */
export const CHANGEABLE_ON_RESUME: readonly (keyof ResolvedRunConfig)[] = [
  "iterations",
  // How many trials run at once changes the wall time, not what a trial is; the executor stays
  // (its jobs in flight are reattached, and its hardware is what the trials ran on).
  "parallel",
  "llm",
  "proposer",
  "level15",
  "level2",
  "policy",
  "program",
];

/** Dotted paths where two configs differ (leaves of objects; arrays compare whole). */
export function configDiff(before: unknown, after: unknown, prefix = ""): string[] {
  if (isPlainObject(before) && isPlainObject(after)) {
    const keys = [...new Set([...Object.keys(before), ...Object.keys(after)])];
    return keys.flatMap((k) => configDiff(before[k], after[k], prefix === "" ? k : `${prefix}.${k}`));
  }
  return JSON.stringify(before) === JSON.stringify(after) ? [] : [prefix];
}
