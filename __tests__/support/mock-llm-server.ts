// A real OpenAI-compatible HTTP server on 127.0.0.1 with scripted replies and faults, so
// tests exercise the real `openai` client over real sockets (no patched client).
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { PREFLIGHT_MARKER } from "../../runtime/llm/preflight.ts";

export interface MockUsage {
  readonly prompt_tokens: number;
  readonly completion_tokens: number;
  /** Reasoning models (OpenAI, DeepSeek, OpenRouter) report their reasoning share here. */
  readonly completion_tokens_details?: { readonly reasoning_tokens: number };
}

/** One scripted reply. `delayMs` holds the reply back (e.g. past the client's timeout). */
export type MockStep =
  | {
      readonly content: string | null;
      readonly finishReason?: "stop" | "length" | "content_filter" | "tool_calls";
      readonly usage?: MockUsage;
      /** A reasoning model's chain of thought, in `reasoningField` (default reasoning_content). */
      readonly reasoning?: string;
      readonly reasoningField?: "reasoning_content" | "reasoning";
      /** A tool call (tools mode): the function's name and its arguments (a JSON string). */
      readonly toolCall?: { readonly name: string; readonly arguments: string };
      readonly delayMs?: number;
    }
  /** The model declined (OpenAI's structured-output refusal). */
  | { readonly refusal: string; readonly delayMs?: number }
  /** An HTTP error; `body` defaults to an OpenAI-style error object; `headers` e.g. Retry-After. */
  | {
      readonly status: number;
      readonly body?: string | object;
      readonly headers?: Readonly<Record<string, string>>;
      readonly delayMs?: number;
    }
  /** A 200 whose body is sent verbatim as application/json (e.g. "not json"). */
  | { readonly rawBody: string; readonly contentType?: string; readonly delayMs?: number }
  /** A 200 whose body stops after `cutBody` (Content-Length promises more): the connection is closed mid-body. */
  | { readonly cutBody: string; readonly delayMs?: number };

export interface RecordedRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  /** The raw request body. */
  readonly raw: string;
  /** The parsed body, or null when it was not JSON. */
  readonly body: ChatRequestBody | null;
}

/** The fields of a chat-completions request the tests look at. */
export interface ChatRequestBody {
  readonly model?: string;
  readonly messages?: readonly { readonly role: string; readonly content: string }[];
  readonly response_format?: {
    readonly type: string;
    readonly json_schema?: { readonly name: string; readonly schema: object; readonly strict?: boolean };
  };
  readonly temperature?: number;
  readonly max_tokens?: number;
  readonly max_completion_tokens?: number;
  readonly tools?: readonly {
    readonly type: string;
    readonly function: { readonly name: string; readonly parameters?: object };
  }[];
  readonly tool_choice?: unknown;
  readonly [key: string]: unknown;
}

/** A list of steps served in order, or a function of the request (and its 0-based index). */
export type MockScript = readonly MockStep[] | ((request: RecordedRequest, index: number) => MockStep);

export interface MockLlm {
  /** e.g. http://127.0.0.1:PORT/v1 — pass to the OpenAI client as baseURL. */
  readonly baseURL: string;
  /** Every request received, in order (including ones the script could not answer). */
  readonly requests: RecordedRequest[];
  close(): Promise<void>;
}

/** The system message (or "") of a recorded request. */
export function systemPrompt(request: RecordedRequest): string {
  return request.body?.messages?.find((m) => m.role === "system")?.content ?? "";
}

/** All message contents of a recorded request, joined. */
export function promptText(request: RecordedRequest): string {
  return (request.body?.messages ?? []).map((m) => m.content).join("\n");
}

/**
 * Route requests to separate queues by a marker found in the system prompt, so a
 * multi-call session can be scripted per step. The first matching route wins; a request
 * that matches none, or whose queue is empty, gets an HTTP 400 naming the problem (not a
 * transient fault: a run does not wait it out as a provider outage, and the test fails fast).
 */
