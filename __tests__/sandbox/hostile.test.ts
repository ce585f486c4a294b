// The hostile-mechanism suite: real isolates in the real child process. Every case asserts a clear,
// classified rejection or containment, and (afterEach) that the host and another loaded mechanism
// keep working. Cases the lint catches are ALSO run as hand-compiled JavaScript that skips the lint,
// because the lint is not the security boundary.
import { FIXED_NOW, Sandbox } from "../../sandbox/index.ts";
import type { HookOutcome, SandboxError } from "../../sandbox/types.ts";
import { fixture, HEALTHY, hookCall, rawFixture, rawMechanism, trace } from "./helpers.ts";

const POLICY = {
  hookTimeoutMs: 250,
  isolateMemoryMb: 32,
  capabilityCallBudget: 50,
  maxJsonBytes: 256 * 1024,
  maxStateBytes: 8 * 1024,
  maxLogLines: 5,
};

let sandbox: Sandbox;
let healthyCalls = 0;

beforeAll(async () => {
  sandbox = await Sandbox.start(POLICY);
  const compiled = await sandbox.compile(HEALTHY);
  if (!compiled.ok) throw new Error(JSON.stringify(compiled.errors));
  const loaded = await sandbox.load("healthy", compiled.mechanism);
  if (!loaded.ok) throw new Error(JSON.stringify(loaded.error));
});

afterAll(async () => {
  await sandbox.close();
});

afterEach(async () => {
  // The other mechanism is untouched and its capabilities still work.
  const outcome = await sandbox.call(hookCall("healthy", "filter"));
  expect(outcome.ok).toBe(true);
  if (outcome.ok) {
    expect(outcome.result).toEqual({ hook: "filter", value: { verdict: "accept" } });
    expect(outcome.capabilities.bandit.b).toBeDefined();
  }
  expect(sandbox.quarantineReason("healthy")).toBeNull();
  healthyCalls++;
});

let counter = 0;
const nextId = (name: string) => `${name}-${++counter}`;

async function loadTs(file: string): Promise<string> {
  const compiled = await sandbox.compile(fixture(file));
  if (!compiled.ok) throw new Error(`${file} did not compile: ${JSON.stringify(compiled.errors)}`);
  const id = nextId(file);
  const loaded = await sandbox.load(id, compiled.mechanism);
  if (!loaded.ok) throw new Error(`${file} did not load: ${JSON.stringify(loaded.error)}`);
  return id;
}

async function loadRaw(file: string): Promise<string> {
  const id = nextId(file);
  const loaded = await sandbox.load(id, rawFixture(file));
  if (!loaded.ok) throw new Error(`${file} did not load: ${JSON.stringify(loaded.error)}`);
  return id;
}

function failure(outcome: HookOutcome): SandboxError {
  if (outcome.ok) throw new Error(`expected a fault, got ${JSON.stringify(outcome.result)}`);
  return outcome.error;
}

function text(outcome: HookOutcome): string {
  if (!outcome.ok) throw new Error(`expected success, got ${JSON.stringify(outcome.error)}`);
  if (outcome.result.hook !== "guide" || typeof outcome.result.value !== "string")
    throw new Error("no guide text");
  return outcome.result.value;
}

/** A fault quarantines the mechanism: later calls are refused without running it. */
async function expectQuarantined(id: string, code: SandboxError["code"]): Promise<void> {
  expect(sandbox.quarantineReason(id)?.code).toBe(code);
  const again = failure(await sandbox.call(hookCall(id, "guide")));
  expect(again.code).toBe("quarantined");
  expect(again.message).toContain(code);
}

