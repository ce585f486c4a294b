// Runs against local servers that answer as a provider documents (synthetic trainer, fast):
// DeepSeek in `auto` mode gets a valid LLM proposal every iteration and the run remembers
// json_object (kept on resume); token totals per level and per research session in the report;
// the token budget hands over to the offline deciders, or stops the run; an unset key warns.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { STEP_MARKERS } from "../../runtime/level2/prompts.ts";
import { formatReport } from "../../runtime/report.ts";
import { RunStore } from "../../runtime/store.ts";
import { executeRun } from "../../runtime/wiring.ts";
import {
  type MockStep,
  type RecordedRequest,
  startMockLlm,
  systemPrompt,
} from "../support/mock-llm-server.ts";
import { DEEPSEEK_CHAT, defaultBrain, OLLAMA, providerModels, providerScript } from "../support/providers.ts";
import { testConfig } from "../support/run-config.ts";
import { CRITIQUE_REPLY, EXPLORE_REPLY, fenced, GOOD_SOURCE, SPEC_REPLY } from "./level2/fixtures.ts";

const tmp = (name: string) => mkdtempSync(path.join(tmpdir(), `bilevel-${name}-`));

function runConfig(baseURL: string, overrides: Record<string, unknown> = {}) {
  return testConfig({
    name: "llm-run",
    iterations: 6,
    trainer: { kind: "synthetic", delayMs: 0, noise: 0.002 },
    llm: { ...DEEPSEEK_CHAT.llm, baseURL, maxRetries: 0, retryBaseMs: 1, timeoutMs: 600_000 },
    acceptance: { baselineRepeats: 2 },
    level15: { every: 3, minActive: 6 },
    level2: { everyCycles: 0 },
    ...overrides,
  });
}

test("DeepSeek in auto mode: json_schema refused, json_object remembered, a valid LLM proposal every iteration, kept on resume", async () => {
  const mock = await startMockLlm(providerScript(DEEPSEEK_CHAT), { models: providerModels(DEEPSEEK_CHAT) });
  const dir = tmp("deepseek");
  const env = { DEEPSEEK_API_KEY: DEEPSEEK_CHAT.key ?? "" };
  try {
    const summary = await executeRun({
      dir,
      config: runConfig(mock.baseURL),
      offline: false,
      env,
      observer: {},
    });
    expect(summary.stopped).toBe(false);
    expect(summary.llmStop).toBeNull();
    const store = RunStore.open(dir, { readOnly: true });
    expect(store.getMeta("llm_mode")).toBe("json_object");
    // Every iteration: one proposal, from the LLM, trained.
    const proposals = store.proposals();
    expect(proposals.map((p) => [p.iteration, p.source, p.status])).toEqual(
      [1, 2, 3, 4, 5, 6].map((it) => [it, "llm", "trained"]),
    );
    expect(store.trials().filter((t) => t.kind === "search")).toHaveLength(6);
    // DeepSeek's blank replies were recorded as faults and repaired; json_schema was tried once, in the preflight.
    const exchanges = store.exchanges();
    expect(exchanges.some((e) => e.errorCode === "empty" && e.purpose === "propose")).toBe(true);
    expect(exchanges.filter((e) => e.mode === "json_schema").map((e) => e.purpose)).toEqual(["preflight"]);
    expect(exchanges.filter((e) => e.purpose !== "preflight").every((e) => e.mode === "json_object")).toBe(
      true,
    );
    store.close();

    // Resumed for more iterations: the stored mode is tried first; json_schema is not sent again.
    const before = mock.requests.length;
    const stored = runConfig(mock.baseURL, { iterations: 8 });
    const resumed = await executeRun({
      dir,
      config: stored,
      offline: false,
      resume: true,
      env,
      observer: {},
    });
    expect(resumed.iterations).toBe(8);
    const again = mock.requests.slice(before).filter((r) => r.method === "POST");
    expect(again.every((r) => r.body?.response_format?.type === "json_object")).toBe(true);
    expect(resumed.report.llm?.mode).toBe("json_object");
  } finally {
    await mock.close();
  }
});

/** Ollama-like (no key) with a scripted Level 2 session, for tokens per level and per session. */
function withLevel2(request: RecordedRequest): MockStep | null {
  const system = systemPrompt(request);
  const usage = { prompt_tokens: 1000, completion_tokens: 300 };
  if (system.includes(STEP_MARKERS.explore)) return { content: JSON.stringify(EXPLORE_REPLY), usage };
  if (system.includes(STEP_MARKERS.critique)) return { content: JSON.stringify(CRITIQUE_REPLY), usage };
  if (system.includes(STEP_MARKERS.specify)) return { content: JSON.stringify(SPEC_REPLY), usage };
  if (system.includes(STEP_MARKERS.generate)) return { content: fenced(GOOD_SOURCE), usage };
  return null;
}

