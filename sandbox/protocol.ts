// The host <-> child protocol: one JSON object per line, host -> child on the child's stdin, child
// -> host on fd 3. Both sides cap the line length before parsing and validate every message with
// ajv: the host does not trust the child (it runs guest code), the child does not trust its input.

import type {
  Acceptance,
  Config,
  HookName,
  Json,
  ParamSpec,
  PendingTrial,
  Proposal,
  Trial,
} from "../mechanism-api/index.d.ts";
import {
  capabilityStateSchema,
  configSchema,
  filterVerdictSchema,
  guideTextSchema,
  hookNameSchema,
  jsonSchema,
  manifestSchema,
  proposalSchema,
  suggestionSchema,
  trialSchema,
} from "../mechanism-api/schemas.ts";
import { frozenJson } from "./frozen-json.ts";
import { compiledMechanismSchema, hookContextDataSchema, sandboxErrorSchema } from "./schemas.ts";
import type {
  CapabilityState,
  CompiledMechanism,
  HookBatch,
  HookCall,
  HookContextData,
  HookResult,
  SandboxError,
} from "./types.ts";
import { validator } from "./validation.ts";

/** Longest protocol line either side accepts (a load carries the mechanism's source and JS, JSON-escaped; the compiler's requests its source). */
export const MAX_LINE_CHARS = 32 * 1024 * 1024;

export type Request =
  | {
      readonly id: number;
      readonly op: "load";
      readonly mechanismId: string;
      readonly mechanism: CompiledMechanism;
      /**
       * Its source map's mappings, from the compiler process (null: the JS is not what its source
       * compiles to); the child then need not load TypeScript to place an error.
       */
      readonly mappings?: string | null;
    }
  | ({ readonly id: number; readonly op: "call" } & WireCall)
  | ({ readonly id: number; readonly op: "batch" } & WireBatch)
  | { readonly id: number; readonly op: "unload"; readonly mechanismId: string };

/**
 * A HookCall as it crosses to the child: the search space and the history travel as JSON strings,
 * which the child validates once per distinct string and hands to the isolate without re-encoding.
 * Either is a number, its length, when it is the text this child accepted with its last call (see
 * HeldTexts): the search space never changes within a run and the history once per iteration,
 * while hooks are called several times per iteration, so most calls carry neither. The child
 * checks the length against the text it holds, so a host and child out of step fail loudly.
 */
export interface WireCall {
  readonly mechanismId: string;
  readonly hook: HookName;
  readonly iteration: number;
  readonly seed: number;
  readonly incumbent: { readonly config: Config; readonly valBpb: number | null };
  readonly best: { readonly config: Config; readonly valBpb: number } | null;
  readonly acceptance: Acceptance;
  readonly pending: readonly PendingTrial[];
  readonly state: Json;
  readonly capabilities: CapabilityState;
  readonly argument?: Proposal | Trial;
  readonly paramsJson: TextOrHeld;
  readonly historyJson: TextOrHeld;
}

/** A call text as sent: the text itself, or the length of the one the child holds (see WireCall). */
export type TextOrHeld = string | number;

/** A call's search space and history as JSON texts: what WireCall may leave out (see HeldTexts). */
export interface CallTexts {
  readonly paramsJson: string;
  readonly historyJson: string;
}

/** A WireCall with both texts in it (nothing left out). */
export type FullWireCall = WireCall & CallTexts;

/** A call's context as it crosses, but for its texts: what a single call and a batch share. */
function wireContext(context: HookContextData) {
  return {
    iteration: context.iteration,
    seed: context.seed,
    incumbent: context.incumbent,
    best: context.best,
    acceptance: context.acceptance,
    pending: context.pending ?? [],
  };
}

/** A context's search space and history as JSON texts (throws if either is not JSON-serialisable). */
export function callTexts(context: HookContextData): CallTexts {
  return {
    paramsJson: jsonText(context.params, "params"),
    historyJson: jsonText(context.history, "history"),
  };
}

function jsonText(value: unknown, what: string): string {
  // Kept by identity when deeply frozen: the loop sends one frozen history per iteration.
  const text: unknown = frozenJson(value);
  if (typeof text !== "string") throw new TypeError(`the context's ${what} is not JSON`);
  return text;
}

