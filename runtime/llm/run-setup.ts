// How a run takes the LLM on: the endpoint is checked before the run folder exists or anything
// trains (a refused key, an unknown model or a closed port stop the run at once, naming the
// problem), the check is recorded once the store is open, and the deciders of every level are
// built over the run's LLM (RunLlm), each falling back to its offline counterpart when the
// token budget runs out.
import type { ResolvedRunConfig } from "../config.ts";
import { UserError } from "../errors.ts";
import { LlmProposer } from "../level1/llm-proposer.ts";
import { OfflineProposer } from "../level1/offline-proposer.ts";
import type { Proposer } from "../level1/proposer.ts";
import { LibraryResearcher } from "../level2/library.ts";
import { LlmResearcher } from "../level2/researcher.ts";
import type { Researcher } from "../level2/types.ts";
import { LlmStrategist, RuleStrategist } from "../level15/strategists.ts";
import type { Strategist } from "../level15/strategy.ts";
import { RunStore } from "../store.ts";
import { BudgetedProposer, BudgetedResearcher, BudgetedStrategist } from "./budget-fallback.ts";
import { ChatJsonAdapter, storeExchange } from "./chat-json.ts";
import { apiKeyWarning, type OpenAiLlmClient } from "./client.ts";
import { type PreflightReport, preflight } from "./preflight.ts";
import { type LlmObserver, levelOfPurpose, RunLlm, storedMode } from "./run-llm.ts";
import type { TransportMonitor } from "./transport.ts";

/** The endpoint cannot serve the run: nothing was created or trained (exit 1). */
export class PreflightError extends UserError {
  override name = "PreflightError";
}

export interface CheckedEndpoint {
  readonly report: PreflightReport;
  readonly keyWarning: string | null;
}

/** The console's "waiting for the LLM" for calls outside the loop (the preflight). */
export function observerMonitor(observer: LlmObserver | undefined, purpose: string): TransportMonitor {
  const level = levelOfPurpose(purpose);
  return {
    attempt: (attempt, of) => observer?.llmWaiting?.({ level, purpose, attempt, of }),
    retry: (error, waitMs, attempt, of) =>
      observer?.llmRetry?.({
        level,
        purpose,
        attempt,
        of,
        waitMs,
        reason: `${error.code}: ${error.message}`,
      }),
    settled: () => observer?.llmSettled?.(),
  };
}

/**
 * Check the endpoint before the run starts (or resumes): throws PreflightError naming the problem.
 * A resumed run starts from its stored structured-output mode.
 */
export async function checkEndpoint(
  client: OpenAiLlmClient,
  options: {
    readonly dir: string;
    readonly config: ResolvedRunConfig;
    readonly env: Readonly<Record<string, string | undefined>>;
    readonly observer?: LlmObserver & { event?(level: "run", message: string): void };
    readonly signal?: AbortSignal;
  },
): Promise<CheckedEndpoint> {
  const { config, env, observer } = options;
  const keyWarning = apiKeyWarning(config.llm, env);
  if (keyWarning) observer?.event?.("run", `warning: ${keyWarning}`);
  let startMode = null;
  if (RunStore.exists(options.dir)) {
    const store = RunStore.open(options.dir, { readOnly: true });
    startMode = storedMode(store);
    store.close();
  }
  const report = await preflight(client, {
    startMode,
    keyEnv: config.llm.apiKeyEnv,
    keySet: keyWarning === null,
    monitor: observerMonitor(observer, "preflight"),
    ...(options.signal ? { signal: options.signal } : {}),
  });
  if (!report.ok || report.mode === null) {
    throw new PreflightError(
      `the LLM endpoint cannot serve this run: ${report.problem ?? "unknown problem"}\n` +
        "nothing was run. Check it with ./bilevel llm check --config FILE, or run with --offline",
      1,
    );
  }
  client.useMode(report.mode);
  observer?.event?.("run", preflightSummary(report));
  return { report, keyWarning };
}

/** One line: the endpoint, the model, the mode the run uses and why (modes refused before it). */
export function preflightSummary(report: PreflightReport): string {
  const refused = report.lines.filter((l) => l.check.startsWith("mode ") && l.status === "failed");
  const why =
    refused.length > 0 ? ` (${refused.map((l) => `${l.check.slice(5)}: ${l.detail}`).join("; ")})` : "";
  const latency = report.lines.find((l) => l.check === `mode ${report.mode}`)?.latencyMs;
  return `LLM ${report.model} at ${report.url}: structured output ${report.mode}${why}${latency != null ? `, ${latency} ms` : ""}`;
}

/** The run's LLM over the checked client; the check's exchanges, mode and warning are recorded. */
export function startRunLlm(
  client: OpenAiLlmClient,
  checked: CheckedEndpoint,
  deps: {
    readonly store: RunStore;
    readonly config: ResolvedRunConfig;
    readonly observer?: LlmObserver;
    readonly emit: (message: string) => void;
    readonly stop: () => void;
    readonly signal?: AbortSignal;
  },
): RunLlm {
  const { store, config } = deps;
  const iteration = store.hasCheckpoint("baseline") ? store.completedIterations() : 0;
  store.transaction(() => {
    for (const e of checked.report.exchanges) storeExchange(store, iteration, e);
    store.setMeta("llm_mode", checked.report.mode ?? "");
    if (checked.keyWarning) store.addEvent(iteration, "run", "warning", checked.keyWarning);
    store.addEvent(iteration, "run", "llm-check", preflightSummary(checked.report));
  });
  return new RunLlm(client, {
    store,
    settings: {
      maxConsecutiveFailures: config.llm.maxConsecutiveFailures,
      maxOutageMs: config.llm.maxOutageMs,
      maxRetryWaitMs: config.llm.maxRetryWaitMs,
      maxTokensPerRun: config.llm.maxTokensPerRun,
      onBudgetExhausted: config.llm.onBudgetExhausted,
    },
    ...(deps.observer ? { observer: deps.observer } : {}),
    emit: (_level, message) => deps.emit(message),
    stop: deps.stop,
    ...(deps.signal ? { signal: deps.signal } : {}),
  });
}

export interface Deciders {
  readonly proposer: Proposer;
  readonly strategist: Strategist;
  readonly researcher: Researcher;
}

/** The deciders of every level: over the run's LLM (offline once its budget is spent), or offline. */
export function deciders(llm: RunLlm | null, store: RunStore, config: ResolvedRunConfig): Deciders {
  const offline: Deciders = {
    proposer: new OfflineProposer(),
    strategist: new RuleStrategist(config.level15),
    researcher: new LibraryResearcher(),
  };
  if (!llm) return offline;
  const chat = new ChatJsonAdapter(llm, store);
  return {
    proposer: new BudgetedProposer(
      new LlmProposer(chat.chat, config.proposer.maxRepairs, config.program?.text ?? null),
      offline.proposer,
      llm,
    ),
    strategist: new BudgetedStrategist(
      new LlmStrategist(chat.chat, config.proposer.maxRepairs),
      offline.strategist,
      llm,
    ),
    researcher: config.policy.allowCodeGeneration
      ? new BudgetedResearcher(new LlmResearcher(llm, store, config), offline.researcher, llm)
      : offline.researcher,
  };
}
