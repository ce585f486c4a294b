// The Sandbox API end to end: load/call/state/capabilities, validate(), quarantine, restarts,
// the child's memory cap and the compile deadline.
import { existsSync } from "node:fs";
import { FIXED_NOW, loadDefaultParams, Sandbox, syntheticTrace } from "../../sandbox/index.ts";
import { callSeed, sfc32 } from "../../sandbox/rng.ts";
import { pidExists, waitFor } from "../support/wait.ts";
import { EMPTY, HEALTHY, hookCall, rawMechanism, trace } from "./helpers.ts";

const HEAD = `import type { Mechanism } from "bilevel/mechanism-api";\n`;

let sandbox: Sandbox;
beforeAll(async () => {
  sandbox = await Sandbox.start({ hookTimeoutMs: 300, maxLogLines: 3 });
});
afterAll(async () => {
  await sandbox.close();
});

async function compileAndLoad(id: string, source: string): Promise<void> {
  const compiled = await sandbox.compile(source);
  if (!compiled.ok) throw new Error(JSON.stringify(compiled.errors));
  const loaded = await sandbox.load(id, compiled.mechanism);
  if (!loaded.ok) throw new Error(JSON.stringify(loaded.error));
}

test("init → filter → observe: state and capability data flow through the host", async () => {
  await compileAndLoad("h", HEALTHY);
  const init = await sandbox.call(hookCall("h", "init"));
  expect(init).toMatchObject({ ok: true, result: { hook: "init", value: { seen: 0 } }, state: { seen: 0 } });
  if (!init.ok) return;
  const observed = await sandbox.call(
    hookCall("h", "observe", { state: init.state, capabilities: init.capabilities }),
  );
  if (!observed.ok) throw new Error(JSON.stringify(observed.error));
  expect(observed.state).toEqual({ seen: 1 });
  expect(observed.capabilities.tabu.t).toEqual([
    { config: trace.trial.config, expires: trace.context.iteration + 3, added: trace.context.iteration },
  ]);
  // The same config is now tabu for `filter`, given the host-kept capability data back.
  const sameConfig = { ...trace.proposal, config: trace.trial.config };
  const filtered = await sandbox.call(
    hookCall("h", "filter", {
      state: observed.state,
      capabilities: observed.capabilities,
      argument: sameConfig,
    }),
  );
  expect(filtered.ok && filtered.result.value).toMatchObject({ verdict: "reject" });
  expect(filtered.ok && filtered.capabilityCalls).toBe(4);
  expect(filtered.ok && filtered.durationMs).toBeGreaterThan(0);
  const guide = await sandbox.call(hookCall("h", "guide", { state: observed.state }));
  expect(guide.ok && guide.result).toEqual({ hook: "guide", value: "seen 1" });
  // Without the data, the mechanism starts from what it is given: nothing survives in the isolate.
  const fresh = await sandbox.call(hookCall("h", "filter", { state: observed.state, argument: sameConfig }));
  expect(fresh.ok && fresh.result.value).toEqual({ verdict: "accept" });
});

test("ctx.random and Math.random are the seeded guest stream (sfc32 of seed, mechanism, iteration, hook)", async () => {
  await compileAndLoad(
    "rng",
    `${HEAD}export default { manifest: { name: "rng", version: 1, hooks: ["guide"], capabilities: [] }, guide(ctx) { return JSON.stringify([ctx.random(), ctx.random(), Math.random(), Date.now()]); } } satisfies Mechanism;`,
  );
  const outcome = await sandbox.call(hookCall("rng", "guide"));
  const expected = sfc32(callSeed(trace.context.seed, "rng", trace.context.iteration, "guide", "guest"));
  expect(outcome.ok && JSON.parse(outcome.result.value as string)).toEqual([
    expected(),
    expected(),
    expected(),
    FIXED_NOW,
  ]);
});

test("a context warmed ahead looks to the mechanism exactly as one that was not", async () => {
  // What a mechanism can observe of its context: its globals and the built-ins' properties, both
  // random streams, the clock, a stack trace, anything an earlier call left behind, ctx, its state.
  const probe = rawMechanism(
    `let calls = 0;
exports.default = { manifest: { name: "raw", version: 1, hooks: ["guide"], capabilities: [] }, guide(ctx) {
  calls++;
  globalThis.left = (globalThis.left || 0) + 1;
  const names = (o) => Object.getOwnPropertyNames(o).sort().join(",");
  const random = [];
  for (let i = 0; i < 4; i++) random.push(Math.random(), ctx.random());
  return JSON.stringify({ calls, left: globalThis.left, globals: names(globalThis), object: names(Object.prototype),
    array: names(Array.prototype), json: names(JSON), math: names(Math), random, now: Date.now(),
    stack: new Error("probe").stack, ctx: Object.keys(ctx).join(","), state: ctx.state, params: ctx.params.length });
} };`,
    { hooks: ["guide"] },
  );
  expect((await sandbox.load("probe", probe)).ok).toBe(true);
  const seen: string[] = [];
  for (let i = 0; i < 5; i++) {
    // Apart, so that each call finds a context built for it: the first was built at load, before
    // any input to warm it with existed; from the third on, each was built (and warmed) after a call.
    await new Promise((resolve) => setTimeout(resolve, 50));
    const outcome = await sandbox.call(hookCall("probe", "guide", { state: { seen: 2 } }));
    seen.push(outcome.ok ? String(outcome.result.value) : JSON.stringify(outcome.error));
  }
  expect(JSON.parse(seen[0]!)).toMatchObject({ calls: 1, left: 1, state: { seen: 2 }, now: FIXED_NOW });
  for (const later of seen.slice(1)) expect(later).toBe(seen[0]);
});