/** The wire form of a hook call, texts included (throws if the call's data is not JSON-serialisable). */
export function toWireCall(call: HookCall): FullWireCall {
  const { context, ...rest } = call;
  return { ...rest, ...wireContext(context), ...callTexts(context) };
}

/** A request whose texts may be left out when sent: its JSON without them (`head`), and the texts. */
export interface TextRequest {
  readonly head: string;
  readonly texts: CallTexts;
}

/** A hook call's request (throws if the call's data is not JSON-serialisable). */
export function callRequest(call: HookCall): TextRequest {
  const { paramsJson, historyJson, ...wire } = toWireCall(call);
  return { head: JSON.stringify({ op: "call", ...wire }), texts: { paramsJson, historyJson } };
}

/** The texts of a request as sent (see WireCall): each the text, or the length of the one held. */
export interface SentTexts {
  readonly paramsJson: TextOrHeld;
  readonly historyJson: TextOrHeld;
}

/**
 * A request line: `head` (a request's JSON without its texts) with the texts appended, each as
 * its length where the child holds it already (see HeldTexts.leaveOut).
 */
export function withTexts(head: string, texts: SentTexts): string {
  const params = JSON.stringify(texts.paramsJson);
  const history = JSON.stringify(texts.historyJson);
  return `${head.slice(0, -1)},"paramsJson":${params},"historyJson":${history}}`;
}

/**
 * The longest a request line can be with both texts sent: each text escaped once more inside the
 * line (a quote or a backslash doubles), which must stay under the child's line cap.
 */
export function longestLine(head: string, texts: CallTexts): number {
  return head.length + 2 * (texts.paramsJson.length + texts.historyJson.length) + 64;
}

/**
 * What one sandbox child holds of the texts of the last call it accepted, as the host knows it:
 * a text it holds is left out of the next request. A request it refused, or any failure, forgets
 * both (the child may have kept either); a new child starts with none.
 */
export class HeldTexts {
  private held: CallTexts | null = null;

  /** `texts` with each one the child holds already replaced by its length. */
  leaveOut(texts: CallTexts): SentTexts {
    const { paramsJson, historyJson } = texts;
    return {
      paramsJson: paramsJson === this.held?.paramsJson ? paramsJson.length : paramsJson,
      historyJson: historyJson === this.held?.historyJson ? historyJson.length : historyJson,
    };
  }

  /** After the child answered a request with `texts`: whether it accepted them (checked them and kept them). */
  settle(texts: CallTexts, accepted: boolean): void {
    this.held = accepted ? texts : null;
  }
}

/**
 * Several calls of one hook in one request (HookBatch on the wire): the shared context once, then
 * each mechanism's own data. The child runs them one after another, each in a fresh context with
 * its own isolate timeout, and answers each with an "item" line as soon as it is done (so the host
 * knows which call was running if it has to kill the child), then "batch" with the count.
 */
export interface WireBatch extends Omit<WireCall, "mechanismId" | "state" | "capabilities"> {
  readonly calls: readonly WireBatchCall[];
  /** filter only: run as a chain (runtime/level1/filter-chain.ts); `argument` is the first filter's proposal. */
  readonly chain?: { readonly base: Config; readonly active: readonly string[] };
}

export interface WireBatchCall {
  readonly mechanismId: string;
  readonly state: Json;
  readonly capabilities: CapabilityState;
}

/** The wire form of a batch, texts included (throws if its data is not JSON-serialisable). */
export function toWireBatch(batch: HookBatch): WireBatch & CallTexts {
  const { context, calls, chain, argument, hook } = batch;
  return {
    hook,
    ...wireContext(context),
    ...callTexts(context),
    ...(argument === undefined ? {} : { argument }),
    calls: calls.map(({ mechanismId, state, capabilities }) => ({ mechanismId, state, capabilities })),
    ...(chain === undefined ? {} : { chain: { base: chain.base, active: chain.active } }),
  };
}