test("token totals per level and per research session; an unset key is a warning at start", async () => {
  const ollama = providerScript(OLLAMA);
  const mock = await startMockLlm((r) => withLevel2(r) ?? ollama(r), {
    models: providerModels(OLLAMA),
  });
  const dir = tmp("tokens");
  const events: string[] = [];
  try {
    const config = runConfig(mock.baseURL, {
      llm: { ...OLLAMA.llm, baseURL: mock.baseURL, maxRetries: 0, timeoutMs: 600_000 },
      level2: { everyCycles: 1, retireWindow: 0 },
      policy: { maxActiveMechanisms: 1 },
    });
    const summary = await executeRun({
      dir,
      config,
      offline: false,
      env: {},
      observer: { event: (level, message) => events.push(`[${level}] ${message}`) },
    });
    expect(events[0]).toBe(
      "[run] warning: OPENAI_API_KEY is not set: requests go without an API key (fine for a local server; a hosted API will answer 401)",
    );
    const llm = summary.report.llm;
    expect(llm?.byLevel.map((l) => l.level)).toEqual(["1", "1.5", "2", "run"]);
    const level = (name: string) => llm?.byLevel.find((l) => l.level === name);
    expect(level("1")?.requests).toBe(6);
    expect(level("1")?.promptTokens).toBe(600);
    expect(level("2")?.promptTokens).toBe(4000);
    expect(llm?.sessions).toEqual([
      expect.objectContaining({ iteration: 3, requests: 4, promptTokens: 4000, completionTokens: 1200 }),
    ]);
    const text = formatReport(summary.report);
    expect(text).toMatch(/\n {4}Level 1: 6 request\(s\), 960 tokens \(prompt 600, completion 360\)/);
    expect(text).toMatch(
      /\n {4}Level 2: 4 request\(s\), 5200 tokens.*\n {6}research session after iteration 3: 4 request\(s\), 5200 tokens/,
    );
    // Ollama's reasoning came in `reasoning`: stored with each exchange.
    const store = RunStore.open(dir, { readOnly: true });
    expect(store.exchanges().find((e) => e.purpose === "propose")?.reasoning).toContain("learning rate");
    store.close();
  } finally {
    await mock.close();
  }
});

describe("llm.maxTokensPerRun", () => {
  test('"offline": the LLM stops, the offline deciders take over, and the run says so', async () => {
    const mock = await startMockLlm(providerScript(OLLAMA), { models: providerModels(OLLAMA) });
    const dir = tmp("budget-offline");
    const events: string[] = [];
    try {
      // Each proposal costs 120 tokens (the preflight ~30): the budget lasts three iterations.
      const config = runConfig(mock.baseURL, {
        llm: { ...OLLAMA.llm, baseURL: mock.baseURL, maxTokensPerRun: 350, onBudgetExhausted: "offline" },
      });
      const summary = await executeRun({
        dir,
        config,
        offline: false,
        env: {},
        observer: { event: (_l, m) => events.push(m) },
      });
      expect(summary.stopped).toBe(false);
      const store = RunStore.open(dir, { readOnly: true });
      const sources = store.proposals().map((p) => p.source);
      expect(sources.slice(0, 2)).toEqual(["llm", "llm"]);
      expect(sources.at(-1)).toBe("offline");
      expect(store.trials().filter((t) => t.kind === "search")).toHaveLength(6);
      expect(store.searchConfigs().at(-1)?.source).toBe("rules");
      store.close();
      expect(
        events.some((m) => /^LLM token budget reached: \d+ of 350 tokens: no more LLM calls/.test(m)),
      ).toBe(true);
      expect(summary.report.llm?.budget.maxTokens).toBe(350);
    } finally {
      await mock.close();
    }
  });

  test('"stop": the run stops cleanly (resumable), and the report says why', async () => {
    const mock = await startMockLlm(providerScript(OLLAMA), { models: providerModels(OLLAMA) });
    const dir = tmp("budget-stop");
    try {
      const config = runConfig(mock.baseURL, {
        llm: { ...OLLAMA.llm, baseURL: mock.baseURL, maxTokensPerRun: 350, onBudgetExhausted: "stop" },
      });
      const summary = await executeRun({ dir, config, offline: false, env: {}, observer: {} });
      expect(summary.stopped).toBe(true);
      expect(summary.llmStop?.kind).toBe("budget");
      expect(summary.report.status).toBe("stopped");
      expect(summary.report.statusReason).toMatch(
        /^LLM token budget reached: \d+ of 350 tokens; the run stops/,
      );
      expect(summary.iterations).toBeLessThan(6);
      expect(formatReport(summary.report)).toContain("  why: LLM token budget reached");
    } finally {
      await mock.close();
    }
  });
});

test("the defaultBrain never proposes the CPU default (a proposal that changes nothing is refused)", () => {
  const request = (it: number) =>
    ({ body: { messages: [{ role: "user", content: `Iteration ${it}.` }] } }) as unknown as RecordedRequest;
  const values = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10].map(
    (it) => (defaultBrain(request(it)) as { changes: { value: number }[] }).changes[0]?.value,
  );
  expect(values).not.toContain(0.04);
  expect(new Set(values).size).toBe(values.length);
});
