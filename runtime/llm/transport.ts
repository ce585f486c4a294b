// One chat completion over HTTP, read defensively, with transient faults retried: timeouts,
// connection errors, 408/409/429/5xx (Retry-After honoured) and a 200 whose body is not a chat
// completion. The SDK's own retries are off so that every attempt is visible (display, record).
import { APIConnectionError, APIConnectionTimeoutError, APIError, APIUserAbortError } from "openai";
import type { LlmError } from "./client.ts";
import { splitThinking } from "./structured-output.ts";

/** A chat completion as the client needs it; every field read defensively. */
export interface RawReply {
  /** message.content, a leading <think> block split off into `reasoning`. */
  readonly text: string | null;
  /** The first tool call's arguments (tools mode). */
  readonly toolArguments: string | null;
  readonly refusal: string | null;
  /** reasoning_content / reasoning (reasoning models): stored, never parsed. */
  readonly reasoning: string | null;
  readonly finishReason: string | null;
  readonly promptTokens: number | null;
  readonly completionTokens: number | null;
  readonly reasoningTokens: number | null;
}

export type Attempt = { ok: true; reply: RawReply } | { ok: false; error: LlmError };

export interface RetryPolicy {
  /** Retries of a transient fault (0 = none). */
  readonly maxRetries: number;
  /** Backoff before retry n: retryBaseMs * 2^(n-1), unless the server says (Retry-After). */
  readonly retryBaseMs: number;
  /** Cap on any one wait. */
  readonly maxRetryWaitMs: number;
}

/** What a caller may show while a call waits: each attempt, and each retry's wait. */
export interface TransportMonitor {
  attempt?(attempt: number, of: number): void;
  retry?(error: LlmError, waitMs: number, nextAttempt: number, of: number): void;
  settled?(): void;
}

function asRecord(value: unknown): Record<string, unknown> | null {
  return value !== null && typeof value === "object" && !Array.isArray(value)
    ? (value as Record<string, unknown>)
    : null;
}

const num = (v: unknown) => (typeof v === "number" && Number.isFinite(v) ? v : null);
const str = (v: unknown) => (typeof v === "string" && v !== "" ? v : null);

function firstToolArguments(message: Record<string, unknown>): string | null {
  const calls = message.tool_calls;
  if (!Array.isArray(calls)) return null;
  const fn = asRecord(asRecord(calls[0])?.function);
  const args = fn?.arguments;
  // Some servers send the arguments as an object rather than a JSON string.
  return typeof args === "string" ? args : args !== undefined && args !== null ? JSON.stringify(args) : null;
}

/** Read a chat completion; null when the body is not one (no choices, no message). */
export function readCompletion(body: unknown): RawReply | null {
  const root = asRecord(body);
  const choices = root?.choices;
  if (!Array.isArray(choices) || choices.length === 0) return null;
  const choice = asRecord(choices[0]);
  const message = asRecord(choice?.message);
  if (!choice || !message) return null;
  const usage = asRecord(root?.usage);
  const details = asRecord(usage?.completion_tokens_details);
  const content = typeof message.content === "string" ? splitThinking(message.content) : null;
  return {
    text: content?.content ?? null,
    toolArguments: firstToolArguments(message),
    refusal: str(message.refusal),
    reasoning: str(message.reasoning_content) ?? str(message.reasoning) ?? content?.reasoning ?? null,
    finishReason: typeof choice.finish_reason === "string" ? choice.finish_reason : null,
    promptTokens: num(usage?.prompt_tokens),
    completionTokens: num(usage?.completion_tokens),
    reasoningTokens: num(details?.reasoning_tokens),
  };
}

/** Retry-After (seconds or an HTTP date) or retry-after-ms, in ms; null when absent or unreadable. */
export function retryAfterMs(headers: Headers | undefined, now = Date.now()): number | null {
  const ms = Number.parseFloat(headers?.get("retry-after-ms") ?? "");
  if (Number.isFinite(ms) && ms >= 0) return ms;
  const value = headers?.get("retry-after");
  if (!value) return null;
  if (/^\s*[-+]?[\d.]+\s*$/.test(value)) {
    const seconds = Number(value);
    return Number.isFinite(seconds) && seconds >= 0 ? seconds * 1000 : null;
  }
  const date = Date.parse(value);
  return Number.isFinite(date) ? Math.max(0, date - now) : null;
}

function connectionCause(error: APIConnectionError): string {
  const cause = error.cause;
  if (!(cause instanceof Error)) return error.message;
  const inner = (cause as Error & { cause?: unknown }).cause;
  const code = asRecord(inner)?.code ?? (cause as Error & { code?: unknown }).code;
  return typeof code === "string" ? code : cause.message;
}

