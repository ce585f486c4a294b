// The LLM layer: one OpenAI-compatible chat client for every level. Structured calls ask for JSON
// in the run's structured-output mode (runtime/llm/structured-output.ts; `auto` falls back once per
// mode on an "unsupported" 400) and validate the reply with ajv whatever the mode. Transient faults
// are retried with backoff (runtime/llm/transport.ts); a truncated reply is retried once with more
// tokens; invalid, off-schema or empty replies are repaired with the problem fed back (bounded).
// Remote faults never throw: they come back as `{ ok: false, error }`. Every request/reply pair is
// returned as an `LlmExchange` for the run store, with the API key scrubbed out.
import OpenAI from "openai";
import { formatAjvErrors, parseJsonObjectReply, validatorFor } from "./schema.ts";
import {
  isFormatUnsupported,
  nextMode,
  STRUCTURED_MODES,
  type StructuredMode,
  type StructuredSetting,
  wireParts,
  withInstruction,
} from "./structured-output.ts";
import {
  type Attempt,
  classify,
  type RawReply,
  type RetryPolicy,
  readCompletion,
  sendWithRetries,
  type TransportMonitor,
} from "./transport.ts";

export { parseJsonReply, strictSchemaProblems, wireSchema } from "./schema.ts";

export interface LlmConfig {
  /** OpenAI-compatible endpoint; null = OPENAI_BASE_URL from the environment, else offline. */
  readonly baseURL: string | null;
  /** Name of the env var that holds the key (the key itself is never stored or logged). */
  readonly apiKeyEnv: string;
  readonly model: string;
  /** null: not sent at all (reasoning models refuse it). */
  readonly temperature: number | null;
  readonly maxTokens: number;
  readonly timeoutMs: number;
  /** Retries of a transient fault: timeout, connection error, 408/409/429/5xx, a broken body. */
  readonly maxRetries: number;
  /**
   * Which request field carries `maxTokens`: OpenAI's reasoning models want
   * max_completion_tokens; many local servers only know max_tokens (the default).
   */
  readonly maxTokensField?: "max_tokens" | "max_completion_tokens";
  /** How JSON replies are asked for (default auto: json_schema first, falling back). */
  readonly structuredOutput?: StructuredSetting;
  /** A truncated reply is retried once with max tokens doubled, up to this (default 2 × maxTokens). */
  readonly maxTokensCap?: number;
  /** Backoff before the first retry, doubling after (default 1000 ms). */
  readonly retryBaseMs?: number;
  /** The longest wait before a retry, Retry-After included (default 60 s). */
  readonly maxRetryWaitMs?: number;
}

export type ChatRole = "system" | "user" | "assistant";
export interface ChatMessage {
  readonly role: ChatRole;
  readonly content: string;
}

export type LlmErrorCode =
  | "http" // the server answered with an HTTP error status (after retries)
  | "timeout" // no reply within timeoutMs (after retries)
  | "connection" // could not reach the server (after retries)
  | "bad-response" // a 200 whose body is not a chat completion (after retries)
  | "invalid-json" // the model's text is not JSON (after repairs)
  | "schema" // the JSON violates the schema (after repairs)
  | "check" // the reply fails the caller's own checks (after repairs)
  | "truncated" // finish_reason "length" (after a larger max_tokens and repairs)
  | "refused" // the model refused, or the content filter stopped it
  | "empty" // no text in the reply (after repairs)
  | "aborted" // the run was stopped while the call waited
  | "budget"; // the run's LLM token budget is spent: no request was sent

export interface LlmError {
  readonly code: LlmErrorCode;
  readonly message: string;
  /** The HTTP status for code "http". */
  readonly status?: number;
  /** The `param` and `code` of an OpenAI-style error body, when the server sent them. */
  readonly param?: string;
  readonly providerCode?: string;
  /** How long the server asked to wait (Retry-After), in ms. */
  readonly retryAfterMs?: number;
}

