// The contexts the runner builds ahead (sandbox/runner.ts): whenever a call lands during a build
// (while the context is created off the main thread, while it is booted and warmed, or after),
// it runs in a context of its own that no mechanism code ran in before, and the reserve refills.
import { afterAll, beforeAll, expect, test } from "@jest/globals";
import { DEFAULT_POLICY } from "../../sandbox/policy.ts";
import { toWireCall } from "../../sandbox/protocol.ts";
import { Runner } from "../../sandbox/runner.ts";
import { hookCall, rawMechanism } from "./helpers.ts";

const runner = new Runner(DEFAULT_POLICY);
// `left`: what earlier calls in the same context left behind; 1 in a fresh one.
const probe = rawMechanism(
  `let calls = 0;
exports.default = { manifest: { name: "raw", version: 1, hooks: ["guide"], capabilities: [] }, guide(ctx) {
  calls++;
  globalThis.left = (globalThis.left || 0) + 1;
  return JSON.stringify({ calls, left: globalThis.left, iteration: ctx.iteration });
} };`,
  { hooks: ["guide"] },
);
const call = (iteration: number) =>
  runner.call(
    toWireCall(hookCall("probe", "guide", { context: { ...hookCall("p", "guide").context, iteration } })),
  );
const seen = (outcome: Awaited<ReturnType<typeof call>>): unknown =>
  outcome.ok ? JSON.parse(String(outcome.result.value)) : outcome.error;
const turn = () => new Promise((resolve) => setImmediate(resolve));

beforeAll(async () => {
  await runner.ready;
  expect(await runner.load("probe", probe)).toBeNull();
});
afterAll(() => runner.disposeAll());

test("a call landing at any step of a build runs in a fresh context", async () => {
  let iteration = 0;
  // Let the reserve fill, then call 0..7 event-loop turns after the last call: each build step
  // (the off-thread create, the boot, the warm-up, the next build) meets a call at some offset.
  await new Promise((resolve) => setTimeout(resolve, 50));
  expect(runner.reserved("probe")).toBe(2);
  for (let turns = 0; turns < 8; turns++) {
    for (let t = 0; t < turns; t++) await turn();
    const i = ++iteration;
    expect(seen(await call(i))).toEqual({ calls: 1, left: 1, iteration: i });
  }
});

test("a burst of calls at once, more than the reserve holds: each in a fresh context, then the reserve refills", async () => {
  const burst = await Promise.all(Array.from({ length: 6 }, (_, i) => call(100 + i)));
  expect(burst.map(seen)).toEqual(
    Array.from({ length: 6 }, (_, i) => ({ calls: 1, left: 1, iteration: 100 + i })),
  );
  // Refilled while idle: the next calls find contexts ready, and fresh.
  await new Promise((resolve) => setTimeout(resolve, 50));
  expect(runner.reserved("probe")).toBe(2);
  for (let i = 0; i < 3; i++)
    expect(seen(await call(200 + i))).toEqual({ calls: 1, left: 1, iteration: 200 + i });
});

test("contexts built ahead after a call are warmed (sandbox.test.ts shows that a warmed one leaks nothing)", async () => {
  await call(100);
  const before = runner.warmed;
  // After a call the reserve is refilled with contexts warmed on that call's input.
  for (let i = 1; i <= 3; i++) {
    expect(seen(await call(100 + i))).toMatchObject({ calls: 1, left: 1 });
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  expect(runner.reserved("probe")).toBe(2);
  expect(runner.warmed).toBeGreaterThanOrEqual(before + 3);
});
