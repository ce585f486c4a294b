// Sandbox.callBatch: one round trip for a hook's calls on several mechanisms. Each call keeps what
// a single call has (a fresh context, its own outcome, state and capability data, quarantine of
// the offender only); a filter chain runs inside the child; a killed child names the offender.
import type { Proposal } from "../../mechanism-api/index.d.ts";
import { FILTER_CHAIN_RULE } from "../../runtime/level1/filter-chain.ts";
import { Sandbox } from "../../sandbox/index.ts";
import type { HookBatch, HookOutcome } from "../../sandbox/types.ts";
import { EMPTY, HEALTHY, hookCall, rawMechanism, trace } from "./helpers.ts";

let sandbox: Sandbox;
beforeAll(async () => {
  sandbox = await Sandbox.start({ hookTimeoutMs: 300 }, { chainRule: FILTER_CHAIN_RULE });
  const compiled = await sandbox.compile(HEALTHY);
  if (!compiled.ok) throw new Error(JSON.stringify(compiled.errors));
  for (const id of ["h1", "h2", "h3"]) await sandbox.load(id, compiled.mechanism);
});
afterAll(async () => {
  await sandbox.close();
});

let serial = 0;
/** Load hand-written JS whose filter/guide/observe body is given; returns its id. */
async function js(body: string, hook: "guide" | "filter" | "observe" = "filter"): Promise<string> {
  const params = hook === "guide" ? "ctx" : "arg, ctx";
  const id = `js${++serial}`;
  const code = `exports.default = { manifest: { name: "raw", version: 1, hooks: ["${hook}"], capabilities: [] }, ${hook}(${params}) { ${body}\n} };`;
  const loaded = await sandbox.load(id, rawMechanism(code, { hooks: [hook] }));
  if (!loaded.ok) throw new Error(JSON.stringify(loaded.error));
  return id;
}

function batch(hook: HookBatch["hook"], ids: readonly string[], extra: Partial<HookBatch> = {}): HookBatch {
  const argument = hook === "filter" ? trace.proposal : hook === "observe" ? trace.trial : undefined;
  return {
    hook,
    context: trace.context,
    ...(argument === undefined ? {} : { argument }),
    calls: ids.map((mechanismId) => ({ mechanismId, state: { seen: 2 }, capabilities: EMPTY })),
    ...extra,
  };
}

/** An outcome without its latency (the one field a batch measures differently). */
function sansTime(outcome: HookOutcome): unknown {
  const { durationMs: _d, ...rest } = outcome;
  return rest;
}

test("a batch gives each mechanism the outcome its own call gives", async () => {
  for (const hook of ["guide", "filter", "observe"] as const) {
    const outcomes = await sandbox.callBatch(batch(hook, ["h1", "h2", "h3"]));
    expect(outcomes).toHaveLength(3);
    const single = await sandbox.call(hookCall("h2", hook, { state: { seen: 2 } }));
    for (const outcome of outcomes ?? []) {
      expect(sansTime(outcome)).toEqual(sansTime(single));
      expect(outcome.durationMs).toBeGreaterThan(0);
    }
  }
});

test("a filter chain: a valid modify reaches the next filter, an invalid one is ignored, a reject ends it", async () => {
  const modify = await js(
    `return { verdict: "modify", changes: [{ param: "MATRIX_LR", value: 0.031 }], reason: "pin" };`,
  );
  const invalid = await js(
    `return { verdict: "modify", changes: [{ param: "MATRIX_LR", value: 99 }], reason: "too big" };`,
  );
  // Says what it saw: rejects with the LR it was handed.
  const report = await js(
    `return { verdict: "reject", reason: "saw " + arg.config.MATRIX_LR + " " + arg.changes.length };`,
  );
  const never = await js(`return { verdict: "accept" };`);
  const proposal: Proposal = trace.proposal;
  const rule = { base: trace.context.incumbent.config, active: ["MATRIX_LR", "WARMDOWN_RATIO"] };
  const outcomes = await sandbox.callBatch(
    batch("filter", [modify, invalid, report, never], { argument: proposal, chain: rule }),
  );
  expect(outcomes?.map((o) => o.ok && o.result.value)).toEqual([
    { verdict: "modify", changes: [{ param: "MATRIX_LR", value: 0.031 }], reason: "pin" },
    { verdict: "modify", changes: [{ param: "MATRIX_LR", value: 99 }], reason: "too big" },
    { verdict: "reject", reason: "saw 0.031 1" },
  ]);
});

