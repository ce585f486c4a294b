import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, test } from "@jest/globals";
import {
  createLlmClient,
  type LlmClient,
  type LlmConfig,
  type LlmExchange,
  makeScrubber,
  parseJsonReply,
  strictSchemaProblems,
  wireSchema,
} from "../../../runtime/llm/client.ts";
import { type MockLlm, type MockScript, startMockLlm } from "../../support/mock-llm-server.ts";

const BASE: LlmConfig = {
  baseURL: null,
  apiKeyEnv: "TEST_LLM_KEY",
  model: "mock-model",
  temperature: 0.3,
  maxTokens: 500,
  // Never reached by a reply from the local mock, however loaded the machine: only the timeout
  // test below, with its own short timeout, is about timing out.
  timeoutMs: 600_000,
  maxRetries: 0,
  // Retries in these tests wait a millisecond, not seconds.
  retryBaseMs: 1,
};

const SCHEMA = {
  type: "object",
  additionalProperties: false,
  required: ["answer", "score"],
  properties: { answer: { type: "string" }, score: { type: "number", minimum: 0, maximum: 10 } },
} as const;
type Answer = { answer: string; score: number };

let mock: MockLlm | null = null;
afterEach(async () => {
  await mock?.close();
  mock = null;
});

async function setup(
  script: MockScript,
  overrides: Partial<LlmConfig> = {},
  env: Record<string, string> = {},
): Promise<{ llm: LlmClient; mock: MockLlm }> {
  mock = await startMockLlm(script);
  const llm = createLlmClient({ ...BASE, baseURL: mock.baseURL, ...overrides }, env);
  if (!llm) throw new Error("expected a client");
  return { llm, mock };
}

const ask = (llm: LlmClient, maxRepairs = 0, extra: { check?: (v: Answer) => string[] } = {}) =>
  llm.chatJson<Answer>({
    purpose: "test.ask",
    messages: [
      { role: "system", content: "You answer." },
      { role: "user", content: "Question?" },
    ],
    schema: SCHEMA,
    schemaName: "answer",
    maxRepairs,
    ...extra,
  });

