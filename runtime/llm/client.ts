// The LLM layer: one OpenAI-compatible chat client for every level. Structured calls send a
// strict JSON Schema (`response_format`) and validate the reply with ajv anyway; invalid,
// off-schema or truncated replies are retried with the errors fed back (bounded). Remote
// faults never throw: they come back as `{ ok: false, error }`. Every request/reply pair is
// returned as an `LlmExchange` for the run store, with the API key scrubbed out.
import { Ajv, type ErrorObject, type ValidateFunction } from "ajv";
import OpenAI, { APIConnectionError, APIConnectionTimeoutError, APIError, APIUserAbortError } from "openai";

export interface LlmConfig {
  /** OpenAI-compatible endpoint; null = OPENAI_BASE_URL from the environment, else offline. */
  readonly baseURL: string | null;
  /** Name of the env var that holds the key (the key itself is never stored or logged). */
  readonly apiKeyEnv: string;
  readonly model: string;
  readonly temperature: number;
  readonly maxTokens: number;
  readonly timeoutMs: number;
  /** HTTP-level retries by the SDK (5xx, 429, connection errors, timeouts). */
  readonly maxRetries: number;
  /**
   * Which request field carries `maxTokens`: OpenAI's reasoning models want
   * max_completion_tokens; many local servers only know max_tokens (the default).
   */
  readonly maxTokensField?: "max_tokens" | "max_completion_tokens";
}

export type ChatRole = "system" | "user" | "assistant";
export interface ChatMessage {
  readonly role: ChatRole;
  readonly content: string;
}

export type LlmErrorCode =
  | "http" // the server answered with an HTTP error status (after the SDK's retries)
  | "timeout" // no reply within timeoutMs
  | "connection" // could not reach the server
  | "bad-response" // a 200 whose body is not a chat completion
  | "invalid-json" // the model's text is not JSON (after repairs)
  | "schema" // the JSON violates the schema (after repairs)
  | "check" // the reply fails the caller's own checks (after repairs)
  | "truncated" // finish_reason "length" (after repairs)
  | "refused" // the model refused, or the content filter stopped it
  | "empty"; // no text in the reply (after repairs)

export interface LlmError {
  readonly code: LlmErrorCode;
  readonly message: string;
  /** The HTTP status for code "http". */
  readonly status?: number;
}

/** One request/reply pair, as the run store keeps it. */
export interface LlmExchange {
  readonly purpose: string;
  readonly model: string;
  /** The full conversation sent (repair turns included), secrets scrubbed. */
  readonly messages: readonly ChatMessage[];
  /** The model's text, or null when there was none (HTTP error, timeout, refusal). */
  readonly reply: string | null;
  /** What went wrong with this exchange ("code: message"), or null when it was usable. */
  readonly error: string | null;
  readonly errorCode: LlmErrorCode | null;
  readonly finishReason: string | null;
  readonly promptTokens: number | null;
  readonly completionTokens: number | null;
  readonly latencyMs: number;
  /** ISO-8601 time the request was sent. */
  readonly startedAt: string;
}

export type LlmResult<T> =
  | { readonly ok: true; readonly value: T; readonly exchanges: readonly LlmExchange[] }
  | { readonly ok: false; readonly error: LlmError; readonly exchanges: readonly LlmExchange[] };

interface ChatRequestBase {
  /** What the call is for, e.g. "propose", "level2.explore"; stored with each exchange. */
  readonly purpose: string;
  readonly messages: readonly ChatMessage[];
  /** Retries of a bad reply with the problem fed back (default 2). */
  readonly maxRepairs?: number;
  /** Called as soon as each exchange completes, so a run killed mid-call loses nothing stored. */
  readonly onExchange?: (exchange: LlmExchange) => void;
  readonly temperature?: number;
  readonly maxTokens?: number;
}

export interface ChatJsonRequest<T> extends ChatRequestBase {
  /** A JSON Schema that OpenAI's strict structured outputs accept (all properties required, no extras). */
  readonly schema: object;
  /** [a-zA-Z0-9_-]{1,64}, as OpenAI requires. */
  readonly schemaName: string;
  /** Semantic checks after the schema passes; returned strings are fed back like schema errors. */
  readonly check?: (value: T) => readonly string[];
}