test("logs are bounded per call; the rest are counted", async () => {
  await compileAndLoad(
    "logger",
    `${HEAD}export default { manifest: { name: "logger", version: 1, hooks: ["guide"], capabilities: [] }, guide(ctx) { for (let i = 0; i < 10; i++) ctx.log("line " + i); ctx.log("x".repeat(5000)); return undefined; } } satisfies Mechanism;`,
  );
  const outcome = await sandbox.call(hookCall("logger", "guide"));
  expect(outcome).toMatchObject({
    ok: true,
    result: { hook: "guide", value: null },
    logs: ["line 0", "line 1", "line 2"],
    droppedLogLines: 8,
  });
});

test("suggest returns a suggestion or nothing; filter can modify", async () => {
  await compileAndLoad(
    "suggester",
    `${HEAD}export default { manifest: { name: "suggester", version: 1, hooks: ["suggest", "filter"], capabilities: ["space"] },
  suggest(ctx) { return ctx.iteration % 2 === 0 ? undefined : { changes: [{ param: "DEPTH", value: ctx.space.clamp("DEPTH", 99) }], rationale: "deeper" }; },
  filter(p) { return { verdict: "modify", changes: [{ param: "DEPTH", value: 3 }], reason: "cap depth" }; },
} satisfies Mechanism;`,
  );
  const none = await sandbox.call(
    hookCall("suggester", "suggest", { context: { ...trace.context, iteration: 2 } }),
  );
  expect(none.ok && none.result).toEqual({ hook: "suggest", value: null });
  const some = await sandbox.call(
    hookCall("suggester", "suggest", { context: { ...trace.context, iteration: 3 } }),
  );
  expect(some.ok && some.result).toEqual({
    hook: "suggest",
    value: {
      changes: [{ param: "DEPTH", value: loadDefaultParams().find((p) => p.name === "DEPTH")?.max }],
      rationale: "deeper",
    },
  });
  const modified = await sandbox.call(hookCall("suggester", "filter"));
  expect(modified.ok && modified.result.value).toEqual({
    verdict: "modify",
    changes: [{ param: "DEPTH", value: 3 }],
    reason: "cap depth",
  });
});

test("bad call data is the caller's error (invalid-state), not the mechanism's: no quarantine", async () => {
  await compileAndLoad("victim", HEALTHY);
  const badState = await sandbox.call(hookCall("victim", "guide", { state: { big: "x".repeat(70 * 1024) } }));
  expect(badState).toMatchObject({ ok: false, error: { code: "invalid-state" } });
  const badContext = await sandbox.call(
    hookCall("victim", "guide", { context: { ...trace.context, params: [{ name: "X" }] as never } }),
  );
  expect(badContext).toMatchObject({ ok: false, error: { code: "invalid-state" } });
  if (!badContext.ok) expect(badContext.error.message).toMatch(/search space/);
  const badHook = await sandbox.call({ ...hookCall("victim", "guide"), hook: "launch" as never });
  expect(badHook.ok).toBe(false);
  // Too deep for a state but small: refused before the hook runs (it used to run and be blamed).
  let deep: unknown = 0;
  for (let i = 0; i < 100; i++) deep = [deep];
  const badDepth = await sandbox.call(hookCall("victim", "guide", { state: { seen: 1, deep } as never }));
  expect(badDepth).toMatchObject({ ok: false, error: { code: "invalid-state" } });
  if (!badDepth.ok) expect(badDepth.error.message).toMatch(/state passed in nests deeper than 64 levels/);
  expect(sandbox.quarantineReason("victim")).toBeNull();
  expect((await sandbox.call(hookCall("victim", "guide", { state: { seen: 2 } }))).ok).toBe(true);
  // A hook the manifest does not declare is refused too.
  expect(await sandbox.call(hookCall("victim", "suggest"))).toMatchObject({
    ok: false,
    error: { code: "missing-hook" },
  });
});

