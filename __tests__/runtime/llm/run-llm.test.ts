// The run's LLM guard with a scripted inner client: the same kind of fault N times in a row stops
// the run (recorded, once); other errors, successes, aborts and budget refusals do not count toward
// it; a provider outage is waited out (calls made again) up to llm.maxOutageMs; the token budget; a
// mode change mid-run is stored and announced; the console's monitor.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { DEFAULT_RUN_CONFIG } from "../../../runtime/config.ts";
import type { ChatJsonRequest, LlmError, LlmExchange, LlmResult } from "../../../runtime/llm/client.ts";
import { levelOfPurpose, RunLlm, type RunLlmSettings, storedMode } from "../../../runtime/llm/run-llm.ts";
import type { StructuredMode } from "../../../runtime/llm/structured-output.ts";
import { RunStore } from "../../../runtime/store.ts";

const exchange = (tokens: number): LlmExchange => ({
  purpose: "propose",
  model: "m",
  messages: [],
  reply: "{}",
  error: null,
  errorCode: null,
  finishReason: "stop",
  promptTokens: tokens,
  completionTokens: 0,
  reasoningTokens: null,
  reasoning: null,
  mode: "json_schema",
  latencyMs: 1,
  startedAt: new Date(0).toISOString(),
});

type Outcome = LlmError | "ok";

/** An inner client that answers each call with the next scripted outcome (each costs `tokens`). */
function inner(outcomes: Outcome[], tokens = 10) {
  let listener: ((mode: StructuredMode, reason: string) => void) | null = null;
  const seen: ChatJsonRequest<unknown>[] = [];
  const answer = async <T>(request: ChatJsonRequest<T>): Promise<LlmResult<T>> => {
    seen.push(request as ChatJsonRequest<unknown>);
    request.monitor?.attempt?.(1, 1);
    request.monitor?.settled?.();
    const e = exchange(tokens);
    request.onExchange?.(e);
    const next = outcomes.shift() ?? "ok";
    return next === "ok"
      ? { ok: true, value: {} as T, exchanges: [e] }
      : { ok: false, error: next, exchanges: [e] };
  };
  return {
    seen,
    changeMode: (mode: StructuredMode, reason: string) => listener?.(mode, reason),
    client: {
      model: "m",
      chatJson: answer,
      chatText: (request: Parameters<typeof answer>[0]) => answer(request) as Promise<LlmResult<string>>,
      onModeChange: (l: (mode: StructuredMode, reason: string) => void) => {
        listener = l;
      },
    },
  };
}

const SETTINGS: RunLlmSettings = {
  maxConsecutiveFailures: 3,
  maxOutageMs: 0,
  maxRetryWaitMs: 60_000,
  maxTokensPerRun: null,
  onBudgetExhausted: "offline",
};

function setup(
  outcomes: Outcome[],
  settings: Partial<RunLlmSettings> = {},
  tokens = 10,
  signal?: AbortSignal,
) {
  const store = RunStore.open(mkdtempSync(path.join(tmpdir(), "bilevel-run-llm-")));
  const fake = inner(outcomes, tokens);
  const lines: string[] = [];
  const waits: string[] = [];
  const outages: { downMs: number; waitMs: number; reason: string }[] = [];
  let stops = 0;
  const llm = new RunLlm(fake.client, {
    store,
    settings: { ...SETTINGS, ...settings },
    emit: (_level, message) => lines.push(message),
    stop: () => stops++,
    observer: {
      llmWaiting: (c) => waits.push(`${c.level} ${c.purpose} ${c.attempt}/${c.of}`),
      llmOutage: (o) => outages.push(o),
    },
    ...(signal ? { signal } : {}),
  });
  const call = (purpose = "propose") =>
    llm.chatJson({ purpose, messages: [], schema: {}, schemaName: "x", onExchange: () => undefined });
  return { store, llm, fake, lines, waits, outages, call, stops: () => stops };
}

const http = (status: number): LlmError => ({ code: "http", status, message: `${status} nope` });

test("the same error N times in a row stops the run once, recorded with the reason", async () => {
  const { store, llm, call, lines, stops } = setup([http(422), http(422), http(422), http(422)]);
  for (let i = 0; i < 3; i++) await call();
  expect(stops()).toBe(1);
  const reason =
    "the LLM failed 3 times in a row with the same kind of fault (http 422; the same error each time: http 422: 422 nope)";
  expect(lines).toEqual([reason]);
  expect(store.getMeta("stop_reason")).toBe(reason);
  expect(store.events().at(-1)).toMatchObject({ level: "run", kind: "llm-failed", message: reason });
  expect(llm.finalStop(false)).toEqual({ kind: "failed", reason });
  // Once stopped, no more calls go out.
  const after = await call();
  expect(after.ok).toBe(false);
  expect(stops()).toBe(1);
  store.close();
});

