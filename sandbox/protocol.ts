// The host <-> child protocol: one JSON object per line, host -> child on the child's stdin, child
// -> host on fd 3. Both sides cap the line length before parsing and validate every message with
// ajv: the host does not trust the child (it runs guest code), the child does not trust its input.

import type { Config, HookName, Json, ParamSpec, Proposal, Trial } from "../mechanism-api/index.d.ts";
import {
  capabilityStateSchema,
  compiledMechanismSchema,
  filterVerdictSchema,
  guideTextSchema,
  hookContextDataSchema,
  hookNameSchema,
  jsonSchema,
  manifestSchema,
  proposalSchema,
  sandboxErrorSchema,
  suggestionSchema,
  trialSchema,
} from "../mechanism-api/schemas.ts";
import type { CompileResult } from "./compiler.ts";
import type { CapabilityState, CompiledMechanism, HookCall, HookResult, SandboxError } from "./types.ts";
import { validator } from "./validation.ts";

/** Longest protocol line either side accepts (compile requests carry the source, JSON-escaped). */
export const MAX_LINE_CHARS = 32 * 1024 * 1024;

export type Request =
  | { readonly id: number; readonly op: "compile"; readonly source: string }
  | {
      readonly id: number;
      readonly op: "load";
      readonly mechanismId: string;
      readonly mechanism: CompiledMechanism;
    }
  | ({ readonly id: number; readonly op: "call" } & WireCall)
  | { readonly id: number; readonly op: "unload"; readonly mechanismId: string };

/**
 * A HookCall as it crosses to the child: the search space and the history travel as JSON strings,
 * which the child validates once per distinct string and hands to the isolate without re-encoding.
 */
export interface WireCall {
  readonly mechanismId: string;
  readonly hook: HookName;
  readonly iteration: number;
  readonly seed: number;
  readonly incumbent: { readonly config: Config; readonly valBpb: number | null };
  readonly best: { readonly config: Config; readonly valBpb: number } | null;
  readonly state: Json;
  readonly capabilities: CapabilityState;
  readonly argument?: Proposal | Trial;
  readonly paramsJson: string;
  readonly historyJson: string;
}

/** The wire form of a hook call (throws if the call's data is not JSON-serialisable). */
export function toWireCall(call: HookCall): WireCall {
  const { context, ...rest } = call;
  return {
    ...rest,
    iteration: context.iteration,
    seed: context.seed,
    incumbent: context.incumbent,
    best: context.best,
    paramsJson: JSON.stringify(context.params),
    historyJson: JSON.stringify(context.history),
  };
}

export type ChildCallOutcome =
  | {
      readonly ok: true;
      readonly result: HookResult;
      readonly state: unknown;
      /** null when the call changed nothing (saves copying and validating large tabu lists). */
      readonly capabilities: CapabilityState | null;
      readonly logs: readonly string[];
      readonly droppedLogLines: number;
      readonly capabilityCalls: number;
    }
  | { readonly ok: false; readonly error: SandboxError };

export type Response =
  | { readonly id: 0; readonly op: "ready" }
  | { readonly id: number; readonly op: "compile"; readonly result: CompileResult }
  | { readonly id: number; readonly op: "load"; readonly error: SandboxError | null }
  | { readonly id: number; readonly op: "call"; readonly outcome: ChildCallOutcome }
  | { readonly id: number; readonly op: "unload" }
  | { readonly id: number; readonly op: "invalid"; readonly message: string };

const id = { type: "integer", minimum: 0 } as const;
const identifier = { type: "string", minLength: 1, maxLength: 200 } as const;

const requestSchema = {
  type: "object",
  discriminator: { propertyName: "op" },
  required: ["op"],
  properties: { op: { type: "string" } },
  oneOf: [
    {
      type: "object",
      required: ["id", "op", "source"],
      additionalProperties: false,
      properties: { id, op: { const: "compile" }, source: { type: "string" } },
    },
    {
      type: "object",
      required: ["id", "op", "mechanismId", "mechanism"],
      additionalProperties: false,
      properties: { id, op: { const: "load" }, mechanismId: identifier, mechanism: compiledMechanismSchema },
    },
    {
      type: "object",
      additionalProperties: false,
      required: [
        "id",
        "op",
        "mechanismId",
        "hook",
        "iteration",
        "seed",
        "incumbent",
        "best",
        "state",
        "capabilities",
        "paramsJson",
        "historyJson",
      ],
      properties: {
        id,
        op: { const: "call" },
        mechanismId: identifier,
        hook: hookNameSchema,
        iteration: hookContextDataSchema.properties.iteration,
        seed: hookContextDataSchema.properties.seed,
        incumbent: hookContextDataSchema.properties.incumbent,
        best: hookContextDataSchema.properties.best,
        state: jsonSchema,
        capabilities: capabilityStateSchema,
        argument: { anyOf: [proposalSchema, trialSchema] },
        paramsJson: { type: "string" },
        historyJson: { type: "string" },
      },
    },
    {
      type: "object",
      required: ["id", "op", "mechanismId"],
      additionalProperties: false,
      properties: { id, op: { const: "unload" }, mechanismId: identifier },
    },
  ],
} as const;

