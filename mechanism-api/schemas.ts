// JSON Schemas (draft-07, for ajv in strict mode) of every value that crosses the sandbox boundary.
// Plain data only: this folder imports nothing from outside it. Every object schema closes its properties
// (additionalProperties: false) so that nothing unexpected rides along.

import { API_VERSION } from "./version.ts";

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
    active: { type: "boolean" },
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
    // Set by the host on the changes it hands out; accepted and ignored in what a mechanism returns.
    previous: paramValueSchema,
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

export const pendingTrialSchema = {
  type: "object",
  required: ["id", "iteration", "config", "changes"],
  additionalProperties: false,
  properties: {
    id: { type: "integer" },
    iteration: { type: "integer" },
    config: configSchema,
    changes: changesSchema,
  },
} as const;

export const acceptanceSchema = {
  type: "object",
  required: ["rule", "k", "sigma", "threshold"],
  additionalProperties: false,
  properties: {
    rule: { enum: ["noise-aware", "strict"] },
    k: { type: "number", minimum: 0 },
    sigma: { type: ["number", "null"], minimum: 0 },
    threshold: { type: "number", minimum: 0 },
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
    apiVersion: { type: "integer", minimum: 1, maximum: API_VERSION },
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