describe("runaway code", () => {
  test("infinite loop at the top level: load/timeout", async () => {
    const compiled = await sandbox.compile(fixture("loop-top.ts"));
    expect(compiled.ok).toBe(true);
    if (!compiled.ok) return;
    const loaded = await sandbox.load(nextId("loop-top"), compiled.mechanism);
    expect(loaded).toMatchObject({ ok: false, error: { stage: "load", code: "timeout" } });
  });

  test("infinite loop in a hook: guide/timeout, quarantined", async () => {
    const id = await loadTs("loop-hook.ts");
    const error = failure(await sandbox.call(hookCall(id, "guide")));
    expect(error).toMatchObject({ stage: "guide", code: "timeout" });
    await expectQuarantined(id, "timeout");
  });

  test("catastrophic regex backtracking: timeout", async () => {
    const id = await loadTs("regex.ts");
    expect(failure(await sandbox.call(hookCall(id, "guide"))).code).toBe("timeout");
  });

  test("microtask flood after the hook returns: timeout", async () => {
    const id = await loadTs("microtask-flood.ts");
    expect(failure(await sandbox.call(hookCall(id, "guide"))).code).toBe("timeout");
  });

  test("deep recursion: a contained RangeError (thrown) with its TypeScript position", async () => {
    const id = await loadTs("recursion.ts");
    const error = failure(await sandbox.call(hookCall(id, "guide")));
    expect(error).toMatchObject({ stage: "guide", code: "thrown" });
    expect(error.message).toMatch(/RangeError: Maximum call stack/);
    expect(error.line).toBe(5);
  });

  test("huge array spread: contained", async () => {
    const id = await loadTs("spread.ts");
    const error = failure(await sandbox.call(hookCall(id, "guide")));
    expect(["thrown", "memory", "timeout"]).toContain(error.code);
  });

  test("BigInt of a huge string (not interruptible): the host deadline kills and restarts the child", async () => {
    const id = await loadTs("bigint.ts");
    const restarts = sandbox.restarts;
    const error = failure(await sandbox.call(hookCall(id, "guide")));
    // A timeout followed by a restart: the host's deadline killed the child (the isolate's own
    // timeout cannot interrupt the conversion), rather than the call running to its end.
    expect(error).toMatchObject({ stage: "guide", code: "timeout" });
    // The next request (afterEach's healthy call) runs on a fresh child with the healthy mechanism reloaded.
    const outcome = await sandbox.call(hookCall("healthy", "guide"));
    expect(outcome.ok).toBe(true);
    expect(sandbox.restarts).toBe(restarts + 1);
  });

  test("an Error whose message getter loops: timeout, no hang", async () => {
    const id = await loadTs("message-getter.ts");
    expect(failure(await sandbox.call(hookCall(id, "guide"))).code).toBe("timeout");
  });
});

describe("memory", () => {
  test("memory bomb: memory, quarantined", async () => {
    const id = await loadTs("memory-bomb.ts");
    const error = failure(await sandbox.call(hookCall(id, "guide")));
    expect(error).toMatchObject({ stage: "guide", code: "memory" });
    await expectQuarantined(id, "memory");
  });

  test("ArrayBuffer bomb (memory outside the JS heap): memory", async () => {
    const id = await loadTs("array-buffer-bomb.ts");
    expect(failure(await sandbox.call(hookCall(id, "guide"))).code).toBe("memory");
  });

  test("WebAssembly.Memory growth: WebAssembly does not exist (lint rejects it; raw JS fails cleanly)", async () => {
    const compiled = await sandbox.compile(fixture("lint-wasm.ts"));
    expect(compiled.ok).toBe(false);
    if (!compiled.ok) {
      const messages = compiled.errors.map((e) => e.message).join("\n");
      for (const word of ["WebAssembly", "Atomics", "SharedArrayBuffer", "eval"])
        expect(messages).toContain(word);
    }
    const id = await loadRaw("wasm-memory.js");
    const error = failure(await sandbox.call(hookCall(id, "guide")));
    expect(error).toMatchObject({ code: "thrown" });
    expect(error.message).toMatch(/WebAssembly is not defined/);
  });

  test("state bloat: invalid-state", async () => {
    const id = await loadTs("state-bloat.ts");
    const error = failure(await sandbox.call(hookCall(id, "observe")));
    expect(error).toMatchObject({ stage: "observe", code: "invalid-state" });
    expect(error.message).toMatch(/bytes/);
  });

  test("deeply nested state: invalid-state", async () => {
    const id = await loadTs("deep-state.ts");
    expect(failure(await sandbox.call(hookCall(id, "init"))).code).toBe("invalid-state");
  });

  test("a state too deep is caught by the depth check before it is stringified (deep values overflow the stack)", async () => {
    // 4000 levels and padding: within what the guest can serialise, over the depth and the 8 KiB size cap.
    const id = await loadRaw("deeper-state.js");
    const error = failure(await sandbox.call(hookCall(id, "guide")));
    expect(error).toMatchObject({ stage: "guide", code: "invalid-state" });
    expect(error.message).toMatch(/nests deeper than 64 levels/);
    await expectQuarantined(id, "invalid-state");
  });
});

