// Builds a run from its config: store, sandbox, trainer, proposer, Level 1.5 strategist,
// Level 2 researcher, display; runs the loop; stops cleanly on SIGINT/SIGTERM.
import { readFileSync } from "node:fs";
import { Sandbox, syntheticTrace } from "../sandbox/index.ts";
import type { Trainer } from "../trainer/types.ts";
import { ConfigError, type ResolvedRunConfig, sandboxPolicy } from "./config.ts";
import { RunDisplay } from "./display.ts";
import { createLlmClient } from "./llm/client.ts";
import { type LlmObserver, type LlmStop, recordStop } from "./llm/run-llm.ts";
import { checkEndpoint, deciders, startRunLlm } from "./llm/run-setup.ts";
import { BilevelLoop, type LoopObserver, type RunSummary } from "./loop.ts";
import { buildReport, type RunReport } from "./report.ts";
import { RunStore } from "./store.ts";
import { createTrainer } from "./trainers.ts";

export interface ExecuteOptions {
  readonly dir: string;
  readonly config: ResolvedRunConfig;
  /** Continue the run stored in `dir` (its config was checked by the caller). */
  readonly resume?: boolean;
  /** Ignore any LLM endpoint. */
  readonly offline: boolean;
  readonly observer?: LoopObserver & LlmObserver;
  /** For tests and benchmarks: a trainer to use instead of the configured one. */
  readonly trainer?: Trainer;
  readonly env?: Readonly<Record<string, string | undefined>>;
  readonly signal?: AbortSignal;
}

export async function executeRun(
  options: ExecuteOptions,
): Promise<RunSummary & { report: RunReport; llmStop: LlmStop | null }> {
  const { config, dir } = options;
  const env = options.env ?? process.env;
  const client = options.offline ? null : createLlmClient(config.llm, env);
  const params = config.searchSpace;
  // Everything that can be refused is read and checked before the run folder exists.
  const trainer = options.trainer ?? createTrainer(config, params);
  const startMechanisms = config.mechanisms.map((file) => ({ file, source: readMechanismFile(file) }));
  const display: LoopObserver & LlmObserver = options.observer ?? new RunDisplay();
  // The LLM endpoint too: a closed port, a refused key or an unknown model stop here, at once.
  const checked = client
    ? await checkEndpoint(client, { dir, config, env, observer: display, ...signalOf(options) }).catch(
        (error: unknown) => {
          if (display instanceof RunDisplay) display.close();
          throw error;
        },
      )
    : null;
  const store = RunStore.open(dir);
  const sandbox = await Sandbox.start(sandboxPolicy(config.policy));
  // The run's LLM ends the run (after the current phase) on a persistent fault or a spent budget.
  const llmStopper = new AbortController();
  const signal = options.signal ? AbortSignal.any([options.signal, llmStopper.signal]) : llmStopper.signal;
  try {
    store.setMeta("stop_reason", "");
    const llm =
      client && checked
        ? startRunLlm(client, checked, {
            store,
            config,
            observer: display,
            emit: (message) => display.event?.("run", message),
            stop: () => llmStopper.abort(),
            ...signalOf(options),
          })
        : null;
    const loop = new BilevelLoop({
      store,
      config,
      trainer,
      sandbox,
      ...deciders(llm, store, config),
      syntheticTrace,
      startMechanisms,
      observer: display,
      signal,
    });
    const summary = await loop.run();
    const llmStop = llm?.finalStop(options.signal?.aborted ?? false) ?? null;
    if (llmStop) recordStop(store, llmStop);
    return { ...summary, llmStop, report: buildReport(store) };
  } finally {
    if (display instanceof RunDisplay) display.close();
    await sandbox.close();
    store.close();
  }
}

function signalOf(options: ExecuteOptions): { signal?: AbortSignal } {
  return options.signal ? { signal: options.signal } : {};
}

/** A mechanism file's text; refused (nothing created yet) when it is not UTF-8 text. */
function readMechanismFile(file: string): string {
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch (error) {
    throw new ConfigError(
      `mechanisms: cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? error}`,
    );
  }
  try {
    const text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    if (text.includes("\0")) throw new Error("NUL byte");
    return text;
  } catch {
    throw new ConfigError(`mechanisms: ${file} is not UTF-8 text (is it a TypeScript file?)`);
  }
}
