// A call's search space and history cross to the child once: a request leaves out a text the child
// holds from the last call it accepted (protocol.ts, HeldTexts). Whatever went before — other
// texts, a refused call, a killed child, a batch — each call's mechanism sees that call's own data.
import { afterAll, beforeAll, expect, jest, test } from "@jest/globals";
import type { Trial } from "../../mechanism-api/index.d.ts";
import { frozenCopy } from "../../sandbox/frozen-json.ts";
import { Sandbox } from "../../sandbox/index.ts";
import { DEFAULT_POLICY } from "../../sandbox/policy.ts";
import { callTexts, HeldTexts, InvalidRequest, toWireCall } from "../../sandbox/protocol.ts";
import { Runner } from "../../sandbox/runner.ts";
import type { HookBatch, HookContextData, HookOutcome } from "../../sandbox/types.ts";
import { pidExists } from "../support/wait.ts";
import { EMPTY, hookCall, rawMechanism, trace } from "./helpers.ts";

// Says what it was given: the history's trial ids and the search space's parameter names.
const SEER = rawMechanism(
  `exports.default = { manifest: { name: "seer", version: 1, hooks: ["guide"], capabilities: [] }, guide(ctx) {
  return ctx.history.map((t) => t.id).join(",") + "|" + ctx.params.map((p) => p.name).join(",");
} };`,
  { name: "seer", hooks: ["guide"] },
);
const STUCK = rawMechanism(
  `exports.default = { manifest: { name: "stuck", version: 1, hooks: ["guide"], capabilities: [] }, guide(ctx) {
  return String(BigInt("1".repeat(30_000_000))).slice(0, 3);
} };`,
  { name: "stuck", hooks: ["guide"] },
);

let sandbox: Sandbox;
beforeAll(async () => {
  sandbox = await Sandbox.start({ hookTimeoutMs: 1_000 });
  for (const id of ["a", "b"]) expect(await sandbox.load(id, SEER)).toEqual({ ok: true });
  expect((await sandbox.load("stuck", STUCK)).ok).toBe(true);
});
afterAll(async () => {
  await sandbox.close();
});

/** The trace's context with the history's trials renumbered from `first` and the first `params` parameters. */
function context(first: number, params = trace.context.params.length): HookContextData {
  const history = trace.context.history.map((t, i) => ({ ...t, id: first + i }));
  return { ...trace.context, history, params: trace.context.params.slice(0, params) };
}

/** What SEER should say for `ctx`. */
function expected(ctx: HookContextData): string {
  return `${ctx.history.map((t) => t.id).join(",")}|${ctx.params.map((p) => p.name).join(",")}`;
}

const guide = (id: string, ctx: HookContextData): Promise<HookOutcome> =>
  sandbox.call(hookCall(id, "guide", { context: ctx }));

function said(outcome: HookOutcome | undefined): unknown {
  return outcome?.ok ? outcome.result.value : outcome?.error;
}

function guideBatch(ctx: HookContextData): HookBatch {
  return {
    hook: "guide",
    context: ctx,
    calls: ["a", "b"].map((mechanismId) => ({ mechanismId, state: {}, capabilities: EMPTY })),
  };
}

test("calls and batches with the same, new and earlier texts each see their own", async () => {
  const [one, two, small] = [context(1), context(101), context(1, 3)];
  for (const ctx of [one, one, two, one, small, small, two, one]) {
    expect(said(await guide("a", ctx))).toBe(expected(ctx));
    expect(said(await guide("b", ctx))).toBe(expected(ctx));
    const outcomes = await sandbox.callBatch(guideBatch(ctx));
    expect(outcomes?.map(said)).toEqual([expected(ctx), expected(ctx)]);
  }
});

test("a refused history is never taken as held: sent again it is refused again, and the next call sees its own", async () => {
  const good = context(1);
  const bad = { ...good, history: [...good.history, { nonsense: true } as unknown as Trial] };
  expect(said(await guide("a", good))).toBe(expected(good));
  for (let i = 0; i < 2; i++) {
    const refused = await guide("a", bad);
    expect(refused.ok ? "accepted" : refused.error.code).toBe("invalid-state");
    expect(said(refused)).toMatchObject({ message: expect.stringMatching(/^invalid history/) });
    expect(await sandbox.callBatch(guideBatch(bad))).toBeNull();
  }
  expect(said(await guide("a", good))).toBe(expected(good));
  // Refused data quarantines nothing: it was the caller's.
  expect(sandbox.quarantineReason("a")).toBeNull();
});

test("a call refused after the child took its texts (its state too deep) is not taken as held either", async () => {
  const [one, two] = [context(1), context(301, 4)];
  expect(said(await guide("a", one))).toBe(expected(one));
  let deep: unknown = 1;
  for (let i = 0; i < 100; i++) deep = [deep];
  // The child checks and keeps both new texts, then refuses the state: the host must not think it
  // still holds the first ones, nor that it holds these.
  const refused = await sandbox.call(hookCall("a", "guide", { context: two, state: deep as never }));
  expect(refused.ok ? "accepted" : refused.error.code).toBe("invalid-state");
  expect(said(await guide("a", one))).toBe(expected(one));
  expect(said(await guide("a", two))).toBe(expected(two));
  expect(said(await guide("a", one))).toBe(expected(one));
});