export interface ChatTextRequest extends ChatRequestBase {
  /** Checks on the text (e.g. "no code block found"); returned strings are fed back for a repair. */
  readonly check?: (text: string) => readonly string[];
}

export interface LlmClient {
  readonly model: string;
  chatJson<T>(request: ChatJsonRequest<T>): Promise<LlmResult<T>>;
  chatText(request: ChatTextRequest): Promise<LlmResult<string>>;
}

/** Replaces secrets in text that is about to be stored. */
export type Scrubber = (text: string) => string;

const REDACTED = "[REDACTED]";

/**
 * Scrub the key's exact value, and anything shaped like a common API key (sk-..., Bearer ...),
 * so a server that echoes the key, or a model that repeats it, cannot get it into the store.
 */
export function makeScrubber(secret: string | undefined): Scrubber {
  const exact = secret && secret.length >= 4 ? secret : null;
  return (text) => {
    let out = exact ? text.split(exact).join(REDACTED) : text;
    out = out.replace(/\bsk-[A-Za-z0-9_-]{16,}/g, REDACTED);
    out = out.replace(/\b(Bearer\s+)[A-Za-z0-9._~+/=-]{16,}/gi, `$1${REDACTED}`);
    return out;
  };
}

// ---- JSON validation (one strict ajv, each schema compiled once)

const ajv = new Ajv({ strict: true, allErrors: true, coerceTypes: false, useDefaults: false });
const compiled = new Map<string, ValidateFunction>();

function validatorFor(schema: object): ValidateFunction {
  // Keyed by content: callers often build an equal schema per call (e.g. proposalSchema(n)).
  const key = JSON.stringify(schema);
  let validate = compiled.get(key);
  if (!validate) {
    validate = ajv.compile(schema);
    compiled.set(key, validate);
  }
  return validate;
}

function formatAjvErrors(errors: readonly ErrorObject[] | null | undefined): string[] {
  return (errors ?? []).slice(0, 20).map((e) => {
    const where = e.instancePath === "" ? "(root)" : e.instancePath;
    const extra =
      e.keyword === "additionalProperties"
        ? ` (${String((e.params as { additionalProperty?: unknown }).additionalProperty)})`
        : e.keyword === "enum"
          ? ` (${JSON.stringify((e.params as { allowedValues?: unknown }).allowedValues)})`
          : "";
    return `${where}: ${e.message ?? e.keyword}${extra}`;
  });
}

/** Parse a model's JSON text; tolerates a ``` fence around it (local servers ignore response_format). */
export function parseJsonReply(text: string): { ok: true; value: unknown } | { ok: false; message: string } {
  const trimmed = text.trim();
  const fenced = /^```[a-zA-Z]*\s*\n([\s\S]*?)\n?```$/.exec(trimmed);
  try {
    return { ok: true, value: JSON.parse(fenced?.[1] ?? trimmed) };
  } catch (error) {
    return { ok: false, message: error instanceof Error ? error.message : String(error) };
  }
}

// ---- what goes on the wire

/**
 * Keywords some OpenAI-compatible servers reject in strict mode ("not permitted"). They are
 * dropped from the schema sent; ajv still enforces them here, and a violation is repaired.
 */
const LOCAL_ONLY_KEYWORDS = new Set([
  "minLength",
  "maxLength",
  "uniqueItems",
  "minProperties",
  "maxProperties",
]);

/** The schema as sent in `response_format`: a copy without the local-only keywords. */
export function wireSchema(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(wireSchema);
  const record = asRecord(schema);
  if (!record) return schema;
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(record)) {
    // Inside `properties` the keys are field names, not keywords: keep them all.
    if (key === "properties" && asRecord(value)) {
      out[key] = Object.fromEntries(Object.entries(value as object).map(([k, v]) => [k, wireSchema(v)]));
    } else if (!LOCAL_ONLY_KEYWORDS.has(key)) {
      out[key] = wireSchema(value);
    }
  }
  return out;
}

/**
 * Why a schema would fail OpenAI's strict mode: every object needs `additionalProperties: false`
 * and every property listed in `required`. Empty when it is fine. (For tests of callers' schemas.)
 */
