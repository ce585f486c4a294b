// JSON Schemas (draft-07, for ajv in strict mode) of every value that crosses the sandbox boundary.
// Plain data only: this folder imports nothing. Every object schema closes its properties
// (additionalProperties: false) so that nothing unexpected rides along.

const NAME_MAX = 200;
const TEXT_MAX = 4000;

/** Any JSON value. Structure and size are bounded by the sandbox's byte and depth caps, not here. */
export const jsonSchema = {} as const;

/** A number or a short string (one type list, not anyOf: this is validated on every hook call). */
export const paramValueSchema = { type: ["number", "string"], maxLength: NAME_MAX } as const;

export const configSchema = {
  type: "object",
  maxProperties: 256,
  propertyNames: { type: "string", minLength: 1, maxLength: NAME_MAX },
  additionalProperties: paramValueSchema,
} as const;

export const paramSpecSchema = {
  type: "object",
  required: ["name", "kind", "default", "description"],
  additionalProperties: false,
  properties: {
    name: { type: "string", minLength: 1, maxLength: NAME_MAX },
    kind: { enum: ["int", "float", "choice"] },
    min: { type: "number" },
    max: { type: "number" },
    log: { type: "boolean" },
    choices: { type: "array", minItems: 1, maxItems: 256, items: paramValueSchema },
    multipleOf: { type: "number", exclusiveMinimum: 0 },
    powerOfTwo: { type: "boolean" },
    constraints: { type: "array", maxItems: 32, items: { type: "string", maxLength: TEXT_MAX } },
    default: paramValueSchema,
    description: { type: "string", maxLength: TEXT_MAX },
    frozen: { type: "boolean" },
  },
} as const;

export const changeSchema = {
  type: "object",
  required: ["param", "value"],
  additionalProperties: false,
  properties: {
    param: { type: "string", minLength: 1, maxLength: NAME_MAX },
    value: paramValueSchema,
  },
} as const;

export const changesSchema = { type: "array", maxItems: 256, items: changeSchema } as const;

export const proposalSchema = {
  type: "object",
  required: ["changes", "rationale", "source", "config"],
  additionalProperties: false,
  properties: {
    changes: changesSchema,
    rationale: { type: "string", maxLength: TEXT_MAX },
    source: { enum: ["llm", "offline", "mechanism"] },
    config: configSchema,
  },
} as const;

export const trialSchema = {
  type: "object",
  required: ["id", "iteration", "config", "changes", "status", "valBpb", "kept", "delta"],
  additionalProperties: false,
  properties: {
    id: { type: "integer" },
    iteration: { type: "integer" },
    config: configSchema,
    changes: changesSchema,
    status: { enum: ["ok", "invalid-config", "oom", "diverged", "timeout", "crashed"] },
    valBpb: { type: ["number", "null"] },
    kept: { type: "boolean" },
    delta: { type: ["number", "null"] },
  },
} as const;

/** What `filter` returns. */
export const filterVerdictSchema = {
  type: "object",
  discriminator: { propertyName: "verdict" },
  required: ["verdict"],
  properties: { verdict: { type: "string" } },
  oneOf: [
    {
      type: "object",
      required: ["verdict"],
      additionalProperties: false,
      properties: { verdict: { const: "accept" } },
    },
    {
      type: "object",
      required: ["verdict", "reason"],
      additionalProperties: false,
      properties: {
        verdict: { const: "reject" },
        reason: { type: "string", maxLength: TEXT_MAX },
      },
    },
    {
      type: "object",
      required: ["verdict", "changes", "reason"],
      additionalProperties: false,
      properties: {
        verdict: { const: "modify" },
        changes: { ...changesSchema, minItems: 1 },
        reason: { type: "string", maxLength: TEXT_MAX },
      },
    },
  ],
} as const;

/** What `suggest` returns (null = no suggestion). */
export const suggestionSchema = {
  type: "object",
  required: ["changes", "rationale"],
  additionalProperties: false,
  properties: {
    changes: { ...changesSchema, minItems: 1 },
    rationale: { type: "string", maxLength: TEXT_MAX },
  },
} as const;

/** What `guide` returns (null = nothing to add). */
export const guideTextSchema = { type: ["string", "null"], maxLength: TEXT_MAX } as const;

export const hookNameSchema = { enum: ["init", "guide", "suggest", "filter", "observe"] } as const;
export const capabilityNameSchema = { enum: ["tabu", "bandit", "space"] } as const;

export const manifestSchema = {
  type: "object",
  required: ["name", "version", "hooks", "capabilities"],
  additionalProperties: false,
  properties: {
    name: { type: "string", minLength: 1, maxLength: 64, pattern: "^[a-z0-9]+(-[a-z0-9]+)*$" },
    version: { type: "integer", minimum: 1 },
    description: { type: "string", maxLength: TEXT_MAX },
    hooks: { type: "array", minItems: 1, maxItems: 5, uniqueItems: true, items: hookNameSchema },
    capabilities: { type: "array", maxItems: 3, uniqueItems: true, items: capabilityNameSchema },
  },
} as const;

export const identifierSchema = { type: "string", minLength: 1, maxLength: NAME_MAX } as const;