test("different errors, a success between, aborts and budget refusals do not make a streak", async () => {
  const aborted: LlmError = { code: "aborted", message: "stopped" };
  const { store, call, stops, llm } = setup([
    http(422),
    http(500),
    http(422),
    "ok",
    http(422),
    http(422),
    aborted,
    { code: "schema", message: "bad" },
  ]);
  for (let i = 0; i < 8; i++) await call();
  expect(stops()).toBe(0);
  expect(llm.finalStop(false)).toBeNull();
  store.close();
});

test("maxConsecutiveFailures 0 never stops; a run whose every call failed still ends as failed", async () => {
  const { store, call, stops, llm } = setup([http(401), http(401), http(401), http(401)], {
    maxConsecutiveFailures: 0,
  });
  for (let i = 0; i < 4; i++) await call();
  expect(stops()).toBe(0);
  expect(llm.finalStop(false)).toEqual({
    kind: "failed",
    reason: "none of the 4 LLM calls of this run succeeded (last: http 401: 401 nope)",
  });
  // Interrupted by the user: not the LLM's verdict.
  expect(llm.finalStop(true)).toBeNull();
  store.close();
});

test("the token budget: calls are refused once spent, said once; 'stop' stops the run", async () => {
  const offline = setup([], { maxTokensPerRun: 25 }, 10);
  for (let i = 0; i < 5; i++) await offline.call();
  expect(offline.fake.seen).toHaveLength(3);
  expect(offline.llm.available).toBe(false);
  expect(offline.llm.tokensUsed).toBe(30);
  expect(offline.lines).toEqual([
    "LLM token budget reached: 30 of 25 tokens: no more LLM calls; the offline proposer, rule-based Level 1.5 and the library Level 2 take over",
  ]);
  expect(offline.stops()).toBe(0);
  const refused = await offline.call();
  expect(refused).toMatchObject({ ok: false, error: { code: "budget" }, exchanges: [] });
  offline.store.close();

  const stop = setup([], { maxTokensPerRun: 25, onBudgetExhausted: "stop" }, 10);
  for (let i = 0; i < 4; i++) await stop.call();
  expect(stop.stops()).toBe(1);
  expect(stop.llm.finalStop(false)?.kind).toBe("budget");
  stop.store.close();
});

test("a resumed run's budget counts what it spent before", () => {
  const dir = mkdtempSync(path.join(tmpdir(), "bilevel-run-llm-"));
  const store = RunStore.open(dir);
  store.addExchange({
    iteration: 1,
    purpose: "propose",
    model: "m",
    messages: [],
    reply: null,
    error: null,
    promptTokens: 20,
    completionTokens: 10,
    latencyMs: 1,
  });
  const llm = new RunLlm(inner([]).client, {
    store,
    settings: { ...SETTINGS, maxTokensPerRun: 30 },
    emit: () => undefined,
    stop: () => undefined,
  });
  expect(llm.tokensUsed).toBe(30);
  expect(llm.available).toBe(false);
  store.close();
});

test("a mode change mid-run is stored (kept on resume) and announced", () => {
  const { store, fake, lines } = setup([]);
  fake.changeMode("json_object", "400 This response_format type is unavailable now");
  expect(storedMode(store)).toBe("json_object");
  expect(lines[0]).toBe(
    "LLM structured output: now json_object (the server refused the previous mode: 400 This response_format type is unavailable now)",
  );
  expect(store.events().at(-1)?.kind).toBe("llm-mode");
  store.setMeta("llm_mode", "xml");
  expect(storedMode(store)).toBeNull();
  store.close();
});

test("the console's monitor knows each call's level and purpose", async () => {
  const { store, call, waits } = setup([]);
  await call("propose");
  await call("level15");
  await call("level2.explore");
  expect(waits).toEqual(["1 propose 1/1", "1.5 level15 1/1", "2 level2.explore 1/1"]);
  expect(["preflight", "other"].map(levelOfPurpose)).toEqual(["run", "run"]);
  store.close();
});

const unavailable: LlmError = { code: "http", status: 503, message: "503 Service Unavailable" };