/** One request/reply pair, as the run store keeps it. */
export interface LlmExchange {
  readonly purpose: string;
  readonly model: string;
  /** The full conversation sent (mode instruction and repair turns included), secrets scrubbed. */
  readonly messages: readonly ChatMessage[];
  /** The model's text (a tool call's arguments in tools mode), or null when there was none. */
  readonly reply: string | null;
  /** What went wrong with this exchange ("code: message"), or null when it was usable. */
  readonly error: string | null;
  readonly errorCode: LlmErrorCode | null;
  readonly finishReason: string | null;
  readonly promptTokens: number | null;
  readonly completionTokens: number | null;
  /** Of the completion tokens, those spent reasoning (reasoning models). */
  readonly reasoningTokens: number | null;
  /** A reasoning model's reasoning text: stored, never parsed. */
  readonly reasoning: string | null;
  /** The structured-output mode of a JSON request; null for a text request. */
  readonly mode: StructuredMode | null;
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
  /** Told of each attempt and each retry's wait (the console's "waiting for the LLM"). */
  readonly monitor?: TransportMonitor;
  /** Stops the call (and any wait before a retry). */
  readonly signal?: AbortSignal;
}

export interface ChatJsonRequest<T> extends ChatRequestBase {
  /** A JSON Schema that OpenAI's strict structured outputs accept (all properties required, no extras). */
  readonly schema: object;
  /** [a-zA-Z0-9_-]{1,64}, as OpenAI requires. */
  readonly schemaName: string;
  /** Semantic checks after the schema passes; returned strings are fed back like schema errors. */
  readonly check?: (value: T) => readonly string[];
  /** Use exactly this mode, without falling back (the preflight's probes). */
  readonly mode?: StructuredMode;
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

// ---- judging a reply

type Judged<T> = { ok: true; value: T } | { ok: false; error: LlmError; feedback: string | null };
type Judge<T> = (text: string) => Judged<T>;

function problemsFeedback(intro: string, problems: readonly string[], ask: string): string {
  return `${intro}\n${problems.map((p) => `- ${p}`).join("\n")}\n${ask}`;
}

function jsonJudge<T>(request: ChatJsonRequest<T>): Judge<T> {
  const validate = validatorFor(request.schema); // a bad schema is a programming error: throws
  return (text) => {
    const parsed = parseJsonObjectReply(text);
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
        feedback: problemsFeedback(
          "Your JSON does not match the required schema:",
          errors,
          "Reply again with only the corrected JSON object.",
        ),
      };
    }
    const value = parsed.value as T;
    const problems = request.check ? request.check(value) : [];
    if (problems.length === 0) return { ok: true, value };
    return {
      ok: false,
      error: { code: "check", message: `reply fails the checks: ${problems.join("; ")}` },
      feedback: problemsFeedback(
        "Your JSON has these problems:",
        problems,
        "Reply again with only the corrected JSON object.",
      ),
    };
  };
}

function textJudge(request: ChatTextRequest): Judge<string> {
  return (text) => {
    const problems = request.check ? request.check(text) : [];
    if (problems.length === 0) return { ok: true, value: text };
    return {
      ok: false,
      error: { code: "check", message: problems.join("; ") },
      feedback: problemsFeedback("Your reply has these problems:", problems, "Reply again."),
    };
  };
}

/** The text a reply is judged by: a tool call's arguments in tools mode (else the content). */
function replyText(reply: RawReply, mode: StructuredMode | null): string | null {
  return mode === "tools" ? (reply.toolArguments ?? reply.text) : reply.text;
}

/** Refusals, truncation and empty replies are told apart before the content is judged. */
function judgeReply<T>(
  reply: RawReply,
  mode: StructuredMode | null,
  maxTokens: number,
  judge: Judge<T>,
): Judged<T> {
  if (reply.refusal !== null || reply.finishReason === "content_filter") {
    return {
      ok: false,
      error: { code: "refused", message: reply.refusal ?? "stopped by the content filter" },
      feedback: null,
    };
  }
  if (reply.finishReason === "length") {
    return {
      ok: false,
      error: { code: "truncated", message: `reply cut off at the token limit (${maxTokens} tokens)` },
      feedback:
        "Your previous reply was cut off at the token limit. Reply again, complete and more concise: " +
        "shorter strings, no commentary.",
    };
  }
  const text = replyText(reply, mode);
  // DeepSeek's JSON mode may answer with only spaces: blank is empty.
  if (text === null || text.trim() === "") {
    return {
      ok: false,
      error: { code: "empty", message: "the reply has no text" },
      feedback: "Your reply was empty. Reply with the requested content.",
    };
  }
  return judge(text);
}