const ms = { type: "number", minimum: 0 } as const;

/** One hook's result: `{ hook, value }` with the hook's own value schema. */
function hookResult(hook: string, value: object) {
  return {
    type: "object",
    required: ["hook", "value"],
    additionalProperties: false,
    properties: { hook: { const: hook }, value },
  } as const;
}

const hookResultSchema = {
  type: "object",
  discriminator: { propertyName: "hook" },
  required: ["hook"],
  properties: { hook: { type: "string" } },
  oneOf: [
    hookResult("init", jsonSchema),
    hookResult("guide", guideTextSchema),
    hookResult("suggest", { oneOf: [{ type: "null" }, suggestionSchema] }),
    hookResult("filter", filterVerdictSchema),
    hookResult("observe", { type: "null" }),
  ],
} as const;

const responseSchema = {
  type: "object",
  discriminator: { propertyName: "op" },
  required: ["op"],
  properties: { op: { type: "string" } },
  oneOf: [
    {
      type: "object",
      required: ["id", "op"],
      additionalProperties: false,
      properties: { id: { const: 0 }, op: { const: "ready" } },
    },
    {
      type: "object",
      required: ["id", "op", "result"],
      additionalProperties: false,
      properties: {
        id,
        op: { const: "compile" },
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
      required: ["id", "op", "error"],
      additionalProperties: false,
      properties: { id, op: { const: "load" }, error: { oneOf: [{ type: "null" }, sandboxErrorSchema] } },
    },
    {
      type: "object",
      required: ["id", "op", "outcome"],
      additionalProperties: false,
      properties: {
        id,
        op: { const: "call" },
        outcome: {
          oneOf: [
            {
              type: "object",
              required: [
                "ok",
                "result",
                "state",
                "capabilities",
                "logs",
                "droppedLogLines",
                "capabilityCalls",
              ],
              additionalProperties: false,
              properties: {
                ok: { const: true },
                result: hookResultSchema,
                state: jsonSchema,
                capabilities: { oneOf: [{ type: "null" }, capabilityStateSchema] },
                logs: { type: "array", maxItems: 10000, items: { type: "string", maxLength: 2000 } },
                droppedLogLines: { type: "integer", minimum: 0 },
                capabilityCalls: { type: "integer", minimum: 0 },
              },
            },
            {
              type: "object",
              required: ["ok", "error"],
              additionalProperties: false,
              properties: { ok: { const: false }, error: sandboxErrorSchema },
            },
          ],
        },
      },
    },
    {
      type: "object",
      required: ["id", "op"],
      additionalProperties: false,
      properties: { id, op: { const: "unload" } },
    },
    {
      type: "object",
      required: ["id", "op", "message"],
      additionalProperties: false,
      properties: { id, op: { const: "invalid" }, message: { type: "string", maxLength: 2000 } },
    },
  ],
} as const;

export const isRequest = validator<Request>(requestSchema);
export const isResponse = validator<Response>(responseSchema);
export const isHookResult = validator<HookResult>(hookResultSchema);
export const isParamList = validator<ParamSpec[]>(hookContextDataSchema.properties.params);
export const isHistory = validator<Trial[]>(hookContextDataSchema.properties.history);
export const isManifest = validator<CompiledMechanism["manifest"]>(manifestSchema);

/** A request whose data is invalid: answered with op "invalid", never blamed on a mechanism. */
export class InvalidRequest extends Error {
  override readonly name = "InvalidRequest";
}

/** Splits a byte stream into lines, refusing any line longer than `maxChars` (without buffering it). */
export class LineReader {
  private buffer = "";
  private readonly maxChars: number;
  private readonly onLine: (line: string) => void;
  private readonly onOverflow: () => void;
  private overflowed = false;

  constructor(maxChars: number, onLine: (line: string) => void, onOverflow: () => void) {
    this.maxChars = maxChars;
    this.onLine = onLine;
    this.onOverflow = onOverflow;
  }

  push(chunk: string): void {
    if (this.overflowed) return;
    let start = 0;
    for (let nl = chunk.indexOf("\n", start); nl >= 0; nl = chunk.indexOf("\n", start)) {
      const line = this.buffer + chunk.slice(start, nl);
      this.buffer = "";
      start = nl + 1;
      if (line.length > this.maxChars) {
        this.overflow();
        return;
      }
      if (line.length > 0) this.onLine(line);
    }
    this.buffer += chunk.slice(start);
    if (this.buffer.length > this.maxChars) this.overflow();
  }

  private overflow(): void {
    this.overflowed = true;
    this.buffer = "";
    this.onOverflow();
  }
}
