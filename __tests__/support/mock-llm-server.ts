// A real OpenAI-compatible HTTP server on 127.0.0.1 with scripted replies and faults, so
// tests exercise the real `openai` client over real sockets (no patched client).
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";

export interface MockUsage {
  readonly prompt_tokens: number;
  readonly completion_tokens: number;
}

/** One scripted reply. `delayMs` holds the reply back (e.g. past the client's timeout). */
export type MockStep =
  | {
      readonly content: string | null;
      readonly finishReason?: "stop" | "length" | "content_filter";
      readonly usage?: MockUsage;
      readonly delayMs?: number;
    }
  /** The model declined (OpenAI's structured-output refusal). */
  | { readonly refusal: string; readonly delayMs?: number }
  /** An HTTP error; `body` defaults to an OpenAI-style error object. */
  | { readonly status: number; readonly body?: string | object; readonly delayMs?: number }
  /** A 200 whose body is sent verbatim as application/json (e.g. "not json"). */
  | { readonly rawBody: string; readonly contentType?: string; readonly delayMs?: number };

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
 * that matches none, or whose queue is empty, gets an HTTP 599 naming the problem.
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
      return { status: 599, body: { error: { message: "mock-llm: no route matches this request" } } };
    const step = route.steps.shift();
    return (
      step ?? { status: 599, body: { error: { message: `mock-llm: route "${route.marker}" exhausted` } } }
    );
  };
}

let completionCounter = 0;

function completionBody(step: Extract<MockStep, { content: string | null }>, model: string): object {
  const content = step.content;
  const usage = step.usage ?? {
    prompt_tokens: 10,
    completion_tokens: content === null ? 0 : Math.ceil(content.length / 4),
  };
  return {
    id: `chatcmpl-mock-${++completionCounter}`,
    object: "chat.completion",
    created: Math.floor(Date.now() / 1000),
    model,
    choices: [
      {
        index: 0,
        message: { role: "assistant", content, refusal: null },
        finish_reason: step.finishReason ?? "stop",
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

function send(res: ServerResponse, status: number, body: string, contentType = "application/json"): void {
  if (res.destroyed) return; // the client gave up (timeout) while we were delaying
  res.writeHead(status, { "content-type": contentType, "content-length": Buffer.byteLength(body) });
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

export async function startMockLlm(script: MockScript): Promise<MockLlm> {
  const requests: RecordedRequest[] = [];
  const timers = new Set<NodeJS.Timeout>();
  const sockets = new Set<Socket>();
  let served = 0;

  const nextStep = (request: RecordedRequest, index: number): MockStep => {
    if (typeof script === "function") return script(request, index);
    const step = script[served];
    if (step === undefined) {
      return {
        status: 599,
        body: { error: { message: `mock-llm: script exhausted after ${script.length} steps` } },
      };
    }
    served++;
    return step;
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
    if (req.method !== "POST" || !req.url?.endsWith("/chat/completions")) {
      send(
        res,
        404,
        JSON.stringify({ error: { message: `mock-llm: no route for ${req.method} ${req.url}` } }),
      );
      return;
    }
    let step: MockStep;
    try {
      step = nextStep(request, index);
    } catch (error) {
      send(res, 599, JSON.stringify({ error: { message: `mock-llm: script threw: ${String(error)}` } }));
      return;
    }
    const model = request.body?.model ?? "mock-model";
    const deliver = (): void => {
      if ("status" in step) {
        const body =
          step.body === undefined
            ? JSON.stringify({ error: { message: `mock failure ${step.status}`, type: "server_error" } })
            : typeof step.body === "string"
              ? step.body
              : JSON.stringify(step.body);
        send(res, step.status, body);
      } else if ("rawBody" in step) {
        send(res, 200, step.rawBody, step.contentType ?? "application/json");
      } else if ("refusal" in step) {
        send(res, 200, JSON.stringify(refusalBody(step.refusal, model)));
      } else {
        send(res, 200, JSON.stringify(completionBody(step, model)));
      }
    };
    const delay = step.delayMs ?? 0;
    if (delay <= 0) {
      deliver();
      return;
    }
    const timer = setTimeout(() => {
      timers.delete(timer);
      deliver();
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