describe("escapes", () => {
  test("Function/constructor escapes are rejected by the lint and lead nowhere at run time", async () => {
    const compiled = await sandbox.compile(fixture("lint-escapes.ts"));
    expect(compiled.ok).toBe(false);
    if (!compiled.ok) expect(compiled.errors.some((e) => e.code === "forbidden-syntax")).toBe(true);
    const id = await loadRaw("function-escape.js");
    const found = JSON.parse(text(await sandbox.call(hookCall(id, "guide")))) as Record<string, string>;
    expect(found.globalProcess).toBe("undefined");
    expect(found.globalRequire).toBe("undefined");
    expect(found.viaCtx).toBe("undefinedundefined");
    expect(found.viaTabu).toBe("undefined");
    expect(found.viaError).toBe("undefined");
    expect(found.evalProcess).toBe("undefined");
    // Capability methods are guest functions; the host callback is not reachable from them.
    expect(found.tabuAddSource).toMatch(/capability\("tabu.add"/);
    expect(found.logSource).not.toMatch(/native code/);
  });

  test("the guest's globals hold no isolated-vm object, no host object, no removed built-ins", async () => {
    const id = await loadRaw("globals-search.js");
    const { suspicious, names } = JSON.parse(text(await sandbox.call(hookCall(id, "guide")))) as {
      suspicious: string[];
      names: string[];
    };
    expect(suspicious).toEqual([]);
    for (const absent of [
      "WebAssembly",
      "SharedArrayBuffer",
      "Atomics",
      "Intl",
      "require",
      "process",
      "Buffer",
      "module",
    ]) {
      expect(names).not.toContain(absent);
    }
    expect(names.filter((n) => n.startsWith("__bilevel"))).toEqual([
      "__bilevel_inspect",
      "__bilevel_invoke",
      "__bilevel_factory",
    ]);
    expect(names.filter((n) => /ivm|isolated|host|callback/i.test(n))).toEqual([]);
  });

  test("SharedArrayBuffer, Atomics, WebAssembly and Intl are gone; Atomics.wait cannot block", async () => {
    const id = await loadRaw("shared-array-buffer.js");
    expect(JSON.parse(text(await sandbox.call(hookCall(id, "guide"))))).toEqual({
      sab: "undefined",
      atomics: "undefined",
      wasm: "undefined",
      intl: "undefined",
    });
    const waiter = await loadRaw("atomics-wait.js");
    const error = failure(await sandbox.call(hookCall(waiter, "guide")));
    expect(error.code).toBe("thrown");
    expect(error.message).toMatch(/Atomics is not defined/);
  });

  test("hand-written JS cannot replace the sandbox's entry points", async () => {
    const id = await loadRaw("tamper-entry.js");
    expect(text(await sandbox.call(hookCall(id, "guide")))).toBe("assign threw;define threw;");
  });

  test("hand-written JS that breaks out of the factory wrapper is still inside the isolate (load/timeout)", async () => {
    const loaded = await sandbox.load(nextId("break-out"), rawFixture("break-out-of-wrapper.js"));
    expect(loaded).toMatchObject({ ok: false, error: { stage: "load", code: "timeout" } });
  });

  test("prototype pollution of capability objects is refused (frozen, null prototype)", async () => {
    const id = await loadTs("pollute-capabilities.ts");
    expect(JSON.parse(text(await sandbox.call(hookCall(id, "guide"))))).toEqual({
      assignThrew: true,
      defineThrew: true,
      proto: true,
      frozen: true,
      size: 0,
    });
  });

  test("Object.prototype pollution does not survive the call (fresh context per call)", async () => {
    const id = await loadTs("pollute-object-prototype.ts");
    const observed = await sandbox.call(hookCall(id, "observe"));
    expect(observed.ok).toBe(true);
    expect(JSON.parse(text(await sandbox.call(hookCall(id, "guide"))))).toEqual({
      polluted: null,
      push: "function",
    });
  });

  test("an undeclared capability: capability-denied, even though ctx.tabu exists", async () => {
    const id = await loadTs("undeclared-capability.ts");
    const error = failure(await sandbox.call(hookCall(id, "guide")));
    expect(error).toMatchObject({ stage: "guide", code: "capability-denied" });
    expect(error.message).toMatch(/does not declare/);
  });
});

describe("misbehaving results", () => {
  test("a never-resolving promise: invalid-result (hooks are synchronous)", async () => {
    const id = await loadTs("never-resolving.ts");
    const error = failure(await sandbox.call(hookCall(id, "filter")));
    expect(error).toMatchObject({ stage: "filter", code: "invalid-result" });
    expect(error.message).toMatch(/promise/);
  });

  test("an async hook: a type error at compile, invalid-result at run time", async () => {
    const compiled = await sandbox.compile(fixture("async-hook.ts"));
    expect(compiled.ok ? null : compiled.errors[0]?.code).toBe("type-error");
    const id = await loadRaw("async-hook.js");
    const error = failure(await sandbox.call(hookCall(id, "guide")));
    expect(error.code).toBe("invalid-result");
    expect(error.message).toMatch(/promise/);
  });

  test("an oversized result: invalid-result", async () => {
    const id = await loadTs("oversized-result.ts");
    const error = failure(await sandbox.call(hookCall(id, "guide")));
    expect(error.code).toBe("invalid-result");
    expect(error.message).toMatch(/too large/);
  });

  test("guide text over the schema's length: invalid-result", async () => {
    const id = await loadTs("long-guide.ts");
    expect(failure(await sandbox.call(hookCall(id, "guide"))).code).toBe("invalid-result");
  });

  test("a non-JSON result (BigInt): invalid-result", async () => {
    const id = await loadTs("non-json-result.ts");
    const error = failure(await sandbox.call(hookCall(id, "filter")));
    expect(error.code).toBe("invalid-result");
    expect(error.message).toMatch(/not JSON/);
  });

  test("a cyclic result: invalid-result", async () => {
    const id = await loadTs("cyclic-result.ts");
    const error = failure(await sandbox.call(hookCall(id, "filter")));
    expect(error.code).toBe("invalid-result");
    expect(error.message).toMatch(/not JSON/);
  });

  test("extra properties on a verdict: invalid-result (additionalProperties: false)", async () => {
    const id = await loadTs("wrong-shape.ts");
    const error = failure(await sandbox.call(hookCall(id, "filter")));
    expect(error.code).toBe("invalid-result");
  });

  test("a Proxy thrown with throwing traps: thrown, with a fallback message", async () => {
    const id = await loadTs("proxy-error.ts");
    const error = failure(await sandbox.call(hookCall(id, "guide")));
    expect(error.code).toBe("thrown");
    expect(error.message.length).toBeGreaterThan(0);
  });

  test.each([
    [0, /string a string/],
    [1, /number 42/],
    [2, /undefined/],
    [3, /null/],
    [4, /symbol Symbol\(s\)/],
    [5, /plain object/],
  ])("throwing a non-Error (iteration %i): thrown", async (iteration, pattern) => {
    const compiled = await sandbox.compile(fixture("throw-non-errors.ts"));
    if (!compiled.ok) throw new Error("did not compile");
    const id = nextId("throw-non-errors");
    await sandbox.load(id, compiled.mechanism);
    const error = failure(
      await sandbox.call(hookCall(id, "guide", { context: { ...trace.context, iteration } })),
    );
    expect(error.code).toBe("thrown");
    expect(error.message).toMatch(pattern);
  });
});

describe("capabilities under abuse", () => {
  test("a capability flood hits the budget; catching the error does not help", async () => {
    const id = await loadTs("capability-flood.ts");
    const error = failure(await sandbox.call(hookCall(id, "guide")));
    expect(error).toMatchObject({ stage: "guide", code: "capability-budget" });
  });

  test("re-entrancy: capability calls from inside argument getters and toJSON are ordinary, counted calls", async () => {
    const id = await loadTs("reentrancy.ts");
    const outcome = await sandbox.call(hookCall(id, "filter"));
    expect(outcome.ok).toBe(true);
    if (!outcome.ok) return;
    expect(outcome.result).toEqual({
      hook: "filter",
      value: { verdict: "reject", reason: "hit true size 1" },
    });
    expect(outcome.capabilityCalls).toBe(3);
    expect(outcome.logs).toEqual(["inside toJSON"]);
    expect(outcome.capabilities.tabu.t).toHaveLength(1);
  });

  test("capability data growing past its cap: invalid-state, quarantined (it is host-kept but guest-filled)", async () => {
    const id = await loadTs("capability-bloat.ts");
    const first = await sandbox.call(hookCall(id, "guide"));
    expect(text(first)).toBe("size 6");
    if (!first.ok) return;
    // Within the cap: min(maxCapabilityStateBytes, maxJsonBytes / 2) = 128 KiB here.
    expect(JSON.stringify(first.capabilities).length).toBeGreaterThan(80 * 1024);
    expect(JSON.stringify(first.capabilities).length).toBeLessThan(128 * 1024);
    const second = failure(await sandbox.call(hookCall(id, "guide", { capabilities: first.capabilities })));
    expect(second).toMatchObject({ stage: "guide", code: "invalid-state" });
    expect(second.message).toMatch(/capability data .* is \d+ bytes, over the 131072-byte cap/);
    await expectQuarantined(id, "invalid-state");
  });

  test("bandit rewards that would sum to Infinity: capability-error, not a killed child", async () => {
    const id = await loadTs("reward-overflow.ts");
    const restarts = sandbox.restarts;
    const error = failure(await sandbox.call(hookCall(id, "guide")));
    expect(error).toMatchObject({ stage: "guide", code: "capability-error" });
    expect(error.message).toMatch(/bandit.reward/);
    expect(sandbox.restarts).toBe(restarts);
    await expectQuarantined(id, "capability-error");
  });

  test("a capability the policy does not grant: the load is refused", async () => {
    const narrow = await Sandbox.start({ ...POLICY, grantedCapabilities: ["space"] });
    try {
      const compiled = await narrow.compile(HEALTHY);
      if (!compiled.ok) throw new Error("did not compile");
      const loaded = await narrow.load("h", compiled.mechanism);
      expect(loaded).toMatchObject({ ok: false, error: { stage: "load", code: "capability-denied" } });
      if (!loaded.ok) expect(loaded.error.message).toMatch(/tabu, bandit/);
    } finally {
      await narrow.close();
    }
  });
});

describe("isolation and determinism", () => {
  test("Date and Math.random are frozen and seeded; ctx.random follows seed/mechanism/iteration/hook", async () => {
    const id = await loadTs("determinism.ts");
    const first = JSON.parse(text(await sandbox.call(hookCall(id, "guide")))) as Record<string, unknown>;
    const second = JSON.parse(text(await sandbox.call(hookCall(id, "guide")))) as Record<string, unknown>;
    expect(second).toEqual(first);
    expect(first.now).toBe(FIXED_NOW);
    expect(first.date).toBe(new Date(FIXED_NOW).toISOString());
    expect(first.ctor).toBe("string");
    expect(first.a).not.toBe(first.b);
    const later = JSON.parse(
      text(await sandbox.call(hookCall(id, "guide", { context: { ...trace.context, iteration: 99 } }))),
    ) as Record<string, unknown>;
    expect(later.a).not.toBe(first.a);
    expect(later.now).toBe(FIXED_NOW);
  });

  test("local time in the guest is UTC, whatever the machine's time zone", async () => {
    const id = await loadTs("timezone.ts");
    const found = JSON.parse(text(await sandbox.call(hookCall(id, "guide")))) as Record<string, unknown>;
    expect(found.text).toBe("Thu Jan 01 2026 00:00:00 GMT+0000 (Coordinated Universal Time)");
    expect(found.called).toBe(found.text);
    expect(found.hours).toBe(new Date(FIXED_NOW).getUTCHours());
    expect(found.offset).toBe(0);
    // June: a zone with summer time (or any non-UTC zone) would shift this.
    expect(found.local).toBe(Date.UTC(2026, 5, 1, 12));
  });

  test("no module or global state leaks between calls; only ctx.state is carried", async () => {
    const id = await loadTs("state-leak.ts");
    const one = await sandbox.call(hookCall(id, "guide"));
    expect(text(one)).toBe("1 none");
    const two = await sandbox.call(hookCall(id, "guide"));
    expect(text(two)).toBe("1 none");
    const three = await sandbox.call(hookCall(id, "guide", { state: one.ok ? one.state : {} }));
    expect(text(three)).toBe("1 set");
  });

  test("no host paths in stacks or error messages", async () => {
    const id = await loadTs("host-paths.ts");
    const stack = text(await sandbox.call(hookCall(id, "guide")));
    expect(stack).toMatch(/mechanism\.js/);
    const error = failure(await sandbox.call(hookCall(id, "filter")));
    expect(error.code).toBe("thrown");
    expect(error.line).toBe(9);
    for (const s of [stack, error.message]) {
      expect(s).not.toMatch(/\/work|\/home|\/root|file:\/\/|node:internal|node_modules|sandbox\//);
    }
  });

  test("top-level throw: load/thrown with its position", async () => {
    const compiled = await sandbox.compile(fixture("top-level-throw.ts"));
    if (!compiled.ok) throw new Error("did not compile");
    const loaded = await sandbox.load(nextId("top-level-throw"), compiled.mechanism);
    expect(loaded).toMatchObject({ ok: false, error: { stage: "load", code: "thrown", line: 2 } });
  });

  test("tampered compiled code (hash mismatch) and a manifest that lies are refused at load", async () => {
    const good = rawMechanism(
      "exports.default = { manifest: { name: 'raw', version: 1, hooks: ['guide'], capabilities: [] }, guide() { return 'x'; } };",
      { hooks: ["guide"] },
    );
    expect(await sandbox.load(nextId("tampered"), { ...good, js: `${good.js} ` })).toMatchObject({
      ok: false,
      error: { code: "invalid-manifest" },
    });
    const liar = rawMechanism(good.js, { hooks: ["guide"], capabilities: ["tabu"] });
    expect(await sandbox.load(nextId("liar"), liar)).toMatchObject({
      ok: false,
      error: { code: "invalid-manifest" },
    });
    const missing = rawMechanism(good.js.replace("guide()", "other()").replace("['guide']", "['guide']"), {
      hooks: ["guide"],
    });
    expect(await sandbox.load(nextId("missing"), missing)).toMatchObject({
      ok: false,
      error: { code: "missing-hook" },
    });
  });
});

test("the healthy mechanism answered after every case", () => {
  expect(healthyCalls).toBeGreaterThanOrEqual(42);
});
