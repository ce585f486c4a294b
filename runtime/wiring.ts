// Builds a run from its config: store, sandbox, trainer, proposer, Level 1.5 strategist,
// Level 2 researcher, display; runs the loop; stops cleanly on SIGINT/SIGTERM.
import { readFileSync } from "node:fs";
import { Sandbox, syntheticTrace } from "../sandbox/index.ts";
import type { Trainer } from "../trainer/types.ts";
import { ConfigError, type ResolvedRunConfig, sandboxPolicy } from "./config.ts";
import { RunDisplay } from "./display.ts";
import { LlmProposer } from "./level1/llm-proposer.ts";
import { OfflineProposer } from "./level1/offline-proposer.ts";
import { LibraryResearcher } from "./level2/library.ts";
import { LlmResearcher } from "./level2/researcher.ts";
import { LlmStrategist, RuleStrategist } from "./level15/strategists.ts";
import { ChatJsonAdapter } from "./llm/chat-json.ts";
import { createLlmClient, type LlmClient } from "./llm/client.ts";
import { BilevelLoop, type LoopObserver, type RunSummary } from "./loop.ts";
import { buildReport, type RunReport } from "./report.ts";
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
  const startMechanisms = config.mechanisms.map((file) => ({ file, source: readMechanismFile(file) }));
  const sandbox = await Sandbox.start(sandboxPolicy(config.policy));
  let store: RunStore;
  try {
    store = RunStore.open(dir);
  } catch (error) {
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
      sandbox,
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
  }
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