/** A bandit's settings, given to `bandit.arms` and kept with its statistics. */
export const banditSettingsSchema = {
  type: "object",
  additionalProperties: false,
  properties: {
    initial: { type: "number", minimum: -1e6, maximum: 1e6 },
    discount: { type: "number", exclusiveMinimum: 0, maximum: 1 },
  },
} as const;

export const capabilityStateSchema = {
  type: "object",
  required: ["tabu", "bandit"],
  additionalProperties: false,
  properties: {
    tabu: {
      type: "object",
      maxProperties: 64,
      propertyNames: identifierSchema,
      additionalProperties: {
        type: "array",
        maxItems: 1000,
        items: {
          type: "object",
          required: ["config", "expires"],
          additionalProperties: false,
          properties: { config: configSchema, expires: { type: "integer" }, added: { type: "integer" } },
        },
      },
    },
    bandit: {
      type: "object",
      maxProperties: 64,
      propertyNames: identifierSchema,
      additionalProperties: {
        type: "object",
        maxProperties: 256,
        propertyNames: identifierSchema,
        additionalProperties: {
          type: "object",
          required: ["pulls", "rewardSum"],
          additionalProperties: false,
          properties: {
            pulls: { type: "integer", minimum: 0 },
            rewardSum: { type: "number" },
            weight: { type: "number", minimum: 0 },
          },
        },
      },
    },
    banditSettings: {
      type: "object",
      maxProperties: 64,
      propertyNames: identifierSchema,
      additionalProperties: banditSettingsSchema,
    },
  },
} as const;

export const hookContextDataSchema = {
  type: "object",
  required: ["iteration", "params", "incumbent", "best", "history", "seed"],
  additionalProperties: false,
  properties: {
    iteration: { type: "integer", minimum: 0 },
    params: { type: "array", maxItems: 256, items: paramSpecSchema },
    incumbent: {
      type: "object",
      required: ["config", "valBpb"],
      additionalProperties: false,
      properties: { config: configSchema, valBpb: { type: ["number", "null"] } },
    },
    best: {
      oneOf: [
        { type: "null" },
        {
          type: "object",
          required: ["config", "valBpb"],
          additionalProperties: false,
          properties: { config: configSchema, valBpb: { type: "number" } },
        },
      ],
    },
    history: { type: "array", maxItems: 1000, items: trialSchema },
    seed: { type: "integer" },
  },
} as const;

export const hookCallSchema = {
  type: "object",
  required: ["mechanismId", "hook", "context", "state", "capabilities"],
  additionalProperties: false,
  properties: {
    mechanismId: identifierSchema,
    hook: hookNameSchema,
    context: hookContextDataSchema,
    state: jsonSchema,
    capabilities: capabilityStateSchema,
    argument: { anyOf: [proposalSchema, trialSchema] },
  },
} as const;

export const sandboxErrorSchema = {
  type: "object",
  required: ["stage", "code", "message"],
  additionalProperties: false,
  properties: {
    stage: { enum: ["compile", "lint", "load", "init", "guide", "suggest", "filter", "observe"] },
    code: {
      enum: [
        "type-error",
        "syntax-error",
        "forbidden-syntax",
        "invalid-manifest",
        "missing-hook",
        "timeout",
        "memory",
        "invalid-result",
        "invalid-state",
        "capability-denied",
        "capability-budget",
        "capability-error",
        "thrown",
        "crashed",
        "quarantined",
      ],
    },
    message: { type: "string", maxLength: 2 * TEXT_MAX },
    line: { type: "integer", minimum: 1 },
    column: { type: "integer", minimum: 1 },
  },
} as const;

export const compiledMechanismSchema = {
  type: "object",
  required: ["manifest", "source", "js", "sourceHash", "jsHash"],
  additionalProperties: false,
  properties: {
    manifest: manifestSchema,
    source: { type: "string" },
    js: { type: "string" },
    sourceHash: { type: "string", pattern: "^[0-9a-f]{64}$" },
    jsHash: { type: "string", pattern: "^[0-9a-f]{64}$" },
  },
} as const;

export const sandboxPolicySchema = {
  type: "object",
  required: [
    "grantedCapabilities",
    "hookTimeoutMs",
    "isolateMemoryMb",
    "capabilityCallBudget",
    "maxJsonBytes",
    "maxStateBytes",
    "maxCapabilityStateBytes",
    "maxLogLines",
  ],
  additionalProperties: false,
  properties: {
    grantedCapabilities: { type: "array", maxItems: 3, uniqueItems: true, items: capabilityNameSchema },
    hookTimeoutMs: { type: "integer", minimum: 1, maximum: 600000 },
    isolateMemoryMb: { type: "integer", minimum: 8, maximum: 4096 },
    capabilityCallBudget: { type: "integer", minimum: 0, maximum: 1000000 },
    maxJsonBytes: { type: "integer", minimum: 1024, maximum: 64 * 1024 * 1024 },
    maxStateBytes: { type: "integer", minimum: 2, maximum: 64 * 1024 * 1024 },
    // Well under the 32 MiB protocol line, which capability data must cross every call.
    maxCapabilityStateBytes: { type: "integer", minimum: 1024, maximum: 16 * 1024 * 1024 },
    maxLogLines: { type: "integer", minimum: 0, maximum: 10000 },
  },
} as const;
