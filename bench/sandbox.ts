// `npm run bench:sandbox`: compile times (cold and warm), hook-call round trip host → child →
// isolate (median, p99) next to a direct in-process call and a bare isolated-vm call on a
// persistent context, and the child's cold start. A benchmark, not a test: it prints figures.
import { spawnSync } from "node:child_process";
import ivm from "isolated-vm";
import { loadDefaultParams, Sandbox, syntheticTrace } from "../sandbox/index.ts";
import type { HookCall } from "../sandbox/types.ts";

// isolated-vm needs --no-node-snapshot on Node >= 20: re-run this file with it.
if (!process.execArgv.includes("--no-node-snapshot")) {
  const r = spawnSync(process.execPath, ["--no-node-snapshot", ...process.execArgv, import.meta.filename], {
    stdio: "inherit",
  });
  process.exit(r.status ?? 1);
}

const CALLS = Number(process.env.BENCH_CALLS ?? 2000);
const GAP_MS = Number(process.env.BENCH_GAP_MS ?? 1);

const SOURCE = `import type { Mechanism } from "bilevel/mechanism-api";
export default {
  manifest: { name: "bench", version: 1, hooks: ["filter"], capabilities: ["tabu"] },
  filter(proposal, ctx) {
    return ctx.tabu.contains("recent", proposal.config) ? { verdict: "reject", reason: "tabu" } : { verdict: "accept" };
  },
} satisfies Mechanism;
`;

function stats(samples: number[]): { median: number; p99: number; mean: number } {
  const s = [...samples].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
  return { median: at(0.5), p99: at(0.99), mean: s.reduce((a, b) => a + b, 0) / s.length };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const us = (ms: number) => `${(ms * 1000).toFixed(0)} µs`;

async function main(): Promise<void> {
  const trace = syntheticTrace(loadDefaultParams(), 1);
  const call: HookCall = {
    mechanismId: "bench",
    hook: "filter",
    context: trace.context,
    state: {},
    capabilities: { tabu: {}, bandit: {} },
    argument: trace.proposal,
  };

  // Child cold start.
  const starts: number[] = [];
  for (let i = 0; i < 5; i++) {
    const t = performance.now();
    const box = await Sandbox.start();
    starts.push(performance.now() - t);
    await box.close();
  }

  // Compile: cold = the first compile in a fresh child (loads the compiler); warm = later ones.
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
  if (!compiled.ok) throw new Error(JSON.stringify(compiled.errors));
  const loaded = await sandbox.load("bench", compiled.mechanism);
  if (!loaded.ok) throw new Error(JSON.stringify(loaded.error));

  // Round trip host → child → fresh isolate context → host, spaced as a loop spaces its calls.
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
  await sandbox.close();

  // Reference 1: the same hook as a plain in-process function.
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

  // Reference 2: a bare isolated-vm call on one persistent context (no process hop, no fresh context).
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

  const rt = stats(spaced);
  const rb = stats(burst);
  const rows: [string, string][] = [
    ["child cold start (median of 5)", `${stats(starts).median.toFixed(0)} ms`],
    ["compile, cold (first in a fresh child, median of 3)", `${stats(colds).median.toFixed(0)} ms`],
    ["compile, warm (median of 40)", `${stats(warms).median.toFixed(1)} ms (goal ≤ 60 ms)`],
    [`hook round trip, ${GAP_MS} ms apart (n=${CALLS}) median`, `${us(rt.median)} (goal ≤ 500 µs)`],
    ["hook round trip p99", `${us(rt.p99)} (goal ≤ 2000 µs)`],
    [`hook round trip back-to-back (n=${burst.length}) median / p99`, `${us(rb.median)} / ${us(rb.p99)}`],
    [
      "reference: direct in-process call median / p99",
      `${us(stats(directSamples).median)} / ${us(stats(directSamples).p99)}`,
    ],
    [
      "reference: bare isolated-vm call, persistent context, median / p99",
      `${us(stats(bare).median)} / ${us(stats(bare).p99)}`,
    ],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  process.stdout.write(`bilevel sandbox benchmark (Node ${process.version}, ${process.platform})\n`);
  for (const [k, v] of rows) process.stdout.write(`  ${k.padEnd(width)}  ${v}\n`);
}

await main();