test("unknown ids and invalid mechanisms are clear errors", async () => {
  expect(await sandbox.call(hookCall("nobody", "guide"))).toMatchObject({
    ok: false,
    error: { code: "crashed" },
  });
  expect(await sandbox.load("", rawMechanism("", { hooks: ["guide"] }))).toMatchObject({ ok: false });
  expect(await sandbox.load("x", { manifest: {} } as never)).toMatchObject({
    ok: false,
    error: { stage: "load", code: "invalid-manifest" },
  });
  const syntax = rawMechanism("exports.default = {", { hooks: ["guide"] });
  expect(await sandbox.load("x", syntax)).toMatchObject({
    ok: false,
    error: { stage: "load", code: "syntax-error" },
  });
});

test("quarantine: recorded with the reason, calls refused, cleared by a fresh load", async () => {
  const thrower = rawMechanism(
    "exports.default = { manifest: { name: 'raw', version: 1, hooks: ['guide'], capabilities: [] }, guide(ctx) { if (ctx.iteration === 1) throw new TypeError('bad luck'); return 'ok'; } };",
    { hooks: ["guide"] },
  );
  expect((await sandbox.load("q", thrower)).ok).toBe(true);
  const fault = await sandbox.call(hookCall("q", "guide", { context: { ...trace.context, iteration: 1 } }));
  expect(fault).toMatchObject({
    ok: false,
    error: { stage: "guide", code: "thrown", message: "TypeError: bad luck" },
  });
  expect(sandbox.quarantineReason("q")).toMatchObject({ code: "thrown" });
  expect(await sandbox.call(hookCall("q", "guide"))).toMatchObject({
    ok: false,
    error: { code: "quarantined" },
  });
  await sandbox.unload("q");
  expect(sandbox.quarantineReason("q")).toMatchObject({ code: "thrown" });
  expect((await sandbox.load("q", thrower)).ok).toBe(true);
  expect(sandbox.quarantineReason("q")).toBeNull();
  expect((await sandbox.call(hookCall("q", "guide"))).ok).toBe(true);
});

test("validate: compile, lint, load, then every declared hook in order, init's state feeding the rest", async () => {
  const source = `${HEAD}export default {
  manifest: { name: "chain", version: 1, hooks: ["observe", "init", "filter"], capabilities: ["tabu"] },
  init() { return { token: "from-init" }; },
  filter(p, ctx) { if (ctx.state.token !== "from-init") throw new Error("no init state"); ctx.tabu.add("t", p.config, 2); return { verdict: "accept" }; },
  observe(t, ctx) { if (ctx.tabu.size("t") !== 1) throw new Error("no capability data from filter"); },
} satisfies Mechanism<{ token: string }>;`;
  const report = await sandbox.validate(source, syntheticTrace(loadDefaultParams(), 3), "chain.ts");
  expect(report.error).toBeNull();
  expect(report.ok).toBe(true);
  expect(report.stages.map((s) => s.stage)).toEqual(["compile", "lint", "load", "init", "filter", "observe"]);
  expect(report.stages.every((s) => s.ok && s.durationMs >= 0)).toBe(true);
  expect(report.manifest?.name).toBe("chain");
  expect(report.compiled?.js).toMatch(/exports\.default/);
});

test.each([
  [
    "compile",
    `${HEAD}export default { manifest: { name: "m", version: 1, hooks: ["guide"], capabilities: [] }, guide() { return 1 + ""; }, } satisfies Mechanism; const x: number = "s";`,
    "type-error",
  ],
  [
    "lint",
    `${HEAD}export default { manifest: { name: "m", version: 1, hooks: ["guide"], capabilities: [] }, guide() { return String(eval("1")); } } satisfies Mechanism;`,
    "forbidden-syntax",
  ],
  [
    "load",
    `${HEAD}const boom = (): never => { throw new Error("top"); };\nboom();\nexport default { manifest: { name: "m", version: 1, hooks: ["guide"], capabilities: [] }, guide() { return "x"; } } satisfies Mechanism;`,
    "thrown",
  ],
  [
    "guide",
    `${HEAD}export default { manifest: { name: "m", version: 1, hooks: ["init", "guide"], capabilities: [] }, init() { return {}; }, guide() { for (;;) {} } } satisfies Mechanism;`,
    "timeout",
  ],
])("validate reports the first failure at its stage: %s", async (stage, source, code) => {
  const report = await sandbox.validate(source, trace);
  expect(report.ok).toBe(false);
  expect(report.error).toMatchObject({ stage, code });
  const last = report.stages.at(-1)!;
  expect(last).toMatchObject({ stage, ok: false });
  expect(report.stages.slice(0, -1).every((s) => s.ok)).toBe(true);
});