describe("chatJson", () => {
  test("sends a strict json_schema response_format and returns the validated value with one exchange", async () => {
    const { llm, mock } = await setup([
      { content: '{"answer":"yes","score":7}', usage: { prompt_tokens: 31, completion_tokens: 9 } },
    ]);
    const seen: LlmExchange[] = [];
    const r = await llm.chatJson<Answer>({
      purpose: "test.ask",
      messages: [{ role: "user", content: "Q" }],
      schema: SCHEMA,
      schemaName: "answer",
      onExchange: (e) => seen.push(e),
    });
    expect(r).toMatchObject({ ok: true, value: { answer: "yes", score: 7 } });
    const body = mock.requests[0]?.body;
    expect(body?.model).toBe("mock-model");
    expect(body?.temperature).toBe(0.3);
    expect(body?.max_tokens).toBe(500);
    expect(body?.response_format).toEqual({
      type: "json_schema",
      json_schema: { name: "answer", schema: SCHEMA, strict: true },
    });
    expect(r.exchanges).toHaveLength(1);
    const e = r.exchanges[0]!;
    expect(e).toMatchObject({
      purpose: "test.ask",
      model: "mock-model",
      reply: '{"answer":"yes","score":7}',
      error: null,
      errorCode: null,
      finishReason: "stop",
      promptTokens: 31,
      completionTokens: 9,
    });
    expect(e.messages).toEqual([{ role: "user", content: "Q" }]);
    expect(Number.isNaN(Date.parse(e.startedAt))).toBe(false);
    expect(e.latencyMs).toBeGreaterThanOrEqual(0);
    expect(seen).toEqual(r.exchanges);
  });

  test("max_completion_tokens when configured", async () => {
    const { llm, mock } = await setup([{ content: '{"answer":"a","score":1}' }], {
      maxTokensField: "max_completion_tokens",
    });
    await ask(llm);
    expect(mock.requests[0]?.body?.max_completion_tokens).toBe(500);
    expect(mock.requests[0]?.body?.max_tokens).toBeUndefined();
  });

  test("HTTP 500 is an error result, not a throw, and is recorded", async () => {
    const { llm, mock } = await setup([{ status: 500 }]);
    const r = await ask(llm, 3);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.error.code).toBe("http");
    expect(r.error.status).toBe(500);
    expect(mock.requests).toHaveLength(1); // maxRetries 0, and repairs are not for transport faults
    expect(r.exchanges).toHaveLength(1);
    expect(r.exchanges[0]).toMatchObject({ reply: null, errorCode: "http" });
    expect(r.exchanges[0]?.error).toMatch(/^http: 500/);
  });

  test("retries (maxRetries) recover from a 500; the failed attempt is recorded too", async () => {
    const { llm, mock } = await setup([{ status: 500 }, { content: '{"answer":"b","score":2}' }], {
      maxRetries: 1,
    });
    const r = await ask(llm);
    expect(r).toMatchObject({ ok: true, value: { answer: "b" } });
    expect(mock.requests).toHaveLength(2);
    expect(r.exchanges.map((e) => e.errorCode)).toEqual(["http", null]);
  });

  test("a reply slower than the timeout is a timeout error", async () => {
    // Held far longer than the test may run: only the client's timeout can end the request.
    const { llm } = await setup([{ content: '{"answer":"late","score":1}', delayMs: 600_000 }], {
      timeoutMs: 200,
    });
    const r = await ask(llm, 2);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.error.code).toBe("timeout");
    expect(r.error.message).toContain("200 ms");
    expect(r.error.message).toContain(mock?.baseURL ?? "?");
    expect(r.exchanges).toHaveLength(1);
    expect(r.exchanges[0]?.latencyMs).toBeGreaterThanOrEqual(150);
  });

  test("a malformed JSON body is a bad-response error", async () => {
    const { llm } = await setup([
      { rawBody: "not json" },
      { rawBody: "hello", contentType: "text/plain" },
      { rawBody: '{"id":"x","choices":[]}' },
    ]);
    for (const expected of [/not JSON/, /not a chat completion: hello/, /not a chat completion/]) {
      const r = await ask(llm, 2);
      expect(r.ok).toBe(false);
      if (r.ok) continue;
      expect(r.error.code).toBe("bad-response");
      expect(r.error.message).toMatch(expected);
    }
  });

  test("an unreachable server is a connection error", async () => {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as AddressInfo;
    await new Promise<void>((resolve) => server.close(() => resolve()));
    const url = `http://127.0.0.1:${port}/v1`;
    const llm = createLlmClient({ ...BASE, baseURL: url }, {})!;
    const r = await ask(llm);
    expect(r.ok).toBe(false);
    if (!r.ok)
      expect(r.error).toMatchObject({ code: "connection", message: `cannot reach ${url}: ECONNREFUSED` });
  });

  test("a schema violation is repaired with the errors fed back", async () => {
    const { llm, mock } = await setup([
      { content: '{"answer":"yes","score":"high","extra":1}' },
      { content: '{"answer":"yes","score":8}' },
    ]);
    const r = await ask(llm, 2);
    expect(r).toMatchObject({ ok: true, value: { answer: "yes", score: 8 } });
    expect(r.exchanges).toHaveLength(2);
    expect(r.exchanges[0]?.errorCode).toBe("schema");
    expect(r.exchanges[1]?.error).toBeNull();
    const second = mock.requests[1]?.body?.messages ?? [];
    expect(second).toHaveLength(4);
    expect(second[2]).toEqual({ role: "assistant", content: '{"answer":"yes","score":"high","extra":1}' });
    expect(second[3]?.role).toBe("user");
    expect(second[3]?.content).toContain("/score: must be number");
    expect(second[3]?.content).toContain("must NOT have additional properties (extra)");
    expect(r.exchanges[1]?.messages).toHaveLength(4);
  });

  test("ajv does not coerce: a numeric string stays a schema error", async () => {
    const { llm } = await setup([{ content: '{"answer":"x","score":"5"}' }]);
    const r = await ask(llm);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error.code).toBe("schema");
  });

  test("invalid JSON text is repaired; a fenced JSON reply is accepted", async () => {
    const { llm, mock } = await setup([
      { content: "Sure! here it is: {answer: yes}" },
      { content: '```json\n{"answer":"ok","score":3}\n```' },
    ]);
    const r = await ask(llm, 1);
    expect(r).toMatchObject({ ok: true, value: { answer: "ok", score: 3 } });
    expect(r.exchanges[0]?.errorCode).toBe("invalid-json");
    expect(mock.requests[1]?.body?.messages?.at(-1)?.content).toContain("not valid JSON");
  });

  test("repairs are bounded by maxRepairs", async () => {
    const { llm, mock } = await setup(() => ({ content: '{"answer":1,"score":1}' }));
    const r = await ask(llm, 2);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.error.code).toBe("schema");
    expect(r.error.message).toContain("/answer: must be string");
    expect(mock.requests).toHaveLength(3);
    expect(r.exchanges).toHaveLength(3);
  });

  test('finish_reason "length" is truncated; a repair drops the cut-off reply and asks for brevity', async () => {
    // maxTokensCap = maxTokens: no larger limit to retry with (see the next test).
    const noRaise = { maxTokensCap: 500 };
    const one = await setup([{ content: '{"answer":"a very lo', finishReason: "length" }], noRaise);
    const r1 = await ask(one.llm, 0);
    expect(r1.ok).toBe(false);
    if (!r1.ok) expect(r1.error.code).toBe("truncated");
    expect(r1.exchanges[0]?.finishReason).toBe("length");
    await one.mock.close();

    const two = await setup(
      [
        { content: '{"answer":"a very lo', finishReason: "length" },
        { content: '{"answer":"short","score":1}' },
      ],
      noRaise,
    );
    const r2 = await ask(two.llm, 1);
    expect(r2).toMatchObject({ ok: true, value: { answer: "short" } });
    const msgs = two.mock.requests[1]?.body?.messages ?? [];
    expect(msgs.map((m) => m.role)).toEqual(["system", "user", "user"]);
    expect(msgs[2]?.content).toContain("cut off");
  });

  test("a refusal is not repaired", async () => {
    const { llm, mock } = await setup([{ refusal: "I cannot help with that." }, { content: "{}" }]);
    const r = await ask(llm, 3);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error).toEqual({ code: "refused", message: "I cannot help with that." });
    expect(mock.requests).toHaveLength(1);
  });

  test("an empty reply (none, or only spaces as DeepSeek's JSON mode may send) is repaired", async () => {
    const { llm } = await setup([
      { content: null },
      { content: "   \n " },
      { content: '{"answer":"a","score":0}' },
    ]);
    const r = await ask(llm, 2);
    expect(r.ok).toBe(true);
    expect(r.exchanges.map((e) => e.errorCode)).toEqual(["empty", "empty", null]);
  });

  test("a truncated reply is retried once with max_tokens doubled, within maxTokensCap", async () => {
    const { llm, mock } = await setup(
      [
        { content: '{"answer":"lo', finishReason: "length" },
        { content: '{"answer":"long but whole","score":1}' },
      ],
      { maxTokensCap: 800 },
    );
    const r = await ask(llm, 0);
    expect(r).toMatchObject({ ok: true, value: { answer: "long but whole" } });
    expect(mock.requests.map((q) => q.body?.max_tokens)).toEqual([500, 800]);
    // Same conversation: a retry with room, not a repair.
    expect(mock.requests[1]?.body?.messages).toEqual(mock.requests[0]?.body?.messages);
    expect(r.exchanges.map((e) => e.errorCode)).toEqual(["truncated", null]);
  });

  test("the caller's check feeds its problems back like schema errors", async () => {
    const { llm, mock } = await setup([
      { content: '{"answer":"no","score":1}' },
      { content: '{"answer":"yes","score":1}' },
    ]);
    const r = await ask(llm, 1, { check: (v) => (v.answer === "yes" ? [] : ['answer must be "yes"']) });
    expect(r).toMatchObject({ ok: true, value: { answer: "yes" } });
    expect(r.exchanges[0]?.errorCode).toBe("check");
    expect(mock.requests[1]?.body?.messages?.at(-1)?.content).toContain('answer must be "yes"');
  });

  test("programming errors throw: a bad schema name, a schema ajv rejects", async () => {
    const { llm, mock } = await setup([]);
    await expect(
      llm.chatJson({ purpose: "p", messages: [], schema: SCHEMA, schemaName: "has space" }),
    ).rejects.toThrow(/schemaName/);
    await expect(
      llm.chatJson({
        purpose: "p",
        messages: [],
        schema: { type: "object", frobnicate: true },
        schemaName: "x",
      }),
    ).rejects.toThrow(/frobnicate/);
    expect(mock.requests).toHaveLength(0);
  });
});