/** The socket error's words when `error` is a body read cut by the connection closing; else null. */
function cutConnection(error: unknown): string | null {
  // By shape, not instanceof: the error may come from another realm (jest's vm contexts).
  const e = asRecord(error);
  if (e?.name !== "TypeError" || e.message !== "terminated") return null;
  const cause = asRecord(e.cause);
  const code = cause?.code;
  if (typeof code !== "string" || !code.startsWith("UND_ERR")) return null;
  return typeof cause?.message === "string" ? cause.message : code;
}

/** An SDK error as the client's LlmError; connection errors name the URL. */
export function classify(error: unknown, timeoutMs: number, elapsedMs: number, url: string): LlmError {
  // Under some runtimes (e.g. jest's vm realms) the SDK cannot recognise its own abort and
  // reports a plain connection error; a connection error after the full timeout is a timeout.
  if (
    error instanceof APIConnectionTimeoutError ||
    (error instanceof APIConnectionError && elapsedMs >= timeoutMs)
  ) {
    return { code: "timeout", message: `no reply from ${url} within ${timeoutMs} ms` };
  }
  if (error instanceof APIUserAbortError) return { code: "aborted", message: "request aborted" };
  if (error instanceof APIConnectionError) {
    return { code: "connection", message: `cannot reach ${url}: ${connectionCause(error)}` };
  }
  if (error instanceof APIError) {
    const retryAfter = retryAfterMs(error.headers);
    return {
      code: "http",
      status: error.status ?? 0,
      message: error.message,
      ...(typeof error.param === "string" ? { param: error.param } : {}),
      ...(typeof error.code === "string" ? { providerCode: error.code } : {}),
      ...(retryAfter !== null ? { retryAfterMs: retryAfter } : {}),
    };
  }
  // The connection closed while the body was being read (headers already in): undici's
  // TypeError "terminated" with the socket error as its cause. A transport fault, not a reply.
  const cut = cutConnection(error);
  if (cut !== null) {
    return {
      code: "connection",
      message: `the connection to ${url} closed before the reply was complete (${cut})`,
    };
  }
  // The SDK parses an application/json body itself; garbage there surfaces as a SyntaxError.
  if (error instanceof SyntaxError) {
    return { code: "bad-response", message: `response body is not JSON: ${error.message}` };
  }
  return { code: "bad-response", message: error instanceof Error ? error.message : String(error) };
}

/** Faults worth the same request again: the server or the network, not the request itself. */
export function isTransient(error: LlmError): boolean {
  if (error.code === "timeout" || error.code === "connection" || error.code === "bad-response") return true;
  const status = error.status ?? 0;
  return error.code === "http" && (status === 408 || status === 409 || status === 429 || status >= 500);
}

/** The wait before retry `n` (1-based): the server's Retry-After, else exponential backoff; capped. */
export function retryDelay(error: LlmError, n: number, policy: RetryPolicy): number {
  const backoff = policy.retryBaseMs * 2 ** (n - 1);
  return Math.min(Math.max(0, error.retryAfterMs ?? backoff), policy.maxRetryWaitMs);
}

/** Resolves after `ms`, or early (false) when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<boolean> {
  if (signal?.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve(true);
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      resolve(false);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

export interface SendOptions {
  readonly policy: RetryPolicy;
  readonly monitor?: TransportMonitor;
  readonly signal?: AbortSignal;
  /** A failed attempt that is about to be retried (for the record). */
  readonly onRetried?: (error: LlmError, latencyMs: number, startedAt: Date) => void;
}

/** `send` until it succeeds, fails for good, or the retries run out; returns the last attempt. */
export async function sendWithRetries(
  send: () => Promise<Attempt>,
  options: SendOptions,
): Promise<{ attempt: Attempt; latencyMs: number; startedAt: Date }> {
  const of = options.policy.maxRetries + 1;
  try {
    for (let n = 1; ; n++) {
      options.monitor?.attempt?.(n, of);
      const startedAt = new Date();
      const t0 = performance.now();
      const attempt = await send();
      const latencyMs = Math.round(performance.now() - t0);
      if (attempt.ok || n >= of || !isTransient(attempt.error) || options.signal?.aborted) {
        return { attempt, latencyMs, startedAt };
      }
      const wait = retryDelay(attempt.error, n, options.policy);
      options.onRetried?.(attempt.error, latencyMs, startedAt);
      options.monitor?.retry?.(attempt.error, wait, n + 1, of);
      if (!(await sleep(wait, options.signal))) {
        return {
          attempt: { ok: false, error: { code: "aborted", message: "stopped while waiting to retry" } },
          latencyMs,
          startedAt,
        };
      }
    }
  } finally {
    options.monitor?.settled?.();
  }
}
