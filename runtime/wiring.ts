// Builds a run from its config: store, sandbox, trainer, proposer, Level 1.5 strategist,
// Level 2 researcher, display; runs the loop; stops cleanly on SIGINT/SIGTERM.
import { readFileSync } from "node:fs";
import path from "node:path";
import { loadDefaultParams, Sandbox, syntheticTrace } from "../sandbox/index.ts";
import type { Trainer } from "../trainer/types.ts";
import { ChatJsonAdapter, LibraryResearcher, LlmProposer, LlmStrategist, RuleStrategist } from "./agents.ts";
import type { RunConfig } from "./config.ts";
import { RunDisplay } from "./display.ts";
import { LlmResearcher } from "./level2/researcher.ts";
import { createLlmClient, type LlmClient } from "./llm/client.ts";
import { BilevelLoop, type LoopObserver, type RunSummary } from "./loop.ts";
import { OfflineProposer } from "./offline-proposer.ts";
import { buildReport, type RunReport } from "./report.ts";
import { RunStore } from "./store.ts";
import { createTrainer } from "./trainers.ts";

export interface ExecuteOptions {
  readonly dir: string;
  readonly config: RunConfig;
  /** Ignore any LLM endpoint. */
  readonly offline: boolean;
  readonly observer?: LoopObserver;
  /** For tests and benchmarks: a trainer to use instead of the configured one. */
  readonly trainer?: Trainer;
  readonly env?: Readonly<Record<string, string | undefined>>;
  readonly signal?: AbortSignal;
}

export async function executeRun(options: ExecuteOptions): Promise<RunSummary & { report: RunReport }> {
  const { config, dir } = options;
  const llm: LlmClient | null = options.offline
    ? null
    : createLlmClient(config.llm, options.env ?? process.env);
  const params = loadDefaultParams();
  // Built before anything is written, so a trainer config error leaves no run folder behind.
  const trainer = options.trainer ?? createTrainer(config, params);
  const store = RunStore.open(dir);
  const sandbox = await Sandbox.start({
    grantedCapabilities: config.policy.capabilities,
    hookTimeoutMs: config.policy.hookTimeoutMs,
    isolateMemoryMb: config.policy.isolateMemoryMb,
  });
  const display = options.observer ?? new RunDisplay();
  const controller = new AbortController();
  const stop = () => {
    if (controller.signal.aborted) process.exit(130);
    process.stderr.write(
      "\nstopping: the running trial is killed; resume with --resume (Ctrl-C again to quit now)\n",
    );
    controller.abort();
  };
  options.signal?.addEventListener("abort", () => controller.abort());
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
  try {
    const chat = llm ? new ChatJsonAdapter(llm, store) : null;
    const loop = new BilevelLoop({
      store,
      config,
      params,
      trainer,
      sandbox,
      proposer: chat ? new LlmProposer(chat.chat, config.proposer.maxRepairs) : new OfflineProposer(),
      strategist: chat
        ? new LlmStrategist(chat.chat, config.proposer.maxRepairs)
        : new RuleStrategist(config.level15),
      researcher:
        llm && config.policy.allowCodeGeneration
          ? new LlmResearcher(llm, store, config)
          : new LibraryResearcher(),
      syntheticTrace,
      startMechanisms: config.mechanisms.map((file) => ({
        file,
        source: readFileSync(path.resolve(file), "utf8"),
      })),
      observer: display,
      signal: controller.signal,
    });
    const summary = await loop.run();
    return { ...summary, report: buildReport(store) };
  } finally {
    process.off("SIGINT", stop);
    process.off("SIGTERM", stop);
    if (display instanceof RunDisplay) display.close();
    await sandbox.close();
    store.close();
  }
}
