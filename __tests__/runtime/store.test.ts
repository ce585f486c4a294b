import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { DatabaseSync } from "node:sqlite";
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
  expect(store.getMeta("schema_version")).toBe("5");
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

test("a run database of schema 2 (no trials.git_commit) is migrated when opened for writing; commits show in results.tsv", () => {
  const dir = mkdtempSync(path.join(tmpdir(), "bilevel-store-v2-"));
  const trial = {
    iteration: 0,
    kind: "baseline" as const,
    proposalId: null,
    seed: 1,
    config: { A: 1 },
    changes: [],
    status: "ok" as const,
    valBpb: 1.5,
    kept: false,
    delta: null,
    result: null,
    message: "ok",
    durationMs: 1,
    description: "baseline run 1 (seed 1)",
  };
  const v3 = RunStore.open(dir);
  v3.addTrial(trial);
  v3.close();
  // Make it what schema 2 wrote.
  const db = new DatabaseSync(RunStore.dbPath(dir));
  db.exec(
    "ALTER TABLE trials DROP COLUMN git_commit; ALTER TABLE llm_exchanges DROP COLUMN mode; ALTER TABLE llm_exchanges DROP COLUMN reasoning_tokens; DROP TABLE jobs; UPDATE meta SET value = '2' WHERE key = 'schema_version'",
  );
  db.close();
  const old = RunStore.open(dir, { readOnly: true }); // status and export read it as it is
  expect(old.trials()[0]?.commit).toBeNull();
  expect(old.jobs()).toEqual([]); // no jobs table yet
  expect(old.llmUsage()).toEqual([]);
  old.close();
  const store = RunStore.open(dir);
  expect(store.getMeta("schema_version")).toBe("5");
  expect(store.trials()[0]?.commit).toBeNull();
  expect(store.jobs()).toEqual([]); // the jobs table exists now
  store.addTrial({
    ...trial,
    kind: "search",
    iteration: 1,
    description: "A 1 -> 2",
    commit: "0123456789abcdef",
  });
  const tsv = readFileSync(store.writeResultsTsv(), "utf8").trim().split("\n");
  expect(tsv.slice(1).map((l) => l.split("\t")[0])).toEqual(["trial-1", "0123456"]);
  expect(tsv[1]).toMatch(/\tkeep\tbaseline$/);
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
