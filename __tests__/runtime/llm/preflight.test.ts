// The preflight's verdicts, one per way an endpoint can fail a run, each naming the problem; and
// garbage from the server at every step it reads.
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, expect, test } from "@jest/globals";
import { DEFAULT_RUN_CONFIG } from "../../../runtime/config.ts";
import { apiKeyWarning, createLlmClient, type OpenAiLlmClient } from "../../../runtime/llm/client.ts";
import { preflight } from "../../../runtime/llm/preflight.ts";
import {
  type MockLlm,
  type MockOptions,
  type MockScript,
  startMockLlm,
} from "../../support/mock-llm-server.ts";

let mock: MockLlm | null = null;
afterEach(async () => {
  await mock?.close();
  mock = null;
});

async function clientFor(
  script: MockScript,
  options: MockOptions = {},
  overrides: object = {},
): Promise<OpenAiLlmClient> {
  mock = await startMockLlm(script, options);
  return createLlmClient(
    { ...DEFAULT_RUN_CONFIG.llm, maxRetries: 1, retryBaseMs: 1, ...overrides, baseURL: mock.baseURL },
    {},
  )!;
}

const run = (client: OpenAiLlmClient, extra: object = {}) =>
  preflight(client, { keyEnv: "OPENAI_API_KEY", keySet: false, ...extra });
const OK = { content: '{"ok":true}' };

test("a closed port: unreachable, named with its URL; nothing else is tried", async () => {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  const url = `http://127.0.0.1:${port}/v1`;
  const client = createLlmClient({ ...DEFAULT_RUN_CONFIG.llm, baseURL: url }, {})!;
  const report = await run(client);
  expect(report).toMatchObject({
    ok: false,
    mode: null,
    problem: `cannot reach the LLM endpoint: cannot reach ${url}: ECONNREFUSED`,
  });
  expect(report.lines).toEqual([expect.objectContaining({ check: "reachable", status: "failed" })]);
  expect(report.exchanges).toEqual([]);
});

test("401 on GET /models: the key is refused, and the unset key variable is named", async () => {
  const client = await clientFor([], {
    models: () => ({ status: 401, body: { error: { message: "Incorrect API key provided" } } }),
  });
  const report = await run(client);
  expect(report.ok).toBe(false);
  expect(report.problem).toBe(
    `${mock?.baseURL} refused the API key (401 Incorrect API key provided); OPENAI_API_KEY is not set`,
  );
  expect(mock?.requests).toHaveLength(1);
});

test("no model list (404): the chat request decides; a 404 there means a wrong base URL", async () => {
  const client = await clientFor(() => ({ status: 404, body: { error: { message: "Not Found" } } }));
  const report = await run(client);
  expect(report.ok).toBe(false);
  expect(report.problem).toContain("/chat/completions answered 404");
  expect(report.problem).toContain("is llm.baseURL right?");
});

test("every mode replies garbage: no usable mode, each mode's failure listed", async () => {
  const client = await clientFor(() => ({ content: "I am a teapot" }), { models: ["gpt-4o-mini"] });
  const report = await run(client);
  expect(report.ok).toBe(false);
  expect(report.problem).toMatch(/^no structured-output mode works with gpt-4o-mini at http/);
  for (const mode of ["json_schema", "json_object", "tools", "text"])
    expect(report.problem).toContain(`${mode}: replied, but not usably`);
  expect(report.lines.find((l) => l.check === "model")?.status).toBe("ok");
});

test("a failing endpoint (5xx after retries) and a payment refusal are fatal, not 'mode unsupported'", async () => {
  const failing = await run(
    await clientFor(() => ({ status: 503, body: { error: { message: "Server Overloaded" } } })),
  );
  expect(failing.problem).toBe("the LLM endpoint is failing: 503 Server Overloaded");
  await mock?.close();
  const broke = await run(
    await clientFor(() => ({ status: 402, body: { error: { message: "Insufficient Balance" } } })),
  );
  expect(broke.problem).toContain("refused the request for payment (402 Insufficient Balance)");
});

test("connections closed mid-reply: the endpoint is failing, said as a transport fault; no other mode is tried", async () => {
  const client = await clientFor(() => ({ cutBody: '{"id": "x", "choices": [' }), {
    models: ["gpt-4o-mini"],
  });
  const report = await run(client);
  expect(report.ok).toBe(false);
  expect(report.problem).toBe(
    `the LLM endpoint is failing: the connection to ${mock?.baseURL} closed before the reply was complete (other side closed)`,
  );
  expect(report.exchanges.map((e) => [e.mode, e.errorCode])).toEqual([
    ["json_schema", "connection"],
    ["json_schema", "connection"],
  ]);
});

test("a resumed run's stored mode is tried first; a run stops at the first mode that works", async () => {
  const client = await clientFor(() => OK);
  const report = await run(client, { startMode: "tools" });
  expect(report.mode).toBe("tools");
  expect(report.lines.filter((l) => l.check.startsWith("mode ")).map((l) => l.check)).toEqual(["mode tools"]);
  expect(mock?.requests.map((r) => r.method)).toEqual(["GET", "POST"]);
  expect(mock?.requests[1]?.body?.tools).toBeDefined();
});

test.each([
  ["not JSON", { rawBody: "<html>gateway</html>", contentType: "text/html" }],
  ["no data", { rawBody: '{"object":"list"}' }],
  ["data not a list", { rawBody: '{"data":{"id":"x"}}' }],
  ["ids of the wrong type", { rawBody: '{"data":[{"id":7},null,"x",{"id":"gpt-4o-mini"}]}' }],
])("GET /models with %s is not trusted and not fatal", async (_name, step) => {
  const client = await clientFor(() => OK, { models: () => step });
  const report = await run(client);
  expect(report.ok).toBe(true);
  expect(report.lines[0]?.status).toBe("ok");
});

test("an unset key variable is a warning, not silence", () => {
  expect(apiKeyWarning({ apiKeyEnv: "DEEPSEEK_API_KEY" }, {})).toContain("DEEPSEEK_API_KEY is not set");
  expect(apiKeyWarning({ apiKeyEnv: "DEEPSEEK_API_KEY" }, { DEEPSEEK_API_KEY: " " })).toContain("is not set");
  expect(apiKeyWarning({ apiKeyEnv: "DEEPSEEK_API_KEY" }, { DEEPSEEK_API_KEY: "sk-1" })).toBeNull();
});
