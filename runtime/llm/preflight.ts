// The LLM preflight: before a run spends anything (and for `bilevel llm check`), find out whether
// the endpoint can serve it. Reachability and authentication (GET /models, one attempt), whether
// the model exists, and which structured-output mode works: one tiny JSON request per mode until
// one passes (or every mode, for `llm check`). Each failure is named in one sentence.
import type { LlmError, LlmExchange, OpenAiLlmClient } from "./client.ts";
import { isFormatUnsupported, isUnknownModel, modeChain, type StructuredMode } from "./structured-output.ts";
import type { TransportMonitor } from "./transport.ts";

/** In the probe's system prompt: scripted test servers (and logs) tell a probe from a real call. */
export const PREFLIGHT_MARKER = "[bilevel:preflight]";
export const PREFLIGHT_SCHEMA_NAME = "bilevel_preflight";

const PROBE_SCHEMA = {
  type: "object",
  additionalProperties: false,
  required: ["ok"],
  properties: { ok: { type: "boolean" } },
} as const;

export type CheckStatus = "ok" | "failed" | "warning" | "unknown";

export interface CheckLine {
  readonly check: string;
  readonly status: CheckStatus;
  readonly detail: string;
  readonly latencyMs: number | null;
}

export interface PreflightReport {
  readonly ok: boolean;
  readonly url: string;
  readonly model: string;
  /** The mode the run will use; null when none works. */
  readonly mode: StructuredMode | null;
  readonly lines: readonly CheckLine[];
  /** Why the endpoint cannot serve a run, in one sentence naming the problem; null when ok. */
  readonly problem: string | null;
  readonly exchanges: readonly LlmExchange[];
}

export interface PreflightOptions {
  /** Try every mode the setting allows (`llm check`); a run stops at the first that works. */
  readonly allModes?: boolean;
  /** Where `auto` starts: a resumed run's stored mode. */
  readonly startMode?: StructuredMode | null;
  /** The key variable's name, and whether it is set (named when the key is refused). */
  readonly keyEnv: string;
  readonly keySet: boolean;
  readonly monitor?: TransportMonitor;
  readonly signal?: AbortSignal;
}

type Verdict = { fatal: string } | { modeFailed: string };

interface Context {
  readonly client: OpenAiLlmClient;
  readonly options: PreflightOptions;
  readonly lines: CheckLine[];
  readonly exchanges: LlmExchange[];
  listed: readonly string[] | null;
  /** Whether the chat endpoint accepted the key and the model (a reply, or a refusal of a mode). */
  answered: boolean;
  /** Whether a probe said the model does not exist. */
  modelMissing: boolean;
  /** Whether a probe was refused for its key. */
  authRefused: boolean;
}

function authProblem(ctx: Context, error: LlmError): string {
  const unset = ctx.options.keySet ? "" : `; ${ctx.options.keyEnv} is not set`;
  return `${ctx.client.baseURL} refused the API key (${error.message})${unset}`;
}

function modelProblem(ctx: Context, error: LlmError): string {
  const listed =
    ctx.listed && ctx.listed.length > 0 ? `; it lists: ${ctx.listed.slice(0, 12).join(", ")}` : "";
  return `model ${JSON.stringify(ctx.client.model)} not found at ${ctx.client.baseURL} (${error.message})${listed}`;
}

/** GET /models: reachability, authentication, and whether the model is listed. Null: go on. */
async function checkModels(ctx: Context): Promise<string | null> {
  const models = await ctx.client.listModels(ctx.options.signal);
  const { lines } = ctx;
  if (!models.ok) {
    const { error } = models;
    if (error.code === "connection" || error.code === "timeout" || error.code === "aborted") {
      lines.push({
        check: "reachable",
        status: "failed",
        detail: error.message,
        latencyMs: models.latencyMs,
      });
      return `cannot reach the LLM endpoint: ${error.message}`;
    }
    if (error.code === "http" && (error.status === 401 || error.status === 403)) {
      lines.push({
        check: "reachable",
        status: "ok",
        detail: ctx.client.baseURL,
        latencyMs: models.latencyMs,
      });
      lines.push({ check: "authenticated", status: "failed", detail: error.message, latencyMs: null });
      return authProblem(ctx, error);
    }
    // No model list here (many servers do not have one): the chat request decides.
    lines.push({
      check: "reachable",
      status: "ok",
      detail: `${ctx.client.baseURL} (GET /models: ${error.message})`,
      latencyMs: models.latencyMs,
    });
    return null;
  }
  // A model list proves little about the key (OpenRouter's is public): the chat request tells.
  ctx.listed = models.ids;
  lines.push({ check: "reachable", status: "ok", detail: ctx.client.baseURL, latencyMs: models.latencyMs });
  return null;
}