describe("chatText", () => {
  test("returns the text without response_format; checks are fed back", async () => {
    const { llm, mock } = await setup([{ content: "no code here" }, { content: "```ts\nconst x = 1;\n```" }]);
    const r = await llm.chatText({
      purpose: "gen",
      messages: [{ role: "user", content: "write code" }],
      maxRepairs: 1,
      check: (t) => (t.includes("```") ? [] : ["no code block found"]),
    });
    expect(r).toMatchObject({ ok: true, value: "```ts\nconst x = 1;\n```" });
    expect(mock.requests[0]?.body?.response_format).toBeUndefined();
    expect(mock.requests[1]?.body?.messages?.at(-1)?.content).toContain("no code block found");
  });

  test("truncation is an error once the larger limit and the repairs run out", async () => {
    const { llm, mock } = await setup([
      { content: "export default {", finishReason: "length" },
      { content: "export default { a: 1,", finishReason: "length" },
    ]);
    const r = await llm.chatText({
      purpose: "gen",
      messages: [{ role: "user", content: "x" }],
      maxRepairs: 0,
    });
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error.code).toBe("truncated");
    expect(mock.requests.map((q) => q.body?.max_tokens)).toEqual([500, 1000]);
  });
});

describe("secrets", () => {
  const KEY = "sk-test-0123456789SECRETabcdefXYZ";

  test("the key authenticates the request but is scrubbed from stored prompts, replies and errors", async () => {
    const { llm, mock } = await setup(
      [
        { content: `{"answer":"your key is ${KEY}","score":"bad"}` },
        { status: 500, body: `denied for ${KEY}` },
      ],
      {},
      { TEST_LLM_KEY: KEY },
    );
    const r = await llm.chatJson<Answer>({
      purpose: "leak",
      messages: [{ role: "user", content: `debug: ${KEY}` }],
      schema: SCHEMA,
      schemaName: "answer",
      maxRepairs: 1,
    });
    expect(mock.requests[0]?.headers.authorization).toBe(`Bearer ${KEY}`);
    expect(r.ok).toBe(false);
    const stored = JSON.stringify(r);
    expect(stored).not.toContain(KEY);
    expect(stored).toContain("[REDACTED]");
    expect(r.exchanges[0]?.messages[0]?.content).toBe("debug: [REDACTED]");
    expect(r.exchanges[1]?.error).toContain("denied for [REDACTED]");
  });

  test("a key of any shape is scrubbed by value; key-shaped strings are scrubbed anyway", () => {
    const scrub = makeScrubber("local-token-42");
    expect(scrub("a local-token-42 b local-token-42")).toBe("a [REDACTED] b [REDACTED]");
    expect(scrub("other sk-proj-AAAAAAAAAAAAAAAAAAAA end")).toBe("other [REDACTED] end");
    expect(scrub("Authorization: Bearer abcdefghijklmnopqrstuvwxyz")).toBe(
      "Authorization: Bearer [REDACTED]",
    );
    expect(makeScrubber(undefined)("plain text")).toBe("plain text");
  });
});

