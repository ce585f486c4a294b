// Transient faults retried with backoff over a real local server: 429 with Retry-After, 5xx,
// a 200 whose body is broken, timeouts; what is not transient is not retried; every attempt is
// shown (monitor) and recorded; a stopped run stops the wait.
import { afterEach, describe, expect, test } from "@jest/globals";
import { createLlmClient, type LlmConfig, type OpenAiLlmClient } from "../../../runtime/llm/client.ts";
import { isTransient, readCompletion, retryAfterMs, retryDelay } from "../../../runtime/llm/transport.ts";
import { type MockLlm, type MockScript, startMockLlm } from "../../support/mock-llm-server.ts";

const BASE: LlmConfig = {
  baseURL: null,
  apiKeyEnv: "TEST_LLM_KEY",
  model: "mock-model",
  temperature: 0.3,
  maxTokens: 500,
  timeoutMs: 600_000,
  maxRetries: 3,
  retryBaseMs: 1,
};
const SCHEMA = {
  type: "object",
  additionalProperties: false,
  required: ["n"],
  properties: { n: { type: "number" } },
} as const;
const OK = { content: '{"n":1}' };

let mock: MockLlm | null = null;
afterEach(async () => {
  await mock?.close();
  mock = null;
});

async function setup(script: MockScript, overrides: Partial<LlmConfig> = {}): Promise<OpenAiLlmClient> {
  mock = await startMockLlm(script);
  return createLlmClient({ ...BASE, baseURL: mock.baseURL, ...overrides }, {})!;
}

function recorder() {
  const seen: string[] = [];
  return {
    seen,
    monitor: {
      attempt: (n: number, of: number) => seen.push(`attempt ${n}/${of}`),
      retry: (e: { code: string; status?: number }, waitMs: number, n: number) =>
        seen.push(`retry ${n} after ${e.code}${e.status ?? ""} in ${waitMs}`),
      settled: () => seen.push("settled"),
    },
  };
}

const ask = (llm: OpenAiLlmClient, extra: object = {}) =>
  llm.chatJson<{ n: number }>({
    purpose: "t",
    messages: [{ role: "user", content: "n?" }],
    schema: SCHEMA,
    schemaName: "n",
    maxRepairs: 0,
    ...extra,
  });

describe("transient faults are retried with backoff", () => {
  test("429 with Retry-After: the server's wait is honoured (capped), then the call succeeds", async () => {
    const llm = await setup(
      [
        {
          status: 429,
          headers: { "retry-after": "0.05" },
          body: { error: { message: "Rate limit reached" } },
        },
        {
          status: 429,
          headers: { "retry-after": "3600" },
          body: { error: { message: "Rate limit reached" } },
        },
        OK,
      ],
      { maxRetryWaitMs: 20 },
    );
    const { seen, monitor } = recorder();
    const r = await ask(llm, { monitor });
    expect(r.ok).toBe(true);
    // 50 ms asked, capped at 20; an hour asked, capped at 20.
    expect(seen).toEqual([
      "attempt 1/4",
      "retry 2 after http429 in 20",
      "attempt 2/4",
      "retry 3 after http429 in 20",
      "attempt 3/4",
      "settled",
    ]);
    expect(r.exchanges.map((e) => e.errorCode)).toEqual(["http", "http", null]);
  });

  test("5xx, a broken body and a non-completion 200 (OpenRouter's mid-generation error) are retried", async () => {
    const llm = await setup([
      { status: 503, body: { error: { message: "Server Overloaded" } } },
      { rawBody: '{"id": "x", "choices": [' },
      { rawBody: JSON.stringify({ error: { code: 502, message: "provider returned error" } }) },
      OK,
    ]);
    const r = await ask(llm);
    expect(r).toMatchObject({ ok: true, value: { n: 1 } });
    expect(r.exchanges.map((e) => e.errorCode)).toEqual(["http", "bad-response", "bad-response", null]);
    expect(r.exchanges[2]?.error).toContain("an error body: provider returned error");
  });

  test("a connection closed mid-body is a connection fault naming the URL, retried", async () => {
    const llm = await setup([{ cutBody: '{"id": "x", "choices": [{"message": {"content": "{\\"n' }, OK]);
    const r = await ask(llm);
    expect(r).toMatchObject({ ok: true, value: { n: 1 } });
    expect(r.exchanges.map((e) => e.errorCode)).toEqual(["connection", null]);
    expect(r.exchanges[0]?.error).toBe(
      `connection: the connection to ${mock?.baseURL} closed before the reply was complete (other side closed)`,
    );
  });

  test("after maxRetries the last fault is the result", async () => {
    const llm = await setup(() => ({ status: 500 }), { maxRetries: 2 });
    const r = await ask(llm);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error).toMatchObject({ code: "http", status: 500 });
    expect(mock?.requests).toHaveLength(3);
  });

  test.each([400, 401, 403, 404, 422])("HTTP %i is not retried", async (status) => {
    const llm = await setup(() => ({ status }));
    expect((await ask(llm)).ok).toBe(false);
    expect(mock?.requests).toHaveLength(1);
  });

  test("a timeout is retried", async () => {
    // The answer that is not delayed must still arrive within timeoutMs on a loaded machine.
    const llm = await setup([{ content: '{"n":2}', delayMs: 600_000 }, OK], {
      timeoutMs: 2_000,
      maxRetries: 1,
    });
    const r = await ask(llm);
    expect(r).toMatchObject({ ok: true, value: { n: 1 } });
    expect(r.exchanges[0]?.errorCode).toBe("timeout");
  });

  test("an aborted signal stops the wait before a retry", async () => {
    const llm = await setup(() => ({ status: 503 }), { retryBaseMs: 600_000, maxRetryWaitMs: 600_000 });
    const controller = new AbortController();
    const r = ask(llm, {
      signal: controller.signal,
      monitor: { retry: () => controller.abort() },
    });
    const result = await r;
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.error.code).toBe("aborted");
  });
});