export function strictSchemaProblems(schema: unknown, where = "(root)"): string[] {
  if (Array.isArray(schema)) return schema.flatMap((s, i) => strictSchemaProblems(s, `${where}[${i}]`));
  const node = asRecord(schema);
  if (!node) return [];
  const problems: string[] = [];
  const props = asRecord(node.properties);
  if (node.type === "object" || props) {
    if (node.additionalProperties !== false) problems.push(`${where}: additionalProperties must be false`);
    const required = Array.isArray(node.required) ? node.required : [];
    for (const key of Object.keys(props ?? {})) {
      if (!required.includes(key)) problems.push(`${where}: property ${key} must be required`);
    }
  }
  for (const [key, value] of Object.entries(node)) {
    if (key === "properties" && props) {
      for (const [name, sub] of Object.entries(props))
        problems.push(...strictSchemaProblems(sub, `${where}.${name}`));
    } else if (typeof value === "object" && value !== null) {
      problems.push(...strictSchemaProblems(value, `${where}/${key}`));
    }
  }
  return problems;
}

// ---- the client

interface RawReply {
  readonly text: string | null;
  readonly refusal: string | null;
  readonly finishReason: string | null;
  readonly promptTokens: number | null;
  readonly completionTokens: number | null;
}

type Attempt = { ok: true; reply: RawReply } | { ok: false; error: LlmError };

function asRecord(value: unknown): Record<string, unknown> | null {
  return value !== null && typeof value === "object" && !Array.isArray(value)
    ? (value as Record<string, unknown>)
    : null;
}

/** Read a chat completion defensively: the body comes from a server we do not control. */
function readCompletion(body: unknown): RawReply | null {
  const root = asRecord(body);
  const choices = root?.choices;
  if (!Array.isArray(choices) || choices.length === 0) return null;
  const choice = asRecord(choices[0]);
  const message = asRecord(choice?.message);
  if (!choice || !message) return null;
  const usage = asRecord(root?.usage);
  const num = (v: unknown) => (typeof v === "number" && Number.isFinite(v) ? v : null);
  return {
    text: typeof message.content === "string" ? message.content : null,
    refusal: typeof message.refusal === "string" && message.refusal !== "" ? message.refusal : null,
    finishReason: typeof choice.finish_reason === "string" ? choice.finish_reason : null,
    promptTokens: num(usage?.prompt_tokens),
    completionTokens: num(usage?.completion_tokens),
  };
}

function classify(error: unknown, timeoutMs: number, elapsedMs: number): LlmError {
  // Under some runtimes (e.g. jest's vm realms) the SDK cannot recognise its own abort and
  // reports a plain connection error; a connection error after the full timeout is a timeout.
  if (
    error instanceof APIConnectionTimeoutError ||
    (error instanceof APIConnectionError && elapsedMs >= timeoutMs)
  ) {
    return { code: "timeout", message: `no reply within ${timeoutMs} ms` };
  }
  if (error instanceof APIUserAbortError) return { code: "timeout", message: "request aborted" };
  if (error instanceof APIConnectionError) {
    const cause = error.cause instanceof Error ? `: ${error.cause.message}` : "";
    return { code: "connection", message: `${error.message}${cause}` };
  }
  if (error instanceof APIError) {
    return { code: "http", status: error.status ?? 0, message: error.message };
  }
  // The SDK parses an application/json body itself; garbage there surfaces as a SyntaxError.
  if (error instanceof SyntaxError) {
    return { code: "bad-response", message: `response body is not JSON: ${error.message}` };
  }
  return { code: "bad-response", message: error instanceof Error ? error.message : String(error) };
}

const SCHEMA_NAME = /^[a-zA-Z0-9_-]{1,64}$/;

export class OpenAiLlmClient implements LlmClient {
  readonly model: string;
  private readonly config: LlmConfig;
  private readonly openai: OpenAI;
  private readonly scrub: Scrubber;

