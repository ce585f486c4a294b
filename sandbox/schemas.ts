// JSON Schemas of the host's side of the sandbox boundary, for ajv in strict mode: the hook-call wire
// format, the errors, a compiled mechanism and the run policy. What a mechanism itself sees and
// returns is the contract, in mechanism-api/schemas.ts; these only the host and the child use.
import {
  acceptanceSchema,
  capabilityNameSchema,
  capabilityStateSchema,
  configSchema,
  hookNameSchema,
  identifierSchema,
  jsonSchema,
  manifestSchema,
  paramSpecSchema,
  pendingTrialSchema,
  proposalSchema,
  trialSchema,
} from "../mechanism-api/schemas.ts";

const TEXT_MAX = 4000;

export const hookContextDataSchema = {
  type: "object",
  required: ["iteration", "params", "incumbent", "best", "history", "acceptance", "seed"],
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
    pending: { type: "array", maxItems: 256, items: pendingTrialSchema },
    acceptance: acceptanceSchema,
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

const ms = { type: "number", minimum: 0 } as const;
const requestId = { type: "integer", minimum: 1 } as const;

/**
 * What the compiler process (compiler-server.ts) writes, one per line: it is ready; the answer to
 * request `id` (a CompileResult, and its source map's mappings when it compiled; or only the mappings); or why a line was not a request (id 0 when it had none).
 */
export const compilerAnswerSchema = {
  oneOf: [
    {
      type: "object",
      required: ["ready"],
      additionalProperties: false,
      properties: { ready: { const: true } },
    },
    {
      type: "object",
      required: ["id", "result"],
      additionalProperties: false,
      properties: {
        id: requestId,
        // The source map's, for an ok result (the sandbox child maps runtime errors with them).
        mappings: { type: "string" },
        result: {
          oneOf: [
            {
              type: "object",
              required: ["ok", "mechanism", "compileMs", "lintMs"],
              additionalProperties: false,
              properties: {
                ok: { const: true },
                mechanism: compiledMechanismSchema,
                compileMs: ms,
                lintMs: ms,
              },
            },
            {
              type: "object",
              required: ["ok", "errors", "compileMs", "lintMs"],
              additionalProperties: false,
              properties: {
                ok: { const: false },
                errors: { type: "array", minItems: 1, maxItems: 100, items: sandboxErrorSchema },
                compileMs: ms,
                lintMs: ms,
              },
            },
          ],
        },
      },
    },
    {
      type: "object",
      required: ["id", "mappings"],
      additionalProperties: false,
      properties: { id: requestId, mappings: { type: ["string", "null"] } },
    },
    {
      type: "object",
      required: ["id", "invalid"],
      additionalProperties: false,
      properties: { id: { type: "integer", minimum: 0 }, invalid: { type: "string", maxLength: 2000 } },
    },
  ],
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