describe("a provider outage (a transient fault outlasting a call's retries)", () => {
  test("is waited out: the call is made again until it succeeds, nothing counts, both ends are events", async () => {
    const { store, call, stops, fake, outages, llm } = setup(
      [unavailable, unavailable, { code: "connection", message: "cannot reach x: ECONNREFUSED" }, "ok"],
      { maxOutageMs: 60_000, maxRetryWaitMs: 5 },
    );
    const result = await call();
    expect(result.ok).toBe(true);
    expect(fake.seen).toHaveLength(4);
    // Never under a second between calls (here the 5 ms cap of llm.maxRetryWaitMs is below that).
    expect(outages.map((o) => o.waitMs)).toEqual([1000, 1000, 1000]);
    expect(outages[2]?.reason).toBe("connection: cannot reach x: ECONNREFUSED");
    expect(stops()).toBe(0);
    const kinds = store.events().map((e) => [e.kind, e.message]);
    expect(kinds[0]).toEqual([
      "llm-outage",
      "the LLM is failing (http 503: 503 Service Unavailable): the run waits, calling again, for up to 1 min 00 s (llm.maxOutageMs)",
    ]);
    expect(kinds[1]?.[0]).toBe("llm-outage-over");
    expect(kinds[1]?.[1]).toMatch(/^the LLM answers again after \d+\.\d s of failures \(3 calls failed\)$/);
    expect(llm.finalStop(false)).toBeNull();
    store.close();
  });

  test("longer than llm.maxOutageMs, failures count again and the run stops, saying how long it waited", async () => {
    const { store, call, stops, fake } = setup(Array(40).fill(unavailable), {
      maxOutageMs: 40,
      maxRetryWaitMs: 5,
    });
    const first = await call();
    expect(first.ok).toBe(false);
    const waited = fake.seen.length;
    expect(waited).toBeGreaterThanOrEqual(2); // it waited and called again at least once
    expect(stops()).toBe(0);
    await call();
    await call();
    expect(fake.seen.length).toBe(waited + 2); // past the limit: no more waiting
    expect(stops()).toBe(1);
    expect(store.getMeta("stop_reason")).toMatch(
      /^the LLM failed 3 times in a row with the same kind of fault \(http 503; the same error each time: http 503: 503 Service Unavailable\), after [\d.]+ m?s of failures$/,
    );
    store.close();
  });

  test("a fault that is not transient (a refused key) is not waited on", async () => {
    const { store, call, fake, outages } = setup([http(401), "ok"], {
      maxOutageMs: 60_000,
      maxRetryWaitMs: 5,
    });
    expect((await call()).ok).toBe(false);
    expect(fake.seen).toHaveLength(1);
    expect(outages).toEqual([]);
    expect(store.events()).toEqual([]);
    store.close();
  });

  test("Ctrl-C during the wait ends the call as aborted, counting nothing", async () => {
    const stop = new AbortController();
    const { store, call, stops, fake } = setup(
      Array(5).fill(unavailable),
      { maxOutageMs: 600_000, maxRetryWaitMs: 600_000 },
      10,
      stop.signal,
    );
    const pending = call();
    await new Promise((resolve) => setTimeout(resolve, 50));
    stop.abort();
    const result = await pending;
    expect(result.ok).toBe(false);
    expect(result.ok ? null : result.error.code).toBe("aborted");
    expect(fake.seen).toHaveLength(1);
    expect(stops()).toBe(0);
    // The record's outage has its end too.
    expect(store.events().map((e) => e.kind)).toEqual(["llm-outage", "llm-outage-over"]);
    expect(store.events()[1]?.message).toMatch(
      /^the run stopped while waiting after .* of failures \(1 calls failed\)$/,
    );
    store.close();
  });

  test("a run stored before llm.maxOutageMs existed gets its default on resume; a missing value never loops", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "bilevel-run-llm-"));
    const store = RunStore.open(dir);
    const { maxOutageMs: _new, ...oldLlm } = DEFAULT_RUN_CONFIG.llm;
    store.setMeta("run_config", JSON.stringify({ ...DEFAULT_RUN_CONFIG, llm: oldLlm, proposer: undefined }));
    expect(store.runConfig()?.llm.maxOutageMs).toBe(1_800_000);
    expect(store.runConfig()?.proposer).toEqual(DEFAULT_RUN_CONFIG.proposer);
    store.close();
    const {
      store: s2,
      call,
      fake,
    } = setup([unavailable, "ok"], {
      maxOutageMs: undefined as unknown as number,
      maxRetryWaitMs: 5,
    });
    expect((await call()).ok).toBe(false);
    expect(fake.seen).toHaveLength(1);
    s2.close();
  });
});

test("a streak of one kind of fault with different messages says so, quoting them", async () => {
  const schema = (path: string): LlmError => ({ code: "schema", message: `${path}: must be number` });
  const { store, call } = setup([
    schema("/changes/0/param"),
    schema("/changes/1/value"),
    schema("/freeze/0"),
  ]);
  for (let i = 0; i < 3; i++) await call();
  expect(store.getMeta("stop_reason")).toBe(
    "the LLM failed 3 times in a row with the same kind of fault (schema; different messages, the last 3: schema: /changes/0/param: must be number; schema: /changes/1/value: must be number; schema: /freeze/0: must be number)",
  );
  store.close();
});