  constructor(config: LlmConfig & { readonly baseURL: string }, apiKey: string | undefined) {
    this.config = config;
    this.model = config.model;
    this.scrub = makeScrubber(apiKey);
    this.openai = new OpenAI({
      baseURL: config.baseURL,
      // Local servers need no key, but the SDK insists on one.
      apiKey: apiKey && apiKey !== "" ? apiKey : "no-key",
      maxRetries: config.maxRetries,
      timeout: config.timeoutMs,
      // Debug logging (OPENAI_LOG=debug) would print requests; keep it to warnings.
      logLevel: "warn",
    });
  }

  async chatJson<T>(request: ChatJsonRequest<T>): Promise<LlmResult<T>> {
    if (!SCHEMA_NAME.test(request.schemaName)) {
      throw new Error(`chatJson: schemaName ${JSON.stringify(request.schemaName)} must match ${SCHEMA_NAME}`);
    }
    const validate = validatorFor(request.schema); // a bad schema is a programming error: throws
    const responseFormat = {
      type: "json_schema" as const,
      json_schema: {
        name: request.schemaName,
        schema: wireSchema(request.schema) as Record<string, unknown>,
        strict: true,
      },
    };
    return this.loop<T>(request, responseFormat, (text) => {
      const parsed = parseJsonReply(text);
      if (!parsed.ok) {
        return {
          ok: false,
          error: { code: "invalid-json", message: `reply is not valid JSON: ${parsed.message}` },
          feedback: `Your reply is not valid JSON (${parsed.message}). Reply with only the JSON object, no prose, no code fence.`,
        };
      }
      if (!validate(parsed.value)) {
        const errors = formatAjvErrors(validate.errors);
        return {
          ok: false,
          error: { code: "schema", message: `reply violates the schema: ${errors.join("; ")}` },
          feedback: `Your JSON does not match the required schema:\n${errors.map((e) => `- ${e}`).join("\n")}\nReply again with only the corrected JSON object.`,
        };
      }
      const value = parsed.value as T;
      const problems = request.check ? request.check(value) : [];
      if (problems.length > 0) {
        return {
          ok: false,
          error: { code: "check", message: `reply fails the checks: ${problems.join("; ")}` },
          feedback: `Your JSON has these problems:\n${problems.map((p) => `- ${p}`).join("\n")}\nReply again with only the corrected JSON object.`,
        };
      }
      return { ok: true, value };
    });
  }

  async chatText(request: ChatTextRequest): Promise<LlmResult<string>> {
    return this.loop<string>(request, null, (text) => {
      const problems = request.check ? request.check(text) : [];
      if (problems.length > 0) {
        return {
          ok: false,
          error: { code: "check", message: problems.join("; ") },
          feedback: `Your reply has these problems:\n${problems.map((p) => `- ${p}`).join("\n")}\nReply again.`,
        };
      }
      return { ok: true, value: text };
    });
  }