/** The batch's `index`th call as a single call (with the argument the chain has reached). */
export function batchCall(batch: WireBatch, index: number, argument: Proposal | Trial | undefined): WireCall {
  const { calls: _calls, chain: _chain, argument: _argument, ...shared } = batch;
  const call = batch.calls[index]!;
  return { ...shared, ...call, ...(argument === undefined ? {} : { argument }) };
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
  | { readonly id: number; readonly op: "load"; readonly error: SandboxError | null }
  | { readonly id: number; readonly op: "call"; readonly outcome: ChildCallOutcome }
  /** One call of a batch, sent as soon as it is done; `ms` is its time in the child. */
  | {
      readonly id: number;
      readonly op: "item";
      readonly index: number;
      readonly ms: number;
      readonly outcome: ChildCallOutcome;
    }
  /** The end of a batch: `count` items were sent (fewer than the calls when a filter rejected). */
  | { readonly id: number; readonly op: "batch"; readonly count: number }
  | { readonly id: number; readonly op: "unload" }
  | { readonly id: number; readonly op: "invalid"; readonly message: string };

const id = { type: "integer", minimum: 0 } as const;
const identifier = { type: "string", minLength: 1, maxLength: 200 } as const;

/** What a single call and a batch share (the context, once). */
const SHARED_CALL_FIELDS = [
  "hook",
  "iteration",
  "seed",
  "incumbent",
  "best",
  "acceptance",
  "pending",
  "paramsJson",
  "historyJson",
] as const;
const sharedCallProperties = {
  hook: hookNameSchema,
  iteration: hookContextDataSchema.properties.iteration,
  seed: hookContextDataSchema.properties.seed,
  incumbent: hookContextDataSchema.properties.incumbent,
  best: hookContextDataSchema.properties.best,
  acceptance: hookContextDataSchema.properties.acceptance,
  pending: hookContextDataSchema.properties.pending,
  argument: { anyOf: [proposalSchema, trialSchema] },
  paramsJson: { anyOf: [{ type: "string" }, { type: "integer", minimum: 2 }] },
  historyJson: { anyOf: [{ type: "string" }, { type: "integer", minimum: 2 }] },
} as const;

const requestSchema = {
  type: "object",
  discriminator: { propertyName: "op" },
  required: ["op"],
  properties: { op: { type: "string" } },
  oneOf: [
    {
      type: "object",
      required: ["id", "op", "mechanismId", "mechanism"],
      additionalProperties: false,
      properties: {
        id,
        op: { const: "load" },
        mechanismId: identifier,
        mechanism: compiledMechanismSchema,
        mappings: { type: ["string", "null"] },
      },
    },
    {
      type: "object",
      additionalProperties: false,
      required: ["id", "op", "mechanismId", ...SHARED_CALL_FIELDS, "state", "capabilities"],
      properties: {
        id,
        op: { const: "call" },
        mechanismId: identifier,
        ...sharedCallProperties,
        state: jsonSchema,
        capabilities: capabilityStateSchema,
      },
    },
    {
      type: "object",
      additionalProperties: false,
      required: ["id", "op", ...SHARED_CALL_FIELDS, "calls"],
      properties: {
        id,
        op: { const: "batch" },
        ...sharedCallProperties,
        calls: {
          type: "array",
          minItems: 1,
          maxItems: 1000,
          items: {
            type: "object",
            required: ["mechanismId", "state", "capabilities"],
            additionalProperties: false,
            properties: { mechanismId: identifier, state: jsonSchema, capabilities: capabilityStateSchema },
          },
        },
        chain: {
          type: "object",
          required: ["base", "active"],
          additionalProperties: false,
          properties: {
            base: configSchema,
            active: { type: "array", maxItems: 256, items: { type: "string", maxLength: 200 } },
          },
        },
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

const callOutcomeSchema = {
  oneOf: [
    {
      type: "object",
      required: ["ok", "result", "state", "capabilities", "logs", "droppedLogLines", "capabilityCalls"],
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
        outcome: callOutcomeSchema,
      },
    },
    {
      type: "object",
      required: ["id", "op", "index", "ms", "outcome"],
      additionalProperties: false,
      properties: {
        id,
        op: { const: "item" },
        index: { type: "integer", minimum: 0 },
        ms,
        outcome: callOutcomeSchema,
      },
    },
    {
      type: "object",
      required: ["id", "op", "count"],
      additionalProperties: false,
      properties: { id, op: { const: "batch" }, count: { type: "integer", minimum: 0 } },
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