// ---- the client

/** What a JSON request asks for; null for a text request. */
interface JsonFormat {
  readonly schemaName: string;
  readonly schema: object;
  readonly forced: StructuredMode | null;
}

/** One call's moving parts: the conversation (without the mode's instruction), mode, token limit. */
interface CallState {
  messages: ChatMessage[];
  mode: StructuredMode | null;
  maxTokens: number;
  raised: boolean;
  repairs: number;
}

export type ModelList =
  | { readonly ok: true; readonly ids: readonly string[]; readonly latencyMs: number }
  | { readonly ok: false; readonly error: LlmError; readonly latencyMs: number };

const SCHEMA_NAME = /^[a-zA-Z0-9_-]{1,64}$/;

export class OpenAiLlmClient implements LlmClient {
  readonly model: string;
  readonly baseURL: string;
  private readonly config: LlmConfig & { readonly baseURL: string };
  private readonly openai: OpenAI;
  private readonly scrub: Scrubber;
  private readonly retry: RetryPolicy;
  private mode: StructuredMode;
  private modeListener: ((mode: StructuredMode, reason: string) => void) | null = null;

  constructor(config: LlmConfig & { readonly baseURL: string }, apiKey: string | undefined) {
    this.config = config;
    this.model = config.model;
    this.baseURL = config.baseURL;
    this.scrub = makeScrubber(apiKey);
    const setting = config.structuredOutput ?? "auto";
    this.mode = setting === "auto" ? "json_schema" : setting;
    this.retry = {
      maxRetries: config.maxRetries,
      retryBaseMs: config.retryBaseMs ?? 1000,
      maxRetryWaitMs: config.maxRetryWaitMs ?? 60_000,
    };
    this.openai = new OpenAI({
      baseURL: config.baseURL,
      // Local servers need no key, but the SDK insists on one.
      apiKey: apiKey && apiKey !== "" ? apiKey : "no-key",
      // Retries are ours (transport.ts): each attempt is shown and recorded.
      maxRetries: 0,
      timeout: config.timeoutMs,
      // Debug logging (OPENAI_LOG=debug) would print requests; keep it to warnings.
      logLevel: "warn",
    });
  }

  /** The configured setting (auto, or one fixed mode). */
  get structuredSetting(): StructuredSetting {
    return this.config.structuredOutput ?? "auto";
  }

  /** The mode JSON requests use now. */
  get structuredMode(): StructuredMode {
    return this.mode;
  }

  /** Use `mode` from now on (the run's stored mode, or the one the preflight found). */
  useMode(mode: StructuredMode): void {
    this.mode = mode;
  }

  /** Told when `auto` falls back to another mode during a call. */
  onModeChange(listener: (mode: StructuredMode, reason: string) => void): void {
    this.modeListener = listener;
  }

  /** GET /models: the ids the server lists (one attempt, at most 15 s: a quick look, not a call). */
  async listModels(signal?: AbortSignal): Promise<ModelList> {
    const t0 = performance.now();
    const latency = () => Math.round(performance.now() - t0);
    const timeout = Math.min(this.config.timeoutMs, 15_000);
    try {
      const body: unknown = await this.openai.get("/models", { timeout, ...(signal ? { signal } : {}) });
      const data = (body as { data?: unknown } | null)?.data;
      if (!Array.isArray(data)) {
        return {
          ok: false,
          error: { code: "bad-response", message: "GET /models: not a model list" },
          latencyMs: latency(),
        };
      }
      const ids = data
        .map((d) => (d as { id?: unknown } | null)?.id)
        .filter((id): id is string => typeof id === "string");
      return { ok: true, ids, latencyMs: latency() };
    } catch (error) {
      const e = classify(error, timeout, latency(), this.baseURL);
      return { ok: false, error: { ...e, message: this.scrub(e.message) }, latencyMs: latency() };
    }
  }

