// One test per row of docs/llm-providers.md, against a local server that answers as that provider
// documents (__tests__/support/providers.ts): with the row's settings the preflight passes and
// `auto` settles on the row's mode, a structured call works in it (reasoning stored, reasoning
// tokens counted); a wrong key and an unknown model are named, each by that provider's own error.
import { afterEach, describe, expect, test } from "@jest/globals";
import { DEFAULT_RUN_CONFIG } from "../../../runtime/config.ts";
import { proposalSchema } from "../../../runtime/level1/proposer.ts";
import { createLlmClient, type OpenAiLlmClient } from "../../../runtime/llm/client.ts";
import { preflight } from "../../../runtime/llm/preflight.ts";
import { loadSearchSpace } from "../../../trainer/search-space.ts";
import { type MockLlm, startMockLlm } from "../../support/mock-llm-server.ts";
import {
  OPENAI_REASONING,
  PROVIDERS,
  type ProviderSpec,
  providerModels,
  providerScript,
} from "../../support/providers.ts";

let mock: MockLlm | null = null;
afterEach(async () => {
  await mock?.close();
  mock = null;
});

const KEY_ENV = "PROVIDER_TEST_KEY";

async function clientFor(
  spec: ProviderSpec,
  overrides: Record<string, unknown> = {},
  key: string | null = spec.key,
): Promise<OpenAiLlmClient> {
  mock = await startMockLlm(providerScript(spec), { models: providerModels(spec) });
  const config = {
    ...DEFAULT_RUN_CONFIG.llm,
    retryBaseMs: 1,
    ...spec.llm,
    apiKeyEnv: KEY_ENV,
    ...overrides,
    baseURL: mock.baseURL,
  };
  const client = createLlmClient(config as typeof DEFAULT_RUN_CONFIG.llm, key ? { [KEY_ENV]: key } : {});
  if (!client) throw new Error("expected a client");
  return client;
}

const check = (client: OpenAiLlmClient, keySet = true) =>
  preflight(client, { allModes: true, keyEnv: KEY_ENV, keySet });

const PARAMS = loadSearchSpace("cpu");

describe.each(PROVIDERS.map((p) => [p.name, p] as const))("%s", (_name, spec) => {
  test("with the documented settings: the check passes, auto settles on the documented mode, a call works", async () => {
    const client = await clientFor(spec);
    const report = await check(client);
    expect(report.problem).toBeNull();
    expect(report.ok).toBe(true);
    expect(report.mode).toBe(spec.autoMode);
    const working = report.lines.filter((l) => l.check.startsWith("mode ") && l.status === "ok");
    expect(working.map((l) => l.check.slice(5))).toEqual(spec.workingModes);
    expect(report.lines.find((l) => l.check === "authenticated")?.status).toBe("ok");

    client.useMode(report.mode ?? "text");
    const r = await client.chatJson<{ changes: unknown[] }>({
      purpose: "propose",
      messages: [
        { role: "system", content: "You tune hyperparameters. Reply with JSON only." },
        { role: "user", content: "Iteration 4. Propose one change." },
      ],
      schema: proposalSchema(3, PARAMS),
      schemaName: "proposal",
    });
    expect(r).toMatchObject({ ok: true, value: { changes: [{ param: "MATRIX_LR", value: 0.032 }] } });
    const last = r.exchanges.at(-1);
    expect(last?.mode).toBe(spec.autoMode);
    if (spec.reasoning?.field) expect(last?.reasoning).toBe("Let me think about the learning rate first.");
    else expect(last?.reasoning).toBeNull();
    expect(last?.reasoningTokens).toBe(spec.reasoning?.tokens ? 40 : null);
  });

  if (spec.key !== null) {
    test("a wrong key is refused, and the problem says so", async () => {
      const client = await clientFor(spec, {}, "sk-wrong-key");
      const report = await check(client);
      expect(report.ok).toBe(false);
      expect(report.problem).toContain("refused the API key");
      expect(report.problem).toContain("401");
      expect(report.lines.find((l) => l.check === "authenticated")?.status).toBe("failed");
    });
  }

  if (spec.unknownModel) {
    test("an unknown model is named", async () => {
      const client = await clientFor(spec, { model: "no-such-model" });
      const report = await check(client);
      expect(report.ok).toBe(false);
      expect(report.problem).toMatch(/^model "no-such-model" not found at http/);
      expect(report.lines.find((l) => l.check === "model")?.status).toBe("failed");
    });
  } else {
    test("the model name is ignored: the check passes and says the name is not listed", async () => {
      const client = await clientFor(spec, { model: "anything" });
      const report = await check(client);
      expect(report.ok).toBe(true);
      expect(report.lines.find((l) => l.check === "model")).toMatchObject({
        status: "warning",
        detail: expect.stringContaining("is not listed by GET /models"),
      });
    });
  }
});

test("OpenAI reasoning models with chat-model settings: the refused parameter is named, with the fix", async () => {
  const temperature = await check(await clientFor(OPENAI_REASONING, { temperature: 0.7 }));
  expect(temperature.ok).toBe(false);
  expect(temperature.problem).toContain("refuses temperature");
  expect(temperature.problem).toContain("set llm.temperature to null");
  await mock?.close();
  const maxTokens = await check(await clientFor(OPENAI_REASONING, { maxTokensField: "max_tokens" }));
  expect(maxTokens.problem).toContain('set llm.maxTokensField to "max_completion_tokens"');
});
