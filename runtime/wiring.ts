// Builds a run from its config: store, sandbox, trainer, proposer, Level 1.5 strategist,
// Level 2 researcher, display; runs the loop under the run folder's lock (the CLI handles signals).
import { Sandbox, syntheticTrace } from "../sandbox/index.ts";
import type { Trainer } from "../trainer/types.ts";
import { ConfigError, type ResolvedRunConfig, sandboxPolicy } from "./config.ts";
import { RunDisplay } from "./display.ts";
import { FILTER_CHAIN_RULE } from "./level1/filter-chain.ts";
import { LlmProposer } from "./level1/llm-proposer.ts";
import { OfflineProposer } from "./level1/offline-proposer.ts";
import { LibraryResearcher } from "./level2/library.ts";
import { LlmResearcher } from "./level2/researcher.ts";
import { LlmStrategist, RuleStrategist } from "./level15/strategists.ts";
import { ChatJsonAdapter } from "./llm/chat-json.ts";
import { createLlmClient, type LlmClient } from "./llm/client.ts";
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
  readonly observer?: LoopObserver;
  /** For tests and benchmarks: a trainer to use instead of the configured one. */
  readonly trainer?: Trainer;
  readonly env?: Readonly<Record<string, string | undefined>>;
  readonly signal?: AbortSignal;
  /** false: one round trip per hook call (the reference the batched path is tested against). */
  readonly hookBatching?: boolean;
}

export async function executeRun(options: ExecuteOptions): Promise<RunSummary & { report: RunReport }> {
  const { config, dir } = options;
  const llm: LlmClient | null = options.offline
    ? null
    : createLlmClient(config.llm, options.env ?? process.env);
  const params = config.searchSpace;
  // Everything that can be refused is read and checked before the run folder exists.
  const trainer =
    options.trainer ?? createTrainer(config, params, { runDir: dir, resume: options.resume ?? false });
  // A resume whose start mechanisms are in the store already needs no files (they may be gone).
  const startedAlready = options.resume === true && startMechanismsDone(dir);
  const startMechanisms = startedAlready
    ? []
    : config.mechanisms.map((file) => ({ file, source: readStartMechanism(file) }));
  // The child runs a proposal's filter chain with the loop's own rule (runtime/level1/filter-chain.ts).
  const sandbox = await Sandbox.start(sandboxPolicy(config.policy), { chainRule: FILTER_CHAIN_RULE });
  let store: RunStore;
  let unlock: () => void;
  try {
    store = RunStore.open(dir);
  } catch (error) {
    await sandbox.close();
    throw error;
  }
  try {
    unlock = acquireRunLock(dir);
  } catch (error) {
    store.close();
    await sandbox.close();
    throw error;
  }
  const display = options.observer ?? new RunDisplay();
  try {
    const chat = llm ? new ChatJsonAdapter(llm, store) : null;
    const loop = new BilevelLoop({
      store,
      config,
      trainer,
      sandbox: options.hookBatching === false ? unbatched(sandbox) : sandbox,
      proposer: chat
        ? new LlmProposer(chat.chat, config.proposer.maxRepairs, config.program?.text ?? null)
        : new OfflineProposer(),
      strategist: chat
        ? new LlmStrategist(chat.chat, config.proposer.maxRepairs)
        : new RuleStrategist(config.level15),
      researcher:
        llm && config.policy.allowCodeGeneration
          ? new LlmResearcher(llm, store, config)
          : new LibraryResearcher(),
      syntheticTrace,
      startMechanisms,
      observer: display,
      ...(options.signal ? { signal: options.signal } : {}),
    });
    try {
      const summary = await loop.run();
      return { ...summary, report: buildReport(store) };
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
