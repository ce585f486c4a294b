// `npm run bench:sandbox`: compile times (cold and warm), hook-call round trip host → child →
// isolate (median, p99; also with the largest history a run sends) next to a direct in-process
// call and a bare isolated-vm call on a persistent context, the child's cold start, and the latency per hook at 1, 3 and 8 active
// mechanisms, batched (one round trip per phase) and one round trip per call, and where one call's
// time goes (each stage timed on its own, in this process). A benchmark, not a test: it prints
// figures, with the CPU and the load average (the machine may be shared).
import { spawnSync } from "node:child_process";
import { cpus, loadavg } from "node:os";
import { Worker } from "node:worker_threads";
import ivm from "isolated-vm";
import type { Trial } from "../mechanism-api/index.d.ts";
import { FILTER_CHAIN_RULE } from "../runtime/level1/filter-chain.ts";
import { frozenCopy } from "../sandbox/frozen-json.ts";
import { BOOTSTRAP_FILE, FIXED_NOW, GUEST_BOOTSTRAP, wrapMechanismJs } from "../sandbox/guest.ts";
import { DEFAULT_POLICY, loadDefaultParams, Sandbox, syntheticTrace } from "../sandbox/index.ts";
import { MemoryWatchdog } from "../sandbox/memory-watchdog.ts";
import {
  callRequest,
  callTexts,
  HeldTexts,
  isRequest,
  isResponse,
  toWireCall,
  type WireCall,
  withTexts,
} from "../sandbox/protocol.ts";
import { guestArgs, Runner, warmInput } from "../sandbox/runner.ts";
import type { CompiledMechanism, DryRunTrace, HookBatch, HookCall } from "../sandbox/types.ts";

// isolated-vm needs --no-node-snapshot on Node >= 20: re-run this file with it.
if (!process.execArgv.includes("--no-node-snapshot")) {
  const r = spawnSync(process.execPath, ["--no-node-snapshot", ...process.execArgv, import.meta.filename], {
    stdio: "inherit",
  });
  process.exit(r.status ?? 1);
}

const CALLS = Number(process.env.BENCH_CALLS ?? 2000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 400);
const GAP_MS = Number(process.env.BENCH_GAP_MS ?? 1);
const MECHANISM_COUNTS = [1, 3, 8] as const;
/** Rounds of the per-hook measurement, interleaved (1, 3, 8, 1, 3, 8, …): the spread of the medians. */
const SPREAD = Number(process.env.BENCH_SPREAD ?? 3);

const SOURCE = `import type { Mechanism } from "bilevel/mechanism-api";
export default {
  manifest: { name: "bench", version: 1, hooks: ["filter"], capabilities: ["tabu"] },
  filter(proposal, ctx) {
    return ctx.tabu.contains("recent", proposal.config) ? { verdict: "reject", reason: "tabu" } : { verdict: "accept" };
  },
} satisfies Mechanism;
`;

type Row = [string, string];