  async chatJson<T>(request: ChatJsonRequest<T>): Promise<LlmResult<T>> {
    if (!SCHEMA_NAME.test(request.schemaName)) {
      throw new Error(`chatJson: schemaName ${JSON.stringify(request.schemaName)} must match ${SCHEMA_NAME}`);
    }
    const judge = jsonJudge(request);
    const format = { schemaName: request.schemaName, schema: request.schema, forced: request.mode ?? null };
    return this.loop<T>(request, format, judge);
  }

  async chatText(request: ChatTextRequest): Promise<LlmResult<string>> {
    return this.loop<string>(request, null, textJudge(request));
  }

  /** Send, judge the reply, and go again while a fallback, a larger limit or a repair may help. */
  private async loop<T>(
    request: ChatRequestBase,
    format: JsonFormat | null,
    judge: Judge<T>,
  ): Promise<LlmResult<T>> {
    const maxRepairs = Math.max(0, request.maxRepairs ?? 2);
    const exchanges: LlmExchange[] = [];
    const record = (e: LlmExchange) => {
      exchanges.push(e);
      request.onExchange?.(e);
    };
    const state: CallState = {
      messages: [...request.messages],
      mode: format ? (format.forced ?? this.mode) : null,
      maxTokens: request.maxTokens ?? this.config.maxTokens,
      raised: false,
      repairs: 0,
    };
    for (;;) {
      const parts = format && state.mode ? wireParts(state.mode, format.schemaName, format.schema) : null;
      const sent = withInstruction(state.messages, parts?.instruction ?? null);
      const mode = state.mode;
      const { attempt, latencyMs, startedAt } = await sendWithRetries(
        () => this.sendOnce(sent, request, parts?.fields ?? {}, state.maxTokens),
        {
          policy: this.retry,
          ...(request.monitor ? { monitor: request.monitor } : {}),
          ...(request.signal ? { signal: request.signal } : {}),
          onRetried: (error, ms, at) => record(this.exchange(request, sent, mode, null, error, ms, at)),
        },
      );
      const judged: Judged<T> = attempt.ok
        ? judgeReply(attempt.reply, mode, state.maxTokens, judge)
        : { ok: false, error: attempt.error, feedback: null };
      const reply = attempt.ok ? attempt.reply : null;
      record(
        this.exchange(request, sent, mode, reply, judged.ok ? null : judged.error, latencyMs, startedAt),
      );
      if (judged.ok) return { ok: true, value: judged.value, exchanges };
      if (!this.goAgain(state, judged, format, maxRepairs, reply)) {
        return {
          ok: false,
          error: { ...judged.error, message: this.scrub(judged.error.message) },
          exchanges,
        };
      }
    }
  }

  /** Prepare the next send after a failure; false when nothing more can help. */
  private goAgain(
    state: CallState,
    failed: { error: LlmError; feedback: string | null },
    format: JsonFormat | null,
    maxRepairs: number,
    reply: RawReply | null,
  ): boolean {
    const { error } = failed;
    const next = state.mode ? nextMode(state.mode) : null;
    if (format && !format.forced && this.structuredSetting === "auto" && next && isFormatUnsupported(error)) {
      state.mode = next;
      // Remembered for the run: later calls start in the mode that works.
      if (STRUCTURED_MODES.indexOf(this.mode) < STRUCTURED_MODES.indexOf(next)) {
        this.mode = next;
        this.modeListener?.(next, this.scrub(error.message));
      }
      return true;
    }
    const cap = this.config.maxTokensCap ?? this.config.maxTokens * 2;
    if (error.code === "truncated" && !state.raised && state.maxTokens < cap) {
      state.maxTokens = Math.min(cap, state.maxTokens * 2);
      state.raised = true;
      return true;
    }
    if (failed.feedback === null || state.repairs >= maxRepairs) return false;
    state.repairs++;
    // A truncated reply is useless context; any other bad reply is shown back with the problem.
    const text = reply ? replyText(reply, state.mode) : null;
    const keep = error.code !== "truncated" && text !== null && text.trim() !== "";
    state.messages = [
      ...state.messages,
      ...(keep ? [{ role: "assistant" as const, content: text }] : []),
      { role: "user" as const, content: failed.feedback },
    ];
    return true;
  }

