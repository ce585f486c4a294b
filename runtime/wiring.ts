// Builds a run from its config: store, sandbox, trainer, proposer, Level 1.5 strategist,
// Level 2 researcher, display; runs the loop under the run folder's lock (the CLI handles signals).
import { Sandbox, syntheticTrace } from "../sandbox/index.ts";
import type { Trainer } from "../trainer/types.ts";
import { ConfigError, type ResolvedRunConfig, sandboxPolicy } from "./config.ts";
import { RunDisplay } from "./display.ts";
import { createExecutor } from "./executors/create.ts";
import { FILTER_CHAIN_RULE } from "./level1/filter-chain.ts";
import { createLlmClient } from "./llm/client.ts";
import { type LlmObserver, type LlmStop, recordStop } from "./llm/run-llm.ts";
import { checkEndpoint, deciders, startRunLlm } from "./llm/run-setup.ts";
import { BilevelLoop, type LoopObserver, type RunSummary } from "./loop.ts";
import { readMechanismFile } from "./mechanism-file.ts";
import { unbatched } from "./mechanisms.ts";
import { buildReport, type RunReport } from "./report.ts";
import { acquireRunLock } from "./run-lock.ts";
import { RunStore, StoreError } from "./store.ts";
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
  /** false: one round trip per hook call (the reference the batched path is tested against). */
  readonly hookBatching?: boolean;
}

type RunResult = RunSummary & { report: RunReport; llmStop: LlmStop | null };

export async function executeRun(options: ExecuteOptions): Promise<RunResult> {
  // A resume takes the folder's lock before anything costly (the LLM check is a paid request), so
  // a live run or a concurrent resume is refused first; a new run's folder does not exist yet.
  const held = options.resume === true ? acquireRunLock(options.dir) : null;
  try {
    return await executeLocked(options, held);
  } finally {
    held?.();
  }
}

async function executeLocked(options: ExecuteOptions, held: (() => void) | null): Promise<RunResult> {
  const { config, dir } = options;
  const env = options.env ?? process.env;
  const client = options.offline ? null : createLlmClient(config.llm, env);
  const params = config.searchSpace;
  // Everything that can be refused is read and checked before the run folder exists.
  const trainer =
    options.trainer ?? createTrainer(config, params, { runDir: dir, resume: options.resume ?? false });
  // Where trials run; a resource request Slurm refuses stops here, before the run folder exists.
  const executor = createExecutor(config, trainer);
  await executor.check?.();
  // A resume whose start mechanisms are in the store already needs no files (they may be gone).
  const startedAlready = options.resume === true && startMechanismsDone(dir);
  const startMechanisms = startedAlready
    ? []
    : config.mechanisms.map((file) => ({ file, source: readStartMechanism(file) }));
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
  // The child runs a proposal's filter chain with the loop's own rule (runtime/level1/filter-chain.ts).
  const sandbox = await Sandbox.start(sandboxPolicy(config.policy), { chainRule: FILTER_CHAIN_RULE });
  const { store, unlock } = await openLocked(dir, sandbox, held);
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
      sandbox: options.hookBatching === false ? unbatched(sandbox) : sandbox,
      ...deciders(llm, store, config),
      syntheticTrace,
      startMechanisms,
      observer: display,
      signal,
      executor,
    });
    try {
      const summary = await loop.run();
      const llmStop = llm?.finalStop(options.signal?.aborted ?? false) ?? null;
      if (llmStop) recordStop(store, llmStop);
      return { ...summary, llmStop, report: buildReport(store) };
    } catch (error) {
      // A raw SQLite error from a write outside a transaction (a full disk) becomes the typed one.
      throw StoreError.from(error, dir) ?? error;
    }
  } finally {
    if (display instanceof RunDisplay) display.close();
    await sandbox.close();
    store.close();
    unlock();
  }
}

/** The run folder's store, under its lock (`held`: taken already); on failure nothing stays open (the sandbox is closed too). */
async function openLocked(
  dir: string,
  sandbox: Sandbox,
  held: (() => void) | null,
): Promise<{ store: RunStore; unlock: () => void }> {
  let store: RunStore | null = null;
  try {
    store = RunStore.open(dir);
    return { store, unlock: held ?? acquireRunLock(dir) };
  } catch (error) {
    store?.close();
    await sandbox.close();
    throw error;
  }
}

function signalOf(options: ExecuteOptions): { signal?: AbortSignal } {
  return options.signal ? { signal: options.signal } : {};
}

function startMechanismsDone(dir: string): boolean {
  const store = RunStore.open(dir, { readOnly: true });
  try {
    return store.hasCheckpoint("start-mechanisms");
  } finally {
    store.close();
  }
}

/** A start mechanism's source (checked when the config was resolved; read again here, it may have changed). */
function readStartMechanism(file: string): string {
  const read = readMechanismFile(file);
  if (!read.ok) throw new ConfigError(`mechanisms: ${read.message}`);
  return read.source;
}