  /** Send, judge the reply, feed the problem back and retry (bounded by maxRepairs). */
  private async loop<T>(
    request: ChatRequestBase,
    responseFormat: object | null,
    judge: (text: string) => { ok: true; value: T } | { ok: false; error: LlmError; feedback: string },
  ): Promise<LlmResult<T>> {
    const maxRepairs = Math.max(0, request.maxRepairs ?? 2);
    const exchanges: LlmExchange[] = [];
    let messages: ChatMessage[] = [...request.messages];
    for (let attempt = 0; ; attempt++) {
      const startedAt = new Date();
      const t0 = performance.now();
      const sent = await this.send(messages, request, responseFormat);
      const latencyMs = Math.round(performance.now() - t0);
      const reply = sent.ok ? sent.reply : null;

      let outcome: { ok: true; value: T } | { ok: false; error: LlmError; feedback: string | null };
      if (!sent.ok) {
        outcome = { ok: false, error: sent.error, feedback: null }; // transport faults: the SDK already retried
      } else if (sent.reply.refusal !== null || sent.reply.finishReason === "content_filter") {
        outcome = {
          ok: false,
          error: { code: "refused", message: sent.reply.refusal ?? "stopped by the content filter" },
          feedback: null,
        };
      } else if (sent.reply.finishReason === "length") {
        outcome = {
          ok: false,
          error: {
            code: "truncated",
            message: `reply cut off at the token limit (${request.maxTokens ?? this.config.maxTokens} tokens)`,
          },
          feedback:
            "Your previous reply was cut off at the token limit. Reply again, complete and more concise: " +
            "shorter strings, no commentary.",
        };
      } else if (sent.reply.text === null || sent.reply.text.trim() === "") {
        outcome = {
          ok: false,
          error: { code: "empty", message: "the reply has no text" },
          feedback: "Your reply was empty. Reply with the requested content.",
        };
      } else {
        outcome = judge(sent.reply.text);
      }

      const exchange: LlmExchange = {
        purpose: request.purpose,
        model: this.model,
        messages: messages.map((m) => ({ role: m.role, content: this.scrub(m.content) })),
        reply: reply?.text != null ? this.scrub(reply.text) : null,
        error: outcome.ok ? null : this.scrub(`${outcome.error.code}: ${outcome.error.message}`),
        errorCode: outcome.ok ? null : outcome.error.code,
        finishReason: reply?.finishReason ?? null,
        promptTokens: reply?.promptTokens ?? null,
        completionTokens: reply?.completionTokens ?? null,
        latencyMs,
        startedAt: startedAt.toISOString(),
      };
      exchanges.push(exchange);
      request.onExchange?.(exchange);

      if (outcome.ok) return { ok: true, value: outcome.value, exchanges };
      const error = { ...outcome.error, message: this.scrub(outcome.error.message) };
      if (outcome.feedback === null || attempt >= maxRepairs) return { ok: false, error, exchanges };
      // A truncated reply is useless context; any other bad reply is shown back with the problem.
      const keepReply = error.code !== "truncated" && reply?.text != null;
      messages = [
        ...messages,
        ...(keepReply ? [{ role: "assistant" as const, content: reply.text ?? "" }] : []),
        { role: "user" as const, content: outcome.feedback },
      ];
    }
  }

  private async send(
    messages: readonly ChatMessage[],
    request: ChatRequestBase,
    responseFormat: object | null,
  ): Promise<Attempt> {
    const maxTokens = request.maxTokens ?? this.config.maxTokens;
    const body: Record<string, unknown> = {
      model: this.config.model,
      messages: messages.map((m) => ({ role: m.role, content: m.content })),
      temperature: request.temperature ?? this.config.temperature,
      [this.config.maxTokensField ?? "max_tokens"]: maxTokens,
    };
    if (responseFormat) body.response_format = responseFormat;
    const t0 = performance.now();
    try {
      // The body is built field by field above; the SDK's overloads cannot see that it is non-streaming.
      const completion: unknown = await this.openai.chat.completions.create(
        body as unknown as OpenAI.Chat.ChatCompletionCreateParamsNonStreaming,
      );
      const reply = readCompletion(completion);
      if (!reply) {
        const shown = typeof completion === "string" ? completion.slice(0, 200) : "an object without choices";
        return { ok: false, error: { code: "bad-response", message: `not a chat completion: ${shown}` } };
      }
      return { ok: true, reply };
    } catch (error) {
      return { ok: false, error: classify(error, this.config.timeoutMs, performance.now() - t0) };
    }
  }
}

/**
 * The run's LLM client, or null when there is no endpoint (config or OPENAI_BASE_URL): the
 * run is then offline. Throws only for a malformed base URL (a configuration error).
 */
export function createLlmClient(
  config: LlmConfig,
  env: Readonly<Record<string, string | undefined>> = process.env,
): LlmClient | null {
  const baseURL = (config.baseURL ?? env.OPENAI_BASE_URL ?? "").trim();
  if (baseURL === "") return null;
  let url: URL;
  try {
    url = new URL(baseURL);
  } catch {
    throw new Error(
      `llm.baseURL: ${JSON.stringify(baseURL)} is not a URL (expected e.g. http://127.0.0.1:8000/v1)`,
    );
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new Error(`llm.baseURL: ${JSON.stringify(baseURL)} must be http(s)`);
  }
  if (url.username !== "" || url.password !== "") {
    throw new Error(
      "llm.baseURL: credentials in the URL would be stored with the run; use the API key env var",
    );
  }
  const apiKeyEnv = config.apiKeyEnv === "" ? "OPENAI_API_KEY" : config.apiKeyEnv;
  return new OpenAiLlmClient({ ...config, baseURL, apiKeyEnv }, env[apiKeyEnv]);
}