export function routeByMarker(
  routes: readonly { readonly marker: string; readonly steps: readonly MockStep[] }[],
): (request: RecordedRequest) => MockStep {
  // Own copies of the queues: the caller's arrays stay intact for reuse across tests.
  const queues = routes.map((r) => ({ marker: r.marker, steps: [...r.steps] }));
  return (request) => {
    const system = systemPrompt(request);
    const route = queues.find((r) => system.includes(r.marker));
    if (!route)
      return { status: 400, body: { error: { message: "mock-llm: no route matches this request" } } };
    const step = route.steps.shift();
    return (
      step ?? { status: 400, body: { error: { message: `mock-llm: route "${route.marker}" exhausted` } } }
    );
  };
}

/** Whether a request is the run's preflight probe (runtime/llm/preflight.ts). */
export function isPreflight(request: RecordedRequest): boolean {
  return systemPrompt(request).includes(PREFLIGHT_MARKER);
}

/**
 * The answer to a preflight probe in the mode it asks for ({"ok": true}, as content or as the
 * forced tool call), or null for any other request: scripts put `preflightReply(r) ??` first.
 */
export function preflightReply(request: RecordedRequest): MockStep | null {
  if (!isPreflight(request)) return null;
  const answer = JSON.stringify({ ok: true });
  const tool = request.body?.tools?.[0]?.function.name;
  return tool ? { content: null, toolCall: { name: tool, arguments: answer } } : { content: answer };
}

let completionCounter = 0;

function completionBody(step: Extract<MockStep, { content: string | null }>, model: string): object {
  const content = step.content;
  const usage = step.usage ?? {
    prompt_tokens: 10,
    completion_tokens: Math.ceil(((content ?? "").length + (step.toolCall?.arguments.length ?? 0)) / 4),
  };
  const message: Record<string, unknown> = { role: "assistant", content, refusal: null };
  if (step.reasoning !== undefined) message[step.reasoningField ?? "reasoning_content"] = step.reasoning;
  if (step.toolCall) {
    message.tool_calls = [
      {
        id: `call_${completionCounter + 1}`,
        type: "function",
        function: { name: step.toolCall.name, arguments: step.toolCall.arguments },
      },
    ];
  }
  return {
    id: `chatcmpl-mock-${++completionCounter}`,
    object: "chat.completion",
    created: Math.floor(Date.now() / 1000),
    model,
    choices: [
      {
        index: 0,
        message,
        finish_reason: step.finishReason ?? (step.toolCall ? "tool_calls" : "stop"),
        logprobs: null,
      },
    ],
    usage: { ...usage, total_tokens: usage.prompt_tokens + usage.completion_tokens },
  };
}

function refusalBody(refusal: string, model: string): object {
  return {
    id: `chatcmpl-mock-${++completionCounter}`,
    object: "chat.completion",
    created: Math.floor(Date.now() / 1000),
    model,
    choices: [{ index: 0, message: { role: "assistant", content: null, refusal }, finish_reason: "stop" }],
    usage: { prompt_tokens: 10, completion_tokens: 5, total_tokens: 15 },
  };
}

function send(
  res: ServerResponse,
  status: number,
  body: string,
  contentType = "application/json",
  headers: Readonly<Record<string, string>> = {},
): void {
  if (res.destroyed) return; // the client gave up (timeout) while we were delaying
  res.writeHead(status, {
    ...headers,
    "content-type": contentType,
    "content-length": Buffer.byteLength(body),
  });
  res.end(body);
}

function parseBody(raw: string): ChatRequestBody | null {
  try {
    const value: unknown = JSON.parse(raw);
    return value !== null && typeof value === "object" && !Array.isArray(value)
      ? (value as ChatRequestBody)
      : null;
  } catch {
    return null;
  }
}

