import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { RunStore } from "../../runtime/store.ts";
import { EMPTY_CAPABILITIES } from "../../sandbox/index.ts";

function fresh(): RunStore {
  return RunStore.open(mkdtempSync(path.join(tmpdir(), "bilevel-store-")));
}

test("a store round-trips trials, mechanisms, ledger and checkpoints, in WAL mode", () => {
  const store = fresh();
  const id = store.addTrial({
    iteration: 1,
    kind: "search",
    proposalId: null,
    seed: 1,
    config: { A: 1 },
    changes: [{ param: "A", value: 1 }],
    status: "ok",
    valBpb: 2.5,
    kept: true,
    delta: -0.1,
    result: { peak_memory_mb: 2048 },
    message: "ok",
    durationMs: 10,
    description: "A 0 -> 1",
  });
  expect(store.trials()).toEqual([
    expect.objectContaining({ id, valBpb: 2.5, kept: true, config: { A: 1 } }),
  ]);
  store.upsertMechanism({
    id: "m1",
    name: "x",
    origin: "library",
    status: "active",
    source: "src",
    js: "js",
    sourceHash: "a",
    jsHash: "b",
    manifest: { name: "x", version: 1, hooks: ["filter"], capabilities: [] },
    validation: null,
    state: { n: 1 },
    capabilities: EMPTY_CAPABILITIES,
    reason: null,
    createdIteration: 0,
    activatedIteration: 0,
    designName: null,
  });
  store.setMechanismState("m1", { n: 2 }, EMPTY_CAPABILITIES);
  expect(store.mechanisms()[0]?.state).toEqual({ n: 2 });
  const row = { iteration: 1, mechanismId: "m1", detail: {}, latencyMs: 0.2, trialId: null };
  store.addLedger({ ...row, hook: "filter", outcome: "accepted", proposalId: 5 });
  store.addLedger({ ...row, hook: "filter", outcome: "rejected", proposalId: 4 }); // a proposal never trained
  store.addLedger({ ...row, hook: "guide", outcome: "guided", proposalId: null });
  store.linkLedgerToTrial(id, 5, 1, false);
  expect(store.ledger().map((l) => l.trialId)).toEqual([id, null, null]);
  // An LLM proposal read the iteration's guide texts: they are credited too.
  store.linkLedgerToTrial(id, 5, 1, true);
  expect(store.ledger().map((l) => l.trialId)).toEqual([id, null, id]);
  store.checkpoint("x");
  store.checkpoint("x");
  expect(store.hasCheckpoint("x")).toBe(true);
  expect(store.getMeta("schema_version")).toBe("3");
  const tsv = readFileSync(store.writeResultsTsv(), "utf8").split("\n");
  expect(tsv[0]).toBe("commit\tval_bpb\tmemory_gb\tstatus\tdescription");
  expect(tsv[1]).toBe(`trial-${id}\t2.500000\t2.0\tkeep\tA 0 -> 1`);
  store.close();
});

test("a failed transaction leaves nothing behind", () => {
  const store = fresh();
  expect(() =>
    store.transaction(() => {
      store.checkpoint("half");
      throw new Error("boom");
    }),
  ).toThrow("boom");
  expect(store.hasCheckpoint("half")).toBe(false);
  store.close();
});

test("LLM exchanges keep their fault class, reasoning and mode; usage sums per purpose and iteration", () => {
  const store = fresh();
  const base = { model: "m", messages: [], reply: "{}", latencyMs: 10 };
  store.addExchange({
    ...base,
    iteration: 0,
    purpose: "preflight",
    error: null,
    promptTokens: 5,
    completionTokens: 1,
  });
  store.addExchange({
    ...base,
    iteration: 1,
    purpose: "propose",
    error: "empty: the reply has no text",
    errorCode: "empty",
    finishReason: "stop",
    promptTokens: 100,
    completionTokens: 2,
    mode: "json_object",
  });
  store.addExchange({
    ...base,
    iteration: 1,
    purpose: "propose",
    error: null,
    promptTokens: 100,
    completionTokens: 50,
    reasoning: "thinking",
    reasoningTokens: 30,
    mode: "json_object",
  });
  // A server that reports no usage: counted as 0, not NaN.
  store.addExchange({
    ...base,
    iteration: 1,
    purpose: "propose",
    error: null,
    promptTokens: null,
    completionTokens: null,
  });
  expect(store.exchanges()[1]).toMatchObject({
    errorCode: "empty",
    finishReason: "stop",
    mode: "json_object",
    reasoning: null,
  });
  expect(store.exchanges()[2]).toMatchObject({ reasoning: "thinking", reasoningTokens: 30 });
  expect(store.exchanges()[0]).toMatchObject({ errorCode: null, mode: null, reasoningTokens: null });
  expect(store.llmUsage()).toEqual([
    {
      purpose: "preflight",
      iteration: 0,
      exchanges: 1,
      failed: 0,
      promptTokens: 5,
      completionTokens: 1,
      reasoningTokens: 0,
      latencyMs: 10,
    },
    {
      purpose: "propose",
      iteration: 1,
      exchanges: 3,
      failed: 1,
      promptTokens: 200,
      completionTokens: 52,
      reasoningTokens: 30,
      latencyMs: 30,
    },
  ]);
  expect(store.llmTokensUsed()).toBe(258);
  store.close();
});
