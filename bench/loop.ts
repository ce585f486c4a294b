// npm run bench:loop — the loop's own overhead per iteration: everything but training and LLM
// latency. A trainer stub that returns at once, the mock LLM server for proposals, two active
// mechanisms (tabu filter + UCB bandit suggest), ≥ 200 iterations. Prints median and p99.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { preflightReply, startMockLlm } from "../__tests__/support/mock-llm-server.ts";
import { testConfig } from "../__tests__/support/run-config.ts";
import { RunStore } from "../runtime/store.ts";
import { executeRun } from "../runtime/wiring.ts";
import type { Trainer, TrialOutcome } from "../trainer/types.ts";

const ITERATIONS = Number(process.env.BENCH_ITERATIONS ?? 240);
const root = path.resolve(import.meta.dirname, "..");

/** Returns at once: the bench measures the loop, not training. */
const stubTrainer: Trainer = {
  async run(request): Promise<TrialOutcome> {
    const lr = Number(request.config.MATRIX_LR ?? 0.04);
    return {
      status: "ok",
      valBpb: 2 + Math.abs(Math.log(lr / 0.06)) * 0.1 + (request.seed % 7) * 1e-4,
      result: null,
      message: "stub",
      exitCode: 0,
      durationMs: 0,
      logPath: "",
    };
  },
};

// Proposals from the mock LLM: a deterministic walk over MATRIX_LR and WARMDOWN_RATIO.
const llm = await startMockLlm((request) => {
  const preflight = preflightReply(request);
  if (preflight) return preflight;
  const user = request.body?.messages?.find((m) => m.role === "user")?.content ?? "";
  const iteration = Number(/Iteration (\d+)/.exec(user)?.[1] ?? 1);
  const name = request.body?.response_format?.json_schema?.name;
  if (name === "strategy") {
    return {
      content: JSON.stringify({
        strategy: "balanced",
        freeze: [],
        unfreeze: [],
        guidance: "",
        rationale: "bench",
      }),
    };
  }
  const lr = 0.01 + ((iteration * 37) % 100) / 1000;
  const warmdown = ((iteration * 13) % 90) / 100 + 0.05;
  return {
    content: JSON.stringify({
      changes: [
        { param: "MATRIX_LR", value: Number(lr.toFixed(4)) },
        { param: "WARMDOWN_RATIO", value: Number(warmdown.toFixed(2)) },
      ],
      rationale: "bench walk",
    }),
    usage: { prompt_tokens: 500, completion_tokens: 40 },
  };
});

const dir = mkdtempSync(path.join(tmpdir(), "bilevel-bench-loop-"));
const marks: { start: number; end: number }[] = [];
let current = 0;
try {
  const config = testConfig({
    name: "bench-loop",
    iterations: ITERATIONS,
    budgetSeconds: 1,
    trainer: { kind: "synthetic", delayMs: 0, noise: 0 },
    llm: { baseURL: llm.baseURL, model: "bench", maxRetries: 0, timeoutMs: 5000 },
    acceptance: { baselineRepeats: 2 },
    level15: { every: 1_000_000 },
    level2: { everyCycles: 0 },
    mechanisms: [
      path.join(root, "examples/mechanisms/tabu-search.ts"),
      path.join(root, "examples/mechanisms/stagnation-restart.ts"),
    ],
  });
  const t0 = performance.now();
  await executeRun({
    dir,
    config,
    offline: false,
    trainer: stubTrainer,
    env: { OPENAI_API_KEY: "bench-key" },
    observer: {
      iterationStart: () => {
        current = performance.now();
      },
      trialEnd: (trial) => {
        if (trial.kind === "search") marks.push({ start: current, end: performance.now() });
      },
    },
  });
  const total = performance.now() - t0;
  const store = RunStore.open(dir, { readOnly: true });
  const exchanges = store.exchanges();
  const ledger = store.ledger();
  store.close();
  // LLM latency per iteration, subtracted: it is the mock server's, not the loop's.
  const llmByIteration = new Map<number, number>();
  for (const e of exchanges)
    llmByIteration.set(e.iteration, (llmByIteration.get(e.iteration) ?? 0) + e.latencyMs);
  const overhead = marks
    .map((m, i) => m.end - m.start - (llmByIteration.get(i + 1) ?? 0))
    .sort((a, b) => a - b);
  const q = (p: number) =>
    overhead[Math.min(overhead.length - 1, Math.floor(p * overhead.length))] ?? Number.NaN;
  const llmTimes = [...llmByIteration.values()].sort((a, b) => a - b);
  console.log(`bench:loop — ${overhead.length} iterations, 2 active mechanisms, stub trainer, mock LLM`);
  console.log(
    `  loop overhead per iteration: median ${q(0.5).toFixed(2)} ms, p99 ${q(0.99).toFixed(2)} ms (goal: median ≤ 20 ms)`,
  );
  console.log(
    `  mock LLM latency per iteration (excluded): median ${(llmTimes[Math.floor(llmTimes.length / 2)] ?? 0).toFixed(2)} ms`,
  );
  console.log(
    `  hook calls recorded: ${ledger.length}; LLM exchanges: ${exchanges.length}; whole run ${total.toFixed(0)} ms`,
  );
} finally {
  await llm.close();
  if (!process.env.BENCH_KEEP) rmSync(dir, { recursive: true, force: true });
  else console.log(`  kept ${dir}`);
}