describe("createLlmClient", () => {
  test("offline (null) without a base URL in config or env", () => {
    expect(createLlmClient(BASE, {})).toBeNull();
    expect(createLlmClient(BASE, { OPENAI_BASE_URL: "  " })).toBeNull();
  });

  test("takes OPENAI_BASE_URL from the env, and the key from the configured env var", async () => {
    mock = await startMockLlm([{ content: '{"answer":"a","score":1}' }]);
    const llm = createLlmClient(BASE, { OPENAI_BASE_URL: mock.baseURL, TEST_LLM_KEY: "k-123456" });
    expect(llm?.model).toBe("mock-model");
    const r = await ask(llm!);
    expect(r.ok).toBe(true);
    expect(mock.requests[0]?.headers.authorization).toBe("Bearer k-123456");
  });

  test("a malformed base URL is a clear configuration error", () => {
    expect(() => createLlmClient({ ...BASE, baseURL: "not a url" }, {})).toThrow(
      /llm.baseURL: "not a url" is not a URL/,
    );
    expect(() => createLlmClient({ ...BASE, baseURL: "ftp://x/v1" }, {})).toThrow(/must be http/);
    expect(() => createLlmClient({ ...BASE, baseURL: "http://u:p@x/v1" }, {})).toThrow(/credentials/);
  });
});

