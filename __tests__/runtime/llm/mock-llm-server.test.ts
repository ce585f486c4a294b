import { afterEach, describe, expect, test } from "@jest/globals";
import {
  type MockLlm,
  preflightReply,
  routeByMarker,
  startMockLlm,
  systemPrompt,
} from "../../support/mock-llm-server.ts";
import { waitFor } from "../../support/wait.ts";

let mock: MockLlm | null = null;
afterEach(async () => {
  await mock?.close();
  mock = null;
});

function chat(baseURL: string, body: object, signal?: AbortSignal): Promise<Response> {
  return fetch(`${baseURL}/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
    ...(signal ? { signal } : {}),
  });
}

const request = (system: string, user = "hi") => ({
  model: "m1",
  messages: [
    { role: "system", content: system },
    { role: "user", content: user },
  ],
});

describe("mock LLM server", () => {
  test("serves scripted steps in order over real HTTP and records every request", async () => {
    mock = await startMockLlm([
      { content: "first", usage: { prompt_tokens: 7, completion_tokens: 3 } },
      { content: "cut", finishReason: "length" },
    ]);
    expect(mock.baseURL).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/v1$/);
    const r1 = await chat(mock.baseURL, request("sys", "one"));
    expect(r1.status).toBe(200);
    const b1 = (await r1.json()) as {
      model: string;
      choices: { message: { content: string }; finish_reason: string }[];
      usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number };
    };
    expect(b1.model).toBe("m1");
    expect(b1.choices[0]?.message.content).toBe("first");
    expect(b1.choices[0]?.finish_reason).toBe("stop");
    expect(b1.usage).toEqual({ prompt_tokens: 7, completion_tokens: 3, total_tokens: 10 });
    const b2 = (await (await chat(mock.baseURL, request("sys", "two"))).json()) as {
      choices: { finish_reason: string }[];
    };
    expect(b2.choices[0]?.finish_reason).toBe("length");
    expect(mock.requests).toHaveLength(2);
    expect(mock.requests[1]?.body?.messages?.[1]?.content).toBe("two");
    expect(mock.requests[0]?.method).toBe("POST");
  });

  test("answers 400 (not a transient fault) with a clear message once the script is exhausted", async () => {
    mock = await startMockLlm([]);
    const r = await chat(mock.baseURL, request("s"));
    expect(r.status).toBe(400);
    expect(await r.text()).toContain("script exhausted after 0 steps");
    expect(mock.requests).toHaveLength(1);
  });

  test("HTTP errors, raw bodies and refusals", async () => {
    mock = await startMockLlm([{ status: 500 }, { rawBody: "not json" }, { refusal: "no" }]);
    const r1 = await chat(mock.baseURL, request("s"));
    expect(r1.status).toBe(500);
    expect(await r1.text()).toContain("mock failure 500");
    const r2 = await chat(mock.baseURL, request("s"));
    expect(r2.status).toBe(200);
    expect(r2.headers.get("content-type")).toBe("application/json");
    expect(await r2.text()).toBe("not json");
    const r3 = (await (await chat(mock.baseURL, request("s"))).json()) as {
      choices: { message: { content: null; refusal: string } }[];
    };
    expect(r3.choices[0]?.message).toMatchObject({ content: null, refusal: "no" });
  });

  test("records a request body that is not JSON as raw text with body null", async () => {
    mock = await startMockLlm([{ content: "x" }]);
    await fetch(`${mock.baseURL}/chat/completions`, { method: "POST", body: "{garbage" });
    expect(mock.requests[0]?.raw).toBe("{garbage");
    expect(mock.requests[0]?.body).toBeNull();
  });

  test("unknown paths get 404 without consuming a step", async () => {
    mock = await startMockLlm([{ content: "x" }]);
    const r = await fetch(`${mock.baseURL}/models`);
    expect(r.status).toBe(404);
    const ok = (await (await chat(mock.baseURL, request("s"))).json()) as {
      choices: { message: { content: string } }[];
    };
    expect(ok.choices[0]?.message.content).toBe("x");
  });

  test("a delayed step outlives an aborting client, and close() does not hang on it", async () => {
    // The reply is held far longer than the test may run: close() must drop it, not wait for it
    // (if it waited, the jest timeout would fail the test).
    const held = await startMockLlm([{ content: "late", delayMs: 600_000 }]);
    mock = held;
    const controller = new AbortController();
    const pending = chat(held.baseURL, request("s"), controller.signal);
    pending.catch(() => {}); // awaited below, once aborted
    // Abort once the server holds the request, so that its held reply is pending at close().
    await waitFor(() => held.requests.length === 1);
    controller.abort();
    await expect(pending).rejects.toThrow();
    await held.close();
    mock = null;
  });

  test("a function script sees each request and its index", async () => {
    mock = await startMockLlm((req, index) => ({ content: `${index}:${systemPrompt(req)}` }));
    const a = (await (await chat(mock.baseURL, request("alpha"))).json()) as {
      choices: { message: { content: string } }[];
    };
    const b = (await (await chat(mock.baseURL, request("beta"))).json()) as {
      choices: { message: { content: string } }[];
    };
    expect(a.choices[0]?.message.content).toBe("0:alpha");
    expect(b.choices[0]?.message.content).toBe("1:beta");
  });

  test("routeByMarker keeps one queue per marker and names an unmatched or exhausted route", async () => {
    mock = await startMockLlm(
      routeByMarker([
        { marker: "[A]", steps: [{ content: "a1" }, { content: "a2" }] },
        { marker: "[B]", steps: [{ content: "b1" }] },
      ]),
    );
    const text = async (sys: string) => {
      const r = await chat(mock!.baseURL, request(sys));
      const body = (await r.json()) as {
        error?: { message: string };
        choices?: { message: { content: string } }[];
      };
      return `${r.status} ${body.error?.message ?? body.choices?.[0]?.message.content}`;
    };
    expect(await text("step [B]")).toContain("b1");
    expect(await text("step [A]")).toContain("a1");
    expect(await text("step [A]")).toContain("a2");
    expect(await text("step [A]")).toMatch(/^400 .*route "\[A\]" exhausted/);
    expect(await text("step [C]")).toMatch(/^400 .*no route matches/);
  });

  test("a throwing script function becomes a 400, not a crashed server", async () => {
    mock = await startMockLlm(() => {
      throw new Error("boom");
    });
    const r = await chat(mock.baseURL, request("s"));
    expect(r.status).toBe(400);
    expect(await r.text()).toContain("script threw: Error: boom");
  });

  test("tool calls, reasoning fields, reasoning tokens and response headers", async () => {
    mock = await startMockLlm([
      {
        content: null,
        toolCall: { name: "f", arguments: '{"a":1}' },
        reasoning: "hm",
        usage: { prompt_tokens: 5, completion_tokens: 9, completion_tokens_details: { reasoning_tokens: 4 } },
      },
      { content: "x", reasoning: "r", reasoningField: "reasoning" },
      { status: 429, headers: { "retry-after": "2" } },
    ]);
    const b1 = (await (await chat(mock.baseURL, request("s"))).json()) as {
      choices: { message: Record<string, unknown>; finish_reason: string }[];
      usage: object;
    };
    expect(b1.choices[0]?.message).toMatchObject({
      content: null,
      reasoning_content: "hm",
      tool_calls: [{ type: "function", function: { name: "f", arguments: '{"a":1}' } }],
    });
    expect(b1.choices[0]?.finish_reason).toBe("tool_calls");
    expect(b1.usage).toMatchObject({ completion_tokens_details: { reasoning_tokens: 4 }, total_tokens: 14 });
    const b2 = (await (await chat(mock.baseURL, request("s"))).json()) as {
      choices: { message: Record<string, unknown> }[];
    };
    expect(b2.choices[0]?.message).toMatchObject({ content: "x", reasoning: "r" });
    const r3 = await chat(mock.baseURL, request("s"));
    expect(r3.status).toBe(429);
    expect(r3.headers.get("retry-after")).toBe("2");
  });

  test("GET /models: a list, or a step per request; without the option, 404", async () => {
    mock = await startMockLlm([], { models: ["a", "b"] });
    const list = (await (await fetch(`${mock.baseURL}/models`)).json()) as { data: { id: string }[] };
    expect(list.data.map((m) => m.id)).toEqual(["a", "b"]);
    await mock.close();
    mock = await startMockLlm([], {
      models: () => ({ status: 401, body: { error: { message: "no key" } } }),
    });
    expect((await fetch(`${mock.baseURL}/models`)).status).toBe(401);
    expect(mock.requests.map((r) => `${r.method} ${r.url}`)).toEqual(["GET /v1/models"]);
  });

  test("preflightReply answers the preflight's probe in its mode, and nothing else", async () => {
    const probe = (extra: object) =>
      ({
        method: "POST",
        url: "/v1/chat/completions",
        headers: {},
        raw: "",
        body: { messages: [{ role: "system", content: "[bilevel:preflight] check" }], ...extra },
      }) as const;
    expect(preflightReply(probe({}))).toEqual({ content: '{"ok":true}' });
    expect(
      preflightReply(probe({ tools: [{ type: "function", function: { name: "bilevel_preflight" } }] })),
    ).toEqual({
      content: null,
      toolCall: { name: "bilevel_preflight", arguments: '{"ok":true}' },
    });
    expect(
      preflightReply({ ...probe({}), body: { messages: [{ role: "system", content: "other" }] } }),
    ).toBeNull();
  });
});