describe("the pieces", () => {
  test("retryAfterMs reads seconds, an HTTP date and retry-after-ms; garbage is null", () => {
    const h = (entries: Record<string, string>) => new Headers(entries);
    expect(retryAfterMs(h({ "retry-after": "2" }))).toBe(2000);
    expect(retryAfterMs(h({ "retry-after-ms": "150" }))).toBe(150);
    expect(retryAfterMs(h({ "retry-after": new Date(10_000).toUTCString() }), 4_000)).toBe(6000);
    expect(retryAfterMs(h({ "retry-after": "soon" }))).toBeNull();
    expect(retryAfterMs(h({ "retry-after": "-5" }))).toBeNull();
    expect(retryAfterMs(h({}))).toBeNull();
    expect(retryAfterMs(undefined)).toBeNull();
  });

  test("retryDelay: exponential backoff, the server's wish first, both capped", () => {
    const policy = { maxRetries: 5, retryBaseMs: 100, maxRetryWaitMs: 1000 };
    const e = { code: "http" as const, status: 503, message: "x" };
    expect([1, 2, 3, 4, 5].map((n) => retryDelay(e, n, policy))).toEqual([100, 200, 400, 800, 1000]);
    expect(retryDelay({ ...e, retryAfterMs: 300 }, 4, policy)).toBe(300);
  });

  test("isTransient", () => {
    for (const status of [408, 409, 429, 500, 502, 503, 504])
      expect(isTransient({ code: "http", status, message: "" })).toBe(true);
    for (const status of [400, 401, 402, 403, 404, 422])
      expect(isTransient({ code: "http", status, message: "" })).toBe(false);
    for (const code of ["timeout", "connection", "bad-response"] as const)
      expect(isTransient({ code, message: "" })).toBe(true);
    for (const code of ["schema", "empty", "refused", "truncated", "aborted", "budget"] as const)
      expect(isTransient({ code, message: "" })).toBe(false);
  });

  test.each([
    null,
    "text",
    42,
    [],
    {},
    { choices: "x" },
    { choices: [] },
    { choices: [null] },
    { choices: [{ message: "x" }] },
    { choices: [{}] },
  ])("readCompletion(%j) is null, not a throw", (body) => {
    expect(readCompletion(body)).toBeNull();
  });

  test("readCompletion: tool arguments sent as an object are kept as JSON text", () => {
    const reply = readCompletion({
      choices: [
        { message: { content: null, tool_calls: [{ function: { name: "f", arguments: { n: 3 } } }] } },
      ],
    });
    expect(reply?.toolArguments).toBe('{"n":3}');
  });
});
