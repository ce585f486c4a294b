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
import { RunFolderLock } from "./run-lock.ts";
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
  // The folder's lock comes before anything costly (the LLM check is a paid request), so that a
  // live run, a concurrent resume or a second new run on the same folder is refused first: a
  // resume takes it at once, a new run when it claims its folder, after its own checks.
  const lock = new RunFolderLock(options.dir);
  if (options.resume === true) lock.take();
  try {
    return await executeLocked(options, lock);
  } finally {
    lock.release();
  }
}

async function executeLocked(options: ExecuteOptions, lock: RunFolderLock): Promise<RunResult> {
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
  // Everything above touched nothing: now the folder (see RunFolderLock).
  lock.claimNew();
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
  const store = await openStore(dir, sandbox);
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
  }
}

/** The run folder's store (its lock is held); on failure the sandbox is closed too. */
async function openStore(dir: string, sandbox: Sandbox): Promise<RunStore> {
  try {
    return RunStore.open(dir);
  } catch (error) {
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