test("an isolate timeout and a throw inside a batch: only those are quarantined, the others' outcomes stand", async () => {
  const loops = await js("for (;;) {}", "guide");
  const throws = await js(`throw new Error("no");`, "guide");
  const restarts = sandbox.restarts;
  const outcomes = await sandbox.callBatch(batch("guide", ["h1", loops, "h2", throws, "h3"]));
  expect(outcomes?.map((o) => (o.ok ? "ok" : o.error.code))).toEqual(["ok", "timeout", "ok", "thrown", "ok"]);
  expect(sandbox.restarts).toBe(restarts);
  expect(sandbox.quarantineReason(loops)?.code).toBe("timeout");
  expect(sandbox.quarantineReason(throws)?.code).toBe("thrown");
  for (const id of ["h1", "h2", "h3"]) expect(sandbox.quarantineReason(id)).toBeNull();
});

test("a call the isolate cannot stop: the child is killed at that call's deadline, the offender named, the rest not run", async () => {
  const stuck = await js(`return String(BigInt("1".repeat(30_000_000))).slice(0, 3);`, "guide");
  const restarts = sandbox.restarts;
  const outcomes = await sandbox.callBatch(batch("guide", ["h1", stuck, "h2"]));
  expect(outcomes?.map((o) => (o.ok ? "ok" : o.error.code))).toEqual(["ok", "timeout"]);
  expect(sandbox.quarantineReason(stuck)?.message).toMatch(
    /^guide did not finish within \d+ ms \(policy.hookTimeoutMs\); the sandbox child gave no answer within/,
  );
  // The caller sends the rest again: a fresh child with the healthy mechanisms reloaded.
  const rest = await sandbox.callBatch(batch("guide", ["h2"]));
  expect(rest?.map((o) => o.ok)).toEqual([true]);
  expect(sandbox.restarts).toBe(restarts + 1);
});

test("a batch the host or the child refuses before any guest code runs is null (the caller calls one by one)", async () => {
  expect(await sandbox.callBatch(batch("guide", ["h1", "not-loaded"]))).toBeNull();
  const badHistory = { ...trace.context, history: [{ nonsense: true }] } as unknown as HookBatch["context"];
  expect(await sandbox.callBatch(batch("guide", ["h1", "h2"], { context: badHistory }))).toBeNull();
  expect(sandbox.quarantineReason("h1")).toBeNull();
  const tooBig = { ...trace.context, history: [] };
  const state = { blob: "x".repeat(sandbox.policy.maxJsonBytes) };
  const big = {
    ...batch("guide", ["h1"]),
    context: tooBig,
    calls: [{ mechanismId: "h1", state, capabilities: EMPTY }],
  };
  expect(await sandbox.callBatch(big)).toBeNull();
  expect(await sandbox.callBatch(batch("guide", ["h1"], { chain: { base: {}, active: [] } }))).toBeNull();
});

test("without the run's chain rule a chain is not batched (null), other batches are", async () => {
  const plain = await Sandbox.start({ hookTimeoutMs: 300 });
  try {
    const compiled = await plain.compile(HEALTHY);
    if (!compiled.ok) throw new Error(JSON.stringify(compiled.errors));
    for (const id of ["p1", "p2"]) await plain.load(id, compiled.mechanism);
    const rule = { base: trace.context.incumbent.config, active: [] };
    expect(await plain.callBatch(batch("filter", ["p1", "p2"], { chain: rule }))).toBeNull();
    expect((await plain.callBatch(batch("filter", ["p1", "p2"])))?.map((o) => o.ok)).toEqual([true, true]);
  } finally {
    await plain.close();
  }
});