/** What a failed probe means: the endpoint cannot serve a run at all, or just not in this mode. */
function judgeProbe(ctx: Context, error: LlmError): Verdict {
  const status = error.status ?? 0;
  if (error.code === "http" && (status === 401 || status === 403)) {
    ctx.authRefused = true;
    return { fatal: authProblem(ctx, error) };
  }
  if (isUnknownModel(error)) {
    ctx.modelMissing = true;
    return { fatal: modelProblem(ctx, error) };
  }
  if (isFormatUnsupported(error)) return { modeFailed: `unsupported (${error.message})` };
  if (error.code === "http" && status === 404) {
    return {
      fatal: `${ctx.client.baseURL}/chat/completions answered 404 (${error.message}): is llm.baseURL right? OpenAI-compatible servers usually end in /v1`,
    };
  }
  if (error.code === "http" && status === 402)
    return { fatal: `${ctx.client.baseURL} refused the request for payment (${error.message})` };
  if (error.code === "http" && error.param === "temperature") {
    return { fatal: `the model refuses temperature (${error.message}): set llm.temperature to null` };
  }
  if (error.code === "http" && error.param === "max_tokens") {
    return {
      fatal: `the model refuses max_tokens (${error.message}): set llm.maxTokensField to "max_completion_tokens"`,
    };
  }
  if (error.code === "http" && status >= 400 && status < 500 && status !== 408 && status !== 429) {
    return { modeFailed: `refused (${error.message})` };
  }
  if (
    error.code === "http" ||
    error.code === "connection" ||
    error.code === "timeout" ||
    error.code === "aborted"
  ) {
    return { fatal: `the LLM endpoint is failing: ${error.message}` };
  }
  // The server answered, but the reply was not usable JSON in this mode (after a repair).
  return { modeFailed: `replied, but not usably (${error.code}: ${error.message})` };
}

async function probe(ctx: Context, mode: StructuredMode): Promise<{ ok: true } | Verdict> {
  const { options } = ctx;
  const result = await ctx.client.chatJson<{ ok: boolean }>({
    purpose: "preflight",
    messages: [
      {
        role: "system",
        content: `${PREFLIGHT_MARKER} A connection check. Reply with JSON only: the object {"ok": true}.`,
      },
      { role: "user", content: 'Reply with the JSON object {"ok": true}.' },
    ],
    schema: PROBE_SCHEMA,
    schemaName: PREFLIGHT_SCHEMA_NAME,
    mode,
    maxRepairs: 1,
    ...(options.monitor ? { monitor: options.monitor } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
    onExchange: (e) => ctx.exchanges.push(e),
  });
  if (result.ok) {
    ctx.answered = true;
    return { ok: true };
  }
  const verdict = judgeProbe(ctx, result.error);
  if ("modeFailed" in verdict) ctx.answered = true;
  return verdict;
}

/** Probe each mode the setting allows; returns the first that works, or the fatal problem. */
async function probeModes(ctx: Context): Promise<{ mode: StructuredMode | null; problem: string | null }> {
  const { client, options, lines } = ctx;
  const failures: string[] = [];
  let chosen: StructuredMode | null = null;
  for (const mode of modeChain(client.structuredSetting, options.startMode ?? null)) {
    const before = ctx.exchanges.length;
    const outcome = await probe(ctx, mode);
    const latencyMs = ctx.exchanges.slice(before).reduce((sum, e) => sum + e.latencyMs, 0);
    if ("fatal" in outcome) {
      lines.push({ check: `mode ${mode}`, status: "failed", detail: outcome.fatal, latencyMs });
      return { mode: null, problem: outcome.fatal };
    }
    if ("modeFailed" in outcome) {
      failures.push(`${mode}: ${outcome.modeFailed}`);
      lines.push({ check: `mode ${mode}`, status: "failed", detail: outcome.modeFailed, latencyMs });
      continue;
    }
    lines.push({
      check: `mode ${mode}`,
      status: "ok",
      detail: chosen === null ? "works (the run uses it)" : "works",
      latencyMs,
    });
    chosen = chosen ?? mode;
    if (!options.allModes) break;
  }
  if (chosen !== null) return { mode: chosen, problem: null };
  return {
    mode: null,
    problem: `no structured-output mode works with ${client.model} at ${client.baseURL}: ${failures.join("; ")}`,
  };
}

/** The model line: listed by GET /models, refused by the chat endpoint, or at least answered for. */
function modelLine(ctx: Context): CheckLine {
  const model = ctx.client.model;
  const line = (status: CheckStatus, detail: string): CheckLine => ({
    check: "model",
    status,
    detail,
    latencyMs: null,
  });
  if (ctx.modelMissing) return line("failed", `${model} not found`);
  if (ctx.listed?.includes(model)) return line("ok", `${model} is listed`);
  if (ctx.listed === null)
    return ctx.answered ? line("ok", `${model} answers`) : line("unknown", "no model list");
  const listed = ctx.listed.slice(0, 8).join(", ") || "none";
  const detail = `${model} is not listed by GET /models (listed: ${listed})`;
  return ctx.answered ? line("warning", `${detail}, but the server answers for it`) : line("unknown", detail);
}

export async function preflight(
  client: OpenAiLlmClient,
  options: PreflightOptions,
): Promise<PreflightReport> {
  const ctx: Context = {
    client,
    options,
    lines: [],
    exchanges: [],
    listed: null,
    answered: false,
    modelMissing: false,
    authRefused: false,
  };
  const base = { url: client.baseURL, model: client.model };
  const unreachable = await checkModels(ctx);
  if (unreachable !== null) {
    return {
      ...base,
      ok: false,
      mode: null,
      lines: ctx.lines,
      problem: unreachable,
      exchanges: ctx.exchanges,
    };
  }
  const head = [...ctx.lines];
  ctx.lines.length = 0;
  const { mode, problem } = await probeModes(ctx);
  if (!head.some((l) => l.check === "authenticated")) {
    const auth = (status: CheckStatus, detail: string): CheckLine => ({
      check: "authenticated",
      status,
      detail,
      latencyMs: null,
    });
    head.push(
      ctx.authRefused
        ? auth("failed", problem ?? "refused")
        : ctx.answered
          ? auth("ok", "the chat endpoint accepted the key")
          : auth("unknown", "no answer to tell"),
    );
  }
  const lines = [...head, modelLine(ctx), ...ctx.lines];
  return { ...base, ok: mode !== null, mode, lines, problem, exchanges: ctx.exchanges };
}