test("a child killed from outside is replaced; loaded mechanisms are reloaded", async () => {
  await compileAndLoad("survivor", HEALTHY);
  const pid = sandbox.childPid!;
  const restarts = sandbox.restarts;
  process.kill(pid, "SIGKILL");
  // Wait until the child has been reaped (by this process, which then knows it died): a call sent
  // to a child that is dead but not yet noticed would fail and quarantine "survivor".
  await waitFor(() => !existsSync(`/proc/${pid}`));
  const outcome = await sandbox.call(hookCall("survivor", "guide", { state: { seen: 5 } }));
  expect(outcome.ok && outcome.result.value).toBe("seen 5");
  expect(sandbox.restarts).toBe(restarts + 1);
  expect(sandbox.childPid).not.toBe(pid);
});

test("a child that dies during a call: crashed, the caller quarantined, the rest reloaded", async () => {
  // A hook deadline far beyond the test's: the guest's endless loop ends only by the kill, whenever
  // the kill comes (a loaded machine must not turn "crashed" into "timeout").
  const patient = await Sandbox.start({ hookTimeoutMs: 600_000 });
  try {
    const survivor = await patient.compile(HEALTHY);
    if (!survivor.ok) throw new Error(JSON.stringify(survivor.errors));
    expect((await patient.load("survivor", survivor.mechanism)).ok).toBe(true);
    const slow = rawMechanism(
      "exports.default = { manifest: { name: 'raw', version: 1, hooks: ['guide'], capabilities: [] }, guide() { for (;;) {} } };",
      { hooks: ["guide"] },
    );
    expect((await patient.load("slow", slow)).ok).toBe(true);
    const pid = patient.childPid!;
    const pending = patient.call(hookCall("slow", "guide"));
    setTimeout(() => process.kill(pid, "SIGKILL"), 50);
    const outcome = await pending;
    expect(outcome).toMatchObject({ ok: false, error: { stage: "guide", code: "crashed" } });
    expect(patient.quarantineReason("slow")?.code).toBe("crashed");
    expect((await patient.call(hookCall("survivor", "guide", { state: { seen: 1 } }))).ok).toBe(true);
    expect(patient.restarts).toBe(1);
  } finally {
    await patient.close();
  }
});

test("the child's OS-level memory cap (RSS watchdog) kills a child that outgrows it", async () => {
  // The hook deadline is far beyond the test's, so only the watchdog can end the call, however
  // long the allocations take on this machine.
  const small = await Sandbox.start(
    { hookTimeoutMs: 600_000, isolateMemoryMb: 2048 },
    { childMemoryMb: 250 },
  );
  try {
    const hog = rawMechanism(
      "exports.default = { manifest: { name: 'raw', version: 1, hooks: ['guide'], capabilities: [] }, guide() { const a = []; for (let i = 0; ; i++) a.push(new Array(1e6).fill(i)); } };",
      { hooks: ["guide"] },
    );
    expect((await small.load("hog", hog)).ok).toBe(true);
    const outcome = await small.call(hookCall("hog", "guide"));
    expect(outcome).toMatchObject({ ok: false, error: { code: "memory" } });
    if (!outcome.ok) expect(outcome.error.message).toMatch(/250 MB/);
  } finally {
    await small.close();
  }
});

test("the compile deadline: a compile that takes too long kills the child, and the next one works", async () => {
  const hurried = await Sandbox.start({}, { compileTimeoutMs: 1 });
  try {
    // The first compile loads the TypeScript compiler: no machine does that within 1 ms.
    const outcome = await hurried.compile(HEALTHY);
    expect(outcome).toMatchObject({ ok: false, errors: [{ stage: "compile", code: "timeout" }] });
    expect(hurried.restarts).toBe(0);
    const again = await hurried.compile("");
    expect(again.ok).toBe(false);
    expect(hurried.restarts).toBe(1);
  } finally {
    await hurried.close();
  }
});

test("close() ends the child; later calls fail cleanly", async () => {
  const box = await Sandbox.start();
  const pid = box.childPid!;
  expect(pidExists(pid)).toBe(true);
  await box.close();
  expect(pidExists(pid)).toBe(false);
  expect(await box.call(hookCall("h", "guide"))).toMatchObject({ ok: false });
  expect(await box.compile("")).toMatchObject({ ok: false, errors: [{ code: "crashed" }] });
});

test("syntheticTrace is deterministic and valid for the default search space", () => {
  const params = loadDefaultParams();
  expect(params.length).toBeGreaterThan(5);
  const a = syntheticTrace(params, 5);
  expect(syntheticTrace(params, 5)).toEqual(a);
  expect(syntheticTrace(params, 6)).not.toEqual(a);
  expect(a.context.history.length).toBe(5);
  expect(a.context.history.some((t) => t.status !== "ok" && t.valBpb === null)).toBe(true);
  expect(a.trial.config).toEqual(a.proposal.config);
  expect(EMPTY).toEqual({ tabu: {}, bandit: {} });
});