describe("parseJsonReply", () => {
  test("plain, fenced, and garbage", () => {
    expect(parseJsonReply(' {"a":1} ')).toEqual({ ok: true, value: { a: 1 } });
    expect(parseJsonReply('```json\n{"a":2}\n```')).toEqual({ ok: true, value: { a: 2 } });
    expect(parseJsonReply("{a:1}").ok).toBe(false);
    expect(parseJsonReply("").ok).toBe(false);
  });
});

describe("schemas on the wire", () => {
  const LIMITED = {
    type: "object",
    additionalProperties: false,
    required: ["maxLength", "tags"],
    properties: {
      maxLength: { type: "string", maxLength: 5 },
      tags: { type: "array", items: { type: "string" }, uniqueItems: true, maxItems: 3 },
    },
  } as const;

  test("length keywords are not sent but still enforced locally (and repaired)", async () => {
    const { llm, mock } = await setup([
      { content: '{"maxLength":"far too long","tags":["a","a"]}' },
      { content: '{"maxLength":"ok","tags":["a"]}' },
    ]);
    const r = await llm.chatJson({
      purpose: "p",
      messages: [{ role: "user", content: "x" }],
      schema: LIMITED,
      schemaName: "limited",
      maxRepairs: 1,
    });
    expect(r).toMatchObject({ ok: true, value: { maxLength: "ok" } });
    const sent = mock.requests[0]?.body?.response_format?.json_schema?.schema;
    expect(sent).toEqual({
      type: "object",
      additionalProperties: false,
      required: ["maxLength", "tags"],
      properties: {
        maxLength: { type: "string" },
        tags: { type: "array", items: { type: "string" }, maxItems: 3 },
      },
    });
    const feedback = mock.requests[1]?.body?.messages?.at(-1)?.content ?? "";
    expect(feedback).toContain("/maxLength: must NOT have more than 5 characters");
    expect(feedback).toContain("/tags: must NOT have duplicate items");
  });

  test("wireSchema leaves the caller's schema untouched", () => {
    const copy = JSON.parse(JSON.stringify(LIMITED));
    wireSchema(LIMITED);
    expect(LIMITED).toEqual(copy);
  });

  test("strictSchemaProblems names objects strict mode would refuse", () => {
    expect(strictSchemaProblems(SCHEMA)).toEqual([]);
    expect(
      strictSchemaProblems({
        type: "object",
        required: ["a"],
        properties: { a: { type: "object", properties: { x: { type: "number" } } }, b: { type: "string" } },
      }),
    ).toEqual([
      "(root): additionalProperties must be false",
      "(root): property b must be required",
      "(root).a: additionalProperties must be false",
      "(root).a: property x must be required",
    ]);
  });
});