test("a child killed and started again gets the texts again", async () => {
  const ctx = context(201);
  expect(said(await guide("a", ctx))).toBe(expected(ctx));
  const restarts = sandbox.restarts;
  const stuck = await guide("stuck", ctx);
  expect(stuck.ok ? "ok" : stuck.error.code).toBe("timeout");
  // The same texts as the call before the kill: the new child must be sent them.
  expect(said(await guide("a", ctx))).toBe(expected(ctx));
  expect(said(await guide("b", ctx))).toBe(expected(ctx));
  expect(sandbox.restarts).toBe(restarts + 1);
  // Killed between calls (no request in flight to fail): the next child still gets them.
  const pid = sandbox.childPid;
  if (pid === undefined) throw new Error("no child");
  process.kill(pid, "SIGKILL");
  // Until the host has seen it go (its exit handled, the pid reaped), not merely until it is a zombie.
  while (pidExists(pid)) await new Promise((r) => setTimeout(r, 10));
  expect(said(await guide("a", ctx))).toBe(expected(ctx));
  expect(sandbox.restarts).toBe(restarts + 2);
});

test("a frozen context's texts are serialised once; an open one's afresh, changes made in place included", async () => {
  const frozen = {
    ...trace.context,
    params: frozenCopy(context(1).params),
    history: frozenCopy(context(1).history),
  };
  const stringify = jest.spyOn(JSON, "stringify");
  const serialised = (value: unknown) => stringify.mock.calls.filter(([v]) => v === value).length;
  try {
    for (let i = 0; i < 3; i++) expect(said(await guide("a", frozen))).toBe(expected(frozen));
    expect(serialised(frozen.history)).toBe(1);
    expect(serialised(frozen.params)).toBe(1);
    const open = context(1);
    const history = open.history as Trial[];
    expect(said(await guide("a", open))).toBe(expected(open));
    history.push({ ...history[0]!, id: 99 });
    expect(said(await guide("a", open))).toBe(expected(open));
    expect(expected(open)).toMatch(/,99\|/);
    expect(serialised(open.history)).toBe(2);
  } finally {
    stringify.mockRestore();
  }
});

test("HeldTexts leaves out only what the child accepted last", () => {
  const held = new HeldTexts();
  const first = callTexts(context(1));
  const second = callTexts(context(101));
  expect(held.leaveOut(first)).toEqual(first);
  held.settle(first, true);
  const lengths = { paramsJson: first.paramsJson.length, historyJson: first.historyJson.length };
  expect(held.leaveOut(first)).toEqual(lengths);
  expect(held.leaveOut(second)).toEqual({ paramsJson: lengths.paramsJson, historyJson: second.historyJson });
  held.settle(second, false);
  expect(held.leaveOut(first)).toEqual(first);
  expect(held.leaveOut(second)).toEqual(second);
});

test("a context whose search space or history is not JSON is refused before anything is sent", async () => {
  const context = { ...trace.context, history: undefined } as unknown as HookContextData;
  const call = hookCall("a", "guide", { context });
  const outcome = await sandbox.call(call);
  expect(outcome.ok ? "ok" : outcome.error.code).toBe("invalid-state");
  expect(() => callTexts({ ...trace.context, params: undefined } as unknown as HookContextData)).toThrow(
    /params is not JSON/,
  );
});

test("a call whose texts, escaped once more in its line, would pass the child's line cap is refused by the host", async () => {
  const roomy = await Sandbox.start({ hookTimeoutMs: 1_000, maxJsonBytes: 24 * 1024 * 1024 });
  try {
    expect(await roomy.load("a", SEER)).toEqual({ ok: true });
    // 19 M characters of data (under maxJsonBytes), 38 M once escaped inside the line (over 32 Mi).
    const quotes = { ...trace.context.history[0]!, note: '"'.repeat(9_500_000) } as unknown as Trial;
    const outcome = await roomy.call(
      hookCall("a", "guide", { context: { ...trace.context, history: [quotes] } }),
    );
    expect(outcome.ok ? "sent" : outcome.error).toMatchObject({ code: "invalid-state" });
    // Refused before it was sent: the child lives on and the mechanism is not blamed.
    expect(roomy.quarantineReason("a")).toBeNull();
    expect(roomy.restarts).toBe(0);
    expect(said(await roomy.call(hookCall("a", "guide")))).toBe(expected(trace.context));
  } finally {
    await roomy.close();
  }
});

test("the child refuses a call that leaves out a text it was never sent, naming it", async () => {
  const runner = new Runner(DEFAULT_POLICY);
  try {
    await runner.ready;
    expect(await runner.load("a", SEER)).toBeNull();
    const full = toWireCall(hookCall("a", "guide"));
    const [paramsLength, historyLength] = [full.paramsJson.length, full.historyJson.length];
    expect(() => runner.checkCall({ ...full, paramsJson: paramsLength })).toThrow(
      new InvalidRequest("the call leaves out its search space, and no earlier call sent one"),
    );
    expect(() => runner.checkCall({ ...full, historyJson: historyLength })).toThrow(
      new InvalidRequest("the call leaves out its history, and no earlier call sent one"),
    );
    const outcome = await runner.call(full);
    expect(outcome.ok).toBe(true);
    // Now held: a call leaving both out runs on them.
    const again = await runner.call({ ...full, paramsJson: paramsLength, historyJson: historyLength });
    expect(again.ok ? again.result.value : again.error).toBe(expected(trace.context));
    // A host out of step (another length than the text held) is refused, loudly, before guest code.
    expect(() => runner.checkCall({ ...full, historyJson: historyLength + 1 })).toThrow(
      new InvalidRequest(
        `the call leaves out its history as one of ${historyLength + 1} characters, but the one held has ${historyLength}`,
      ),
    );
  } finally {
    runner.disposeAll();
  }
});