function stats(samples: number[]): { median: number; p90: number; p99: number; mean: number } {
  const s = [...samples].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
  return { median: at(0.5), p90: at(0.9), p99: at(0.99), mean: s.reduce((a, b) => a + b, 0) / s.length };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const us = (ms: number) => `${(ms * 1000).toFixed(0)} µs`;
const load = () => loadavg()[0]!.toFixed(2);

/** Child cold start, and compile cold (first in a fresh sandbox: it starts the compiler process) and warm. */
async function startAndCompile(): Promise<{ rows: Row[]; compiled: CompiledMechanism }> {
  const starts: number[] = [];
  for (let i = 0; i < 5; i++) {
    const t = performance.now();
    const box = await Sandbox.start();
    starts.push(performance.now() - t);
    await box.close();
  }
  const colds: number[] = [];
  for (let i = 0; i < 3; i++) {
    const box = await Sandbox.start();
    const t = performance.now();
    const outcome = await box.compile(SOURCE);
    colds.push(performance.now() - t);
    if (!outcome.ok) throw new Error(JSON.stringify(outcome.errors));
    await box.close();
  }
  const sandbox = await Sandbox.start();
  const warms: number[] = [];
  let compiled = await sandbox.compile(SOURCE);
  for (let i = 0; i < 40; i++) {
    // A different source each time, as in a repair loop (no caching by content).
    const t = performance.now();
    compiled = await sandbox.compile(`${SOURCE}// revision ${i}\n`);
    warms.push(performance.now() - t);
  }
  await sandbox.close();
  if (!compiled.ok) throw new Error(JSON.stringify(compiled.errors));
  return {
    compiled: compiled.mechanism,
    rows: [
      ["child cold start (median of 5)", `${stats(starts).median.toFixed(0)} ms`],
      ["compile, cold (first in a fresh sandbox, median of 3)", `${stats(colds).median.toFixed(0)} ms`],
      ["compile, warm (median of 40)", `${stats(warms).median.toFixed(1)} ms (goal ≤ 60 ms)`],
    ],
  };
}

/** One hook call per round trip, spaced as a loop spaces its calls, and back to back. */
async function roundTrip(sandbox: Sandbox, call: HookCall): Promise<{ rows: Row[]; medianUs: number }> {
  for (let i = 0; i < 50; i++) await sandbox.call(call);
  const spaced: number[] = [];
  for (let i = 0; i < CALLS; i++) {
    await sleep(GAP_MS);
    const t = performance.now();
    const outcome = await sandbox.call(call);
    spaced.push(performance.now() - t);
    if (!outcome.ok) throw new Error(JSON.stringify(outcome.error));
  }
  const burst: number[] = [];
  for (let i = 0; i < CALLS / 4; i++) {
    const t = performance.now();
    await sandbox.call(call);
    burst.push(performance.now() - t);
  }
  // The largest history a run sends (proposer.historyWindow is at most 200 trials).
  const long = {
    ...call,
    context: { ...call.context, history: frozenCopy(longHistory(call.context.history, 200)) },
  };
  const spacedLong: number[] = [];
  for (let i = -20; i < CALLS / 4; i++) {
    await sleep(GAP_MS);
    const t = performance.now();
    await sandbox.call(long);
    if (i >= 0) spacedLong.push(performance.now() - t);
  }
  const rt = stats(spaced);
  const rb = stats(burst);
  const rl = stats(spacedLong);
  const rows: Row[] = [
    [`hook round trip, ${GAP_MS} ms apart (n=${CALLS}) median`, `${us(rt.median)} (goal ≤ 500 µs)`],
    ["hook round trip p99", `${us(rt.p99)} (goal ≤ 2000 µs)`],
    [`hook round trip back-to-back (n=${burst.length}) median / p99`, `${us(rb.median)} / ${us(rb.p99)}`],
    [
      `hook round trip, ${GAP_MS} ms apart, a 200-trial history (n=${spacedLong.length}) median / p99`,
      `${us(rl.median)} / ${us(rl.p99)}`,
    ],
  ];
  return { rows, medianUs: rt.median * 1000 };
}

/** `n` trials made of `trials` repeated, numbered 1..n. */
function longHistory(trials: readonly Trial[], n: number): Trial[] {
  return Array.from({ length: n }, (_, i) => ({ ...trials[i % trials.length]!, id: i + 1, iteration: i }));
}

/**
 * Latency per hook with n active filters, a proposal's filter chain every GAP_MS: batched (the whole
 * chain in one round trip; per hook = the round trip / n) and one round trip per filter.
 */
async function perHookOnce(
  sandbox: Sandbox,
  trace: DryRunTrace,
  compiled: CompiledMechanism,
  n: number,
): Promise<{ batched: number[]; single: number[] }> {
  const ids = Array.from({ length: n }, (_, i) => `m${n}-${i}`);
  for (const id of ids) await sandbox.load(id, compiled);
  const batch: HookBatch = {
    hook: "filter",
    context: trace.context,
    argument: trace.proposal,
    calls: ids.map((mechanismId) => ({ mechanismId, state: {}, capabilities: { tabu: {}, bandit: {} } })),
    chain: { base: trace.context.incumbent.config, active: trace.context.params.map((p) => p.name) },
  };
  const single1 = { hook: "filter", context: trace.context, argument: trace.proposal } as const;
  const batched: number[] = [];
  const single: number[] = [];
  for (let round = -20; round < ROUNDS; round++) {
    await sleep(GAP_MS);
    let t = performance.now();
    // As the loop does it: one batch for the phase; a single call goes on its own.
    const outcomes =
      n === 1 ? [await sandbox.call({ ...batch.calls[0]!, ...single1 })] : await sandbox.callBatch(batch);
    if (outcomes?.length !== n || outcomes.some((o) => !o.ok)) throw new Error("batch failed");
    if (round >= 0) batched.push((performance.now() - t) / n);
    await sleep(GAP_MS);
    for (const c of batch.calls) {
      t = performance.now();
      const outcome = await sandbox.call({ ...c, ...single1 });
      if (!outcome.ok) throw new Error(JSON.stringify(outcome.error));
      if (round >= 0) single.push(performance.now() - t);
    }
  }
  for (const id of ids) await sandbox.unload(id);
  return { batched, single };
}

/** perHookOnce at 1, 3 and 8 mechanisms, SPREAD rounds interleaved: pooled figures and the medians' spread. */
async function perHook(sandbox: Sandbox, trace: DryRunTrace, compiled: CompiledMechanism): Promise<Row[]> {
  const runs = new Map<number, { batched: number[]; single: number[]; medians: number[] }>();
  const loads = [load()];
  for (let r = 0; r < SPREAD; r++) {
    for (const n of MECHANISM_COUNTS) {
      const { batched, single } = await perHookOnce(sandbox, trace, compiled, n);
      const run = runs.get(n) ?? { batched: [], single: [], medians: [] };
      run.batched.push(...batched);
      run.single.push(...single);
      run.medians.push(stats(batched).median);
      runs.set(n, run);
    }
    loads.push(load());
  }
  const rows: Row[] = [];
  for (const [n, run] of runs) {
    const b = stats(run.batched);
    const s = stats(run.single);
    const m = [...run.medians].sort((x, y) => x - y);
    rows.push([
      `per hook, ${n} active filter${n === 1 ? "" : "s"}, batched: median / p99 (${SPREAD} rounds pooled)`,
      `${us(b.median)} / ${us(b.p99)} (goal ≤ 500 µs / ≤ 2000 µs)`,
    ]);
    rows.push([
      "  the rounds' medians: median, range",
      `${us(stats(m).median)}, ${us(m[0]!)}–${us(m[m.length - 1]!)} (${m.map((x) => (x * 1000).toFixed(0)).join(", ")})`,
    ]);
    rows.push([
      `per hook, ${n} active, one round trip per call: median / p99`,
      `${us(s.median)} / ${us(s.p99)}`,
    ]);
  }
  rows.push(["  load average over the rounds", loads.join(" → ")]);
  return rows;
}

/** Median µs of `fn` over `n` runs, each `gapMs` after the last (0: back to back). */
async function timedStage(n: number, gapMs: number, fn: () => unknown): Promise<number> {
  const samples: number[] = [];
  for (let i = -20; i < n; i++) {
    if (gapMs > 0) await sleep(gapMs);
    const t = performance.now();
    await fn();
    if (i >= 0) samples.push(performance.now() - t);
  }
  return stats(samples).median * 1000;
}

/**
 * One call's stages (1 mechanism), each timed alone in this process with the child's own code: the
 * host's and the child's JSON and ajv, the call in a fresh context (a reserve context being built
 * in the background, as in the child), the context built ahead (off the path), and what is left
 * of the measured round trip (pipes, the two processes' wake-ups and scheduling).
 */
async function breakdown(call: HookCall, compiled: CompiledMechanism, roundTripUs: number): Promise<Row[]> {
  const runner = new Runner(DEFAULT_POLICY);
  const keepAlive = setInterval(() => {}, 1000);
  await runner.ready;
  clearInterval(keepAlive);
  const error = await runner.load("stages", compiled);
  if (error) throw new Error(JSON.stringify(error));
  // As the round trip's calls go: the child holds the texts (the same search space and history).
  const own = { ...call, mechanismId: "stages" };
  const first = await runner.call(toWireCall(own));
  if (!first.ok) throw new Error(JSON.stringify(first.error));
  const held = new HeldTexts();
  held.settle(callTexts(call.context), true);
  const toLine = () => {
    const { head, texts } = callRequest(own);
    return withTexts(`{"id":1,${head.slice(1)}`, held.leaveOut(texts));
  };
  const line = toLine();
  const request = JSON.parse(line) as WireCall;
  const outcome = await runner.call(request);
  if (!outcome.ok) throw new Error(JSON.stringify(outcome.error));
  const answer = { id: 1, op: "call", outcome };
  const response = JSON.stringify(answer);
  const [n, gap] = [400, GAP_MS];
  // Each stage as often as the round trip's calls come (caches and JIT as cold as there).
  const stage = (fn: () => unknown) => timedStage(n, gap, fn);
  const stages: [string, number][] = [
    ["host: the call to JSON (texts the child holds left out)", await stage(toLine)],
    ["child: parse the line, validate it (ajv)", await stage(() => isRequest(JSON.parse(line)))],
    ["child: check the call's data", await stage(() => runner.checkCall(request))],
    [
      "child: the hook in a fresh context (built ahead, warmed), result checks",
      await stage(() => runner.call(request)),
    ],
    ["child: the answer to JSON", await stage(() => JSON.stringify(answer))],
    ["host: parse the answer, validate it (ajv)", await stage(() => isResponse(JSON.parse(response)))],
  ];
  const waits = await buildWait(() => runner.call(request));
  runner.disposeAll();
  const onPath = stages.reduce((sum, [, v]) => sum + v, 0);
  const rows: Row[] = stages.map(([k, v]) => [`  ${k}`, `${v.toFixed(0)} µs`]);
  rows.push(waits);
  rows.push([
    "  the rest: pipes, wake-ups and scheduling of both processes",
    `${Math.max(0, roundTripUs - onPath).toFixed(0)} µs of the ${roundTripUs.toFixed(0)} µs round trip`,
  ]);
  rows.push(...(await offPath(compiled, call)));
  return [["where one round trip's time goes (1 mechanism, medians)", ""], ...rows];
}

/**
 * How long a request 1 ms after the last call waits because the main thread is still on the next
 * context's build (its boot and warm-up; a wait for the isolate, held while a context is created
 * off the thread, is inside the hook's time). A worker thread sends each request GAP_MS after the
 * last answer, as the host does over the pipe; the wait is its message's delivery time after a
 * call against the same with no call (and so no build) before it.
 */
async function buildWait(call: () => Promise<unknown>): Promise<Row> {
  const sender = new Worker(
    `const { parentPort } = require("node:worker_threads");
parentPort.on("message", (gap) => setTimeout(() => parentPort.postMessage(performance.timeOrigin + performance.now()), gap));`,
    { eval: true },
  );
  const delivery = async (fn: () => unknown) => {
    const samples: number[] = [];
    for (let i = -20; i < 400; i++) {
      sender.postMessage(GAP_MS);
      const sent = await new Promise<number>((r) => sender.once("message", r));
      if (i >= 0) samples.push(performance.timeOrigin + performance.now() - sent);
      await fn();
    }
    return stats(samples);
  };
  const withBuild = await delivery(call);
  const alone = await delivery(() => undefined);
  await sender.terminate();
  return [
    "  a request's wait for the next context's build (delivery after a call / with none), median, p90",
    `${us(withBuild.median)} / ${us(alone.median)}, ${us(withBuild.p90)} / ${us(alone.p90)}`,
  ];
}

/** Boot a context as the child does (bootstrap, mechanism script): its entry point. */
function bootContext(context: ivm.Context, bootstrap: ivm.Script, script: ivm.Script, args: unknown[]) {
  const boot = bootstrap.runSync(context, { reference: true });
  const invoke = boot.applySync(undefined, args, { result: { reference: true } }) as ivm.Reference<
    (...a: unknown[]) => string
  >;
  boot.release();
  script.runSync(context);
  return { context, invoke };
}

/**
 * What is done off the critical path, timed alone (a context built ahead, its warm-up), and the
 * guest's entry point on the path split by how warm its context is; the memory watchdog's arming.
 */
async function offPath(compiled: CompiledMechanism, call: HookCall): Promise<Row[]> {
  const isolate = new ivm.Isolate({ memoryLimit: DEFAULT_POLICY.isolateMemoryMb });
  const bootstrap = isolate.compileScriptSync(GUEST_BOOTSTRAP, { filename: BOOTSTRAP_FILE });
  const script = isolate.compileScriptSync(wrapMechanismJs(compiled.js), { filename: "mechanism.js" });
  const host = new ivm.Callback(() => '{"ok":true,"value":null}');
  const bootArgs = [host, FIXED_NOW, DEFAULT_POLICY.maxJsonBytes, 64];
  const wire = toWireCall(call);
  const args = guestArgs(wire, wire);
  const keys = ["create", "boot", "warm", "cold call", "warmed call", "second call"] as const;
  const t = Object.fromEntries(keys.map((k) => [k, [] as number[]])) as Record<
    (typeof keys)[number],
    number[]
  >;
  const time = (key: (typeof keys)[number], i: number, fn: () => unknown) => {
    const t0 = performance.now();
    fn();
    if (i >= 0) t[key].push(performance.now() - t0);
  };
  const created = () => isolate.createContextSync();
  for (let i = -20; i < 200; i++) {
    await sleep(GAP_MS);
    let context: ivm.Context | null = null;
    time("create", i, () => {
      context = created();
    });
    time("boot", i, () => bootContext(context!, bootstrap, script, bootArgs).invoke.release());
    context!.release();
    const cold = bootContext(created(), bootstrap, script, bootArgs);
    const warmed = bootContext(created(), bootstrap, script, bootArgs);
    time("warm", i, () => warmed.invoke.applySync(undefined, [...warmInput(args), true]));
    await sleep(GAP_MS);
    time("cold call", i, () => cold.invoke.applySync(undefined, args));
    time("second call", i, () => cold.invoke.applySync(undefined, args));
    await sleep(GAP_MS);
    time("warmed call", i, () => warmed.invoke.applySync(undefined, args));
    for (const c of [cold, warmed]) {
      c.invoke.release();
      c.context.release();
    }
  }
  isolate.dispose();
  const watchdog = new MemoryWatchdog();
  const keepAlive = setInterval(() => {}, 1000);
  await watchdog.ready;
  clearInterval(keepAlive);
  const guard = await timedStage(400, GAP_MS, () => watchdog.guard(64, () => 0));
  const m = (key: (typeof keys)[number]) => us(stats(t[key]).median);
  return [
    ["  (within the hook's time) arming and disarming the memory watchdog", `${guard.toFixed(0)} µs`],
    ["  (within the hook's time) the guest's entry point in a fresh, warmed context", m("warmed call")],
    [
      "    the same in a fresh context not warmed / its second run there",
      `${m("cold call")} / ${m("second call")}`,
    ],
    ["  (built ahead, off the path) a context: createContext", m("create")],
    ["  (built ahead, off the path) a context: bootstrap + mechanism script", m("boot")],
    ["  (built ahead, off the path) a context: the warm-up", m("warm")],
  ];
}

/** The same hook as a plain in-process function, and as a bare isolated-vm call on one persistent context. */
async function references(trace: DryRunTrace): Promise<Row[]> {
  const direct = {
    filter(proposal: { config: object }, ctx: { tabu: { contains(l: string, c: object): boolean } }) {
      return ctx.tabu.contains("recent", proposal.config) ? { verdict: "reject" } : { verdict: "accept" };
    },
  };
  const ctx = { tabu: { contains: (_l: string, _c: object) => false } };
  const directSamples: number[] = [];
  for (let i = 0; i < CALLS; i++) {
    const t = performance.now();
    direct.filter(trace.proposal, ctx);
    directSamples.push(performance.now() - t);
  }
  const isolate = new ivm.Isolate({ memoryLimit: 64 });
  const context = isolate.createContextSync();
  const contains = new ivm.Callback(() => false);
  context.evalClosureSync(
    "globalThis.filter = (json) => { const p = JSON.parse(json); return JSON.stringify($0('recent', JSON.stringify(p.config)) ? { verdict: 'reject' } : { verdict: 'accept' }); }",
    [contains],
  );
  const proposalJson = JSON.stringify(trace.proposal);
  const bare: number[] = [];
  for (let i = 0; i < CALLS; i++) {
    await sleep(0);
    const t = performance.now();
    context.evalClosureSync("return filter($0)", [proposalJson], { timeout: 1000 });
    bare.push(performance.now() - t);
  }
  isolate.dispose();
  const d = stats(directSamples);
  const b = stats(bare);
  return [
    ["reference: direct in-process call median / p99", `${us(d.median)} / ${us(d.p99)}`],
    ["reference: bare isolated-vm call, persistent context, median / p99", `${us(b.median)} / ${us(b.p99)}`],
  ];
}

async function main(): Promise<void> {
  // As the loop hands them (runtime/level1/context-parts.ts): the search space and history are the
  // same deeply frozen arrays from call to call while no trial finishes.
  const synthetic = syntheticTrace(loadDefaultParams(), 1);
  const trace: DryRunTrace = {
    ...synthetic,
    context: {
      ...synthetic.context,
      params: frozenCopy(synthetic.context.params),
      history: frozenCopy(synthetic.context.history),
    },
  };
  const loadBefore = load();
  const { rows: startRows, compiled } = await startAndCompile();
  const sandbox = await Sandbox.start({}, { chainRule: FILTER_CHAIN_RULE });
  const loaded = await sandbox.load("bench", compiled);
  if (!loaded.ok) throw new Error(JSON.stringify(loaded.error));
  const call: HookCall = {
    mechanismId: "bench",
    hook: "filter",
    context: trace.context,
    state: {},
    capabilities: { tabu: {}, bandit: {} },
    argument: trace.proposal,
  };
  const trip = await roundTrip(sandbox, call);
  const rows = [
    ...startRows,
    ...trip.rows,
    ...(await perHook(sandbox, trace, compiled)),
    ...(await references(trace)),
  ];
  await sandbox.close();
  rows.push(...(await breakdown(call, compiled, trip.medianUs)));
  const width = Math.max(...rows.map(([k]) => k.length));
  process.stdout.write(
    `bilevel sandbox benchmark (Node ${process.version}, ${process.platform}, ${cpus()[0]?.model ?? "unknown CPU"} × ${cpus().length}; load average ${loadBefore} at the start, ${load()} at the end)\n`,
  );
  for (const [k, v] of rows) process.stdout.write(`  ${k.padEnd(width)}  ${v}\n`);
}

await main();