/** Send one step's reply. */
function deliver(res: ServerResponse, step: MockStep, model: string): void {
  if ("status" in step) {
    const body =
      step.body === undefined
        ? JSON.stringify({ error: { message: `mock failure ${step.status}`, type: "server_error" } })
        : typeof step.body === "string"
          ? step.body
          : JSON.stringify(step.body);
    send(res, step.status, body, "application/json", step.headers);
  } else if ("rawBody" in step) {
    send(res, 200, step.rawBody, step.contentType ?? "application/json");
  } else if ("cutBody" in step) {
    if (res.destroyed) return;
    res.writeHead(200, {
      "content-type": "application/json",
      "content-length": Buffer.byteLength(step.cutBody) + 100,
    });
    res.write(step.cutBody);
    setTimeout(() => res.socket?.destroy(), 20);
  } else if ("refusal" in step) {
    send(res, 200, JSON.stringify(refusalBody(step.refusal, model)));
  } else {
    send(res, 200, JSON.stringify(completionBody(step, model)));
  }
}

/** A model list as OpenAI-compatible servers send it (GET /v1/models). */
export function modelList(ids: readonly string[]): MockStep {
  return {
    rawBody: JSON.stringify({
      object: "list",
      data: ids.map((id) => ({ id, object: "model", created: 0, owned_by: "mock" })),
    }),
  };
}

export interface MockOptions {
  /** GET …/models: the ids to list, or a step per request (e.g. a 401). Without it: 404. */
  readonly models?: readonly string[] | ((request: RecordedRequest) => MockStep);
}

/** The script as a function of the request (a list is served in order, then 400s naming that). */
function scriptRunner(script: MockScript): (request: RecordedRequest, index: number) => MockStep {
  if (typeof script === "function") return script;
  let served = 0;
  return () => {
    const step = script[served];
    if (step === undefined) {
      return {
        status: 400,
        body: { error: { message: `mock-llm: script exhausted after ${script.length} steps` } },
      };
    }
    served++;
    return step;
  };
}

export async function startMockLlm(script: MockScript, options: MockOptions = {}): Promise<MockLlm> {
  const requests: RecordedRequest[] = [];
  const timers = new Set<NodeJS.Timeout>();
  const sockets = new Set<Socket>();
  const nextStep = scriptRunner(script);

  const stepFor = (req: IncomingMessage, request: RecordedRequest, index: number): MockStep | null => {
    const { models } = options;
    if (req.method === "GET" && req.url?.endsWith("/models") && models) {
      return typeof models === "function" ? models(request) : modelList(models);
    }
    if (req.method !== "POST" || !req.url?.endsWith("/chat/completions")) return null;
    return nextStep(request, index);
  };

  const respond = (req: IncomingMessage, res: ServerResponse, raw: string): void => {
    const request: RecordedRequest = {
      method: req.method ?? "",
      url: req.url ?? "",
      headers: { ...req.headers },
      raw,
      body: parseBody(raw),
    };
    const index = requests.length;
    requests.push(request);
    let step: MockStep | null;
    try {
      step = stepFor(req, request, index);
    } catch (error) {
      send(res, 400, JSON.stringify({ error: { message: `mock-llm: script threw: ${String(error)}` } }));
      return;
    }
    if (step === null) {
      const message = `mock-llm: no route for ${req.method} ${req.url}`;
      send(res, 404, JSON.stringify({ error: { message } }));
      return;
    }
    const model = request.body?.model ?? "mock-model";
    const ready = step;
    const delay = ready.delayMs ?? 0;
    if (delay <= 0) {
      deliver(res, ready, model);
      return;
    }
    const timer = setTimeout(() => {
      timers.delete(timer);
      deliver(res, ready, model);
    }, delay);
    timers.add(timer);
  };

  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => respond(req, res, Buffer.concat(chunks).toString("utf8")));
  });
  server.on("connection", (socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const { port } = server.address() as AddressInfo;

  return {
    baseURL: `http://127.0.0.1:${port}/v1`,
    requests,
    close: async () => {
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      // Keep-alive sockets would hold server.close() open; end them.
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