  private exchange(
    request: ChatRequestBase,
    sent: readonly ChatMessage[],
    mode: StructuredMode | null,
    reply: RawReply | null,
    error: LlmError | null,
    latencyMs: number,
    startedAt: Date,
  ): LlmExchange {
    const text = reply ? replyText(reply, mode) : null;
    return {
      purpose: request.purpose,
      model: this.model,
      messages: sent.map((m) => ({ role: m.role, content: this.scrub(m.content) })),
      reply: text !== null ? this.scrub(text) : null,
      error: error ? this.scrub(`${error.code}: ${error.message}`) : null,
      errorCode: error?.code ?? null,
      finishReason: reply?.finishReason ?? null,
      promptTokens: reply?.promptTokens ?? null,
      completionTokens: reply?.completionTokens ?? null,
      reasoningTokens: reply?.reasoningTokens ?? null,
      reasoning: reply?.reasoning != null ? this.scrub(reply.reasoning) : null,
      mode,
      latencyMs,
      startedAt: startedAt.toISOString(),
    };
  }

  private async sendOnce(
    messages: readonly ChatMessage[],
    request: ChatRequestBase,
    fields: Readonly<Record<string, unknown>>,
    maxTokens: number,
  ): Promise<Attempt> {
    const body: Record<string, unknown> = {
      model: this.config.model,
      messages: messages.map((m) => ({ role: m.role, content: m.content })),
      [this.config.maxTokensField ?? "max_tokens"]: maxTokens,
      ...fields,
    };
    // A configured null is never overridden: the model refuses the parameter.
    const temperature =
      this.config.temperature === null ? null : (request.temperature ?? this.config.temperature);
    if (temperature !== null) body.temperature = temperature;
    const t0 = performance.now();
    try {
      // The body is built field by field above; the SDK's overloads cannot see that it is non-streaming.
      const completion: unknown = await this.openai.chat.completions.create(
        body as unknown as OpenAI.Chat.ChatCompletionCreateParamsNonStreaming,
        request.signal ? { signal: request.signal } : undefined,
      );
      const reply = readCompletion(completion);
      if (reply) return { ok: true, reply };
      return {
        ok: false,
        error: { code: "bad-response", message: `not a chat completion: ${describeBody(completion)}` },
      };
    } catch (error) {
      const e = classify(error, this.config.timeoutMs, performance.now() - t0, this.baseURL);
      return { ok: false, error: { ...e, message: this.scrub(e.message) } };
    }
  }
}

/** A short description of a 200 body that is not a chat completion (OpenRouter reports mid-generation errors so). */
function describeBody(body: unknown): string {
  if (typeof body === "string") return body.slice(0, 200);
  const error = (body as { error?: { message?: unknown } } | null)?.error;
  if (error && typeof error.message === "string") return `an error body: ${error.message.slice(0, 200)}`;
  return "an object without choices";
}

/**
 * The run's LLM client, or null when there is no endpoint (config or OPENAI_BASE_URL): the
 * run is then offline. Throws only for a malformed base URL (a configuration error).
 */
export function createLlmClient(
  config: LlmConfig,
  env: Readonly<Record<string, string | undefined>> = process.env,
): OpenAiLlmClient | null {
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

/** The warning a run prints when the key variable is unset (fine for a local server, fatal for a hosted one). */
export function apiKeyWarning(
  config: Pick<LlmConfig, "apiKeyEnv">,
  env: Readonly<Record<string, string | undefined>> = process.env,
): string | null {
  const name = config.apiKeyEnv === "" ? "OPENAI_API_KEY" : config.apiKeyEnv;
  const value = env[name];
  return value === undefined || value.trim() === ""
    ? `${name} is not set: requests go without an API key (fine for a local server; a hosted API will answer 401)`
    : null;
}
