// The run's view of the LLM: every call of every level goes through here. It tells the console
// that a call is waiting (level, attempt, retries), stores the structured-output mode when `auto`
// falls back, counts tokens against `llm.maxTokensPerRun`, waits out a provider outage (a transient
// fault that outlasts a call's own retries) for up to `llm.maxOutageMs`, calling again rather than
// spending iterations on it, and stops the run when the same kind of fault comes back
// `llm.maxConsecutiveFailures` times in a row: a run never "finishes" having done nothing.
import { duration } from "../report/html.ts";
import type { EventLevel, RunStore } from "../store.ts";
import type {
  ChatJsonRequest,
  ChatTextRequest,
  LlmClient,
  LlmError,
  LlmExchange,
  LlmResult,
  OpenAiLlmClient,
} from "./client.ts";
import { isStructuredMode, type StructuredMode } from "./structured-output.ts";
import { isTransient, sleep, type TransportMonitor } from "./transport.ts";

/** The level a call belongs to, from its purpose ("preflight" and others: the run's own). */
export function levelOfPurpose(purpose: string): EventLevel {
  if (purpose === "propose") return "1";
  if (purpose === "level15") return "1.5";
  if (purpose.startsWith("level2")) return "2";
  return "run";
}

export interface LlmCallInfo {
  readonly level: EventLevel;
  readonly purpose: string;
  readonly attempt: number;
  readonly of: number;
}

/** What the console shows of LLM calls: one is waiting, a retry is due, the call is over. */
export interface LlmObserver {
  llmWaiting?(call: LlmCallInfo): void;
  llmRetry?(call: LlmCallInfo & { readonly reason: string; readonly waitMs: number }): void;
  /** The provider has been failing for `downMs` (outage): the call is made again after `waitMs`. */
  llmOutage?(call: {
    readonly level: EventLevel;
    readonly reason: string;
    readonly downMs: number;
    readonly waitMs: number;
  }): void;
  llmSettled?(): void;
}

export interface RunLlmSettings {
  /** Stop the run after this many calls in a row fail with the same kind of fault (0: never). */
  readonly maxConsecutiveFailures: number;
  /** How long a provider outage is waited out (calls made again) before failures count; 0: not at all. */
  readonly maxOutageMs: number;
  /** The longest wait between two calls through an outage (llm.maxRetryWaitMs). */
  readonly maxRetryWaitMs: number;
  /** Tokens (prompt + completion) the run may spend on the LLM; null: no limit. */
  readonly maxTokensPerRun: number | null;
  readonly onBudgetExhausted: "offline" | "stop";
}

export interface RunLlmDeps {
  readonly store: RunStore;
  readonly settings: RunLlmSettings;
  readonly observer?: LlmObserver;
  /** A line for the console. */
  readonly emit: (level: EventLevel, message: string) => void;
  /** Ends the run after the current phase (the loop sees its signal aborted). */
  readonly stop: () => void;
  /** Aborts a waiting call (Ctrl-C). */
  readonly signal?: AbortSignal;
}

/** Why the run's LLM use ended it early: a persistent fault (failed) or the spent budget (stopped). */
export interface LlmStop {
  readonly kind: "failed" | "budget";
  readonly reason: string;
}

type Inner = LlmClient & Pick<OpenAiLlmClient, "onModeChange">;

/** The shortest wait between two calls through an outage. */
const OUTAGE_MIN_WAIT_MS = 1000;
/** The messages of a failure streak kept for its reason (the last ones). */
const STREAK_MESSAGES = 3;

/** Why a streak of failures stops the run: the kind of fault, and its messages (the distinct ones). */
function streakReason(streak: { key: string; count: number; messages: string[] }): string {
  const distinct = [...new Set(streak.messages)];
  const said =
    distinct.length === 1
      ? `the same error each time: ${distinct[0]}`
      : `different messages, the last ${distinct.length}: ${distinct.join("; ")}`;
  return `the LLM failed ${streak.count} times in a row with the same kind of fault (${streak.key}; ${said})`;
}

const tokensOf = (e: LlmExchange) => (e.promptTokens ?? 0) + (e.completionTokens ?? 0);
const describe = (e: LlmError) => `${e.code}${e.status ? ` ${e.status}` : ""}: ${e.message}`;

export class RunLlm implements LlmClient {
  readonly model: string;
  private readonly inner: Inner;
  private readonly d: RunLlmDeps;
  private used: number;
  private streak: { key: string; count: number; messages: string[] } | null = null;
  /** Since when calls have failed with transient faults (an outage), and how often; null: none. */
  private outage: { since: number; calls: number; level: EventLevel } | null = null;
  private attempted = 0;
  private succeeded = 0;
  private lastError: string | null = null;
  private budgetNoted = false;
  private stopped: LlmStop | null = null;

  constructor(inner: Inner, deps: RunLlmDeps) {
    this.inner = inner;
    this.model = inner.model;
    this.d = deps;
    // A resumed run's budget counts what it spent before.
    this.used = deps.store.llmTokensUsed();
    this.budgetNoted = !this.available;
    inner.onModeChange((mode, reason) => this.modeChanged(mode, reason));
  }

  /** Whether LLM calls may still be made (the token budget is not spent). */
  get available(): boolean {
    const max = this.d.settings.maxTokensPerRun;
    return max === null || this.used < max;
  }

  /** Tokens spent so far, this run's earlier sessions included. */
  get tokensUsed(): number {
    return this.used;
  }

  chatJson<T>(request: ChatJsonRequest<T>): Promise<LlmResult<T>> {
    return this.guarded(request, (r) => this.inner.chatJson<T>({ ...request, ...r }));
  }

  chatText(request: ChatTextRequest): Promise<LlmResult<string>> {
    return this.guarded(request, (r) => this.inner.chatText({ ...request, ...r }));
  }

  /**
   * How the run's LLM use ended it, if it did: a persistent fault, the budget (when configured to
   * stop), or — at the end — a run in which no LLM call ever succeeded.
   */
  finalStop(interrupted: boolean): LlmStop | null {
    if (this.stopped) return this.stopped;
    if (!interrupted && this.attempted > 0 && this.succeeded === 0) {
      return {
        kind: "failed",
        reason: `none of the ${this.attempted} LLM calls of this run succeeded (last: ${this.lastError ?? "unknown"})`,
      };
    }
    return null;
  }

  private async guarded<R>(
    request: { readonly purpose: string; readonly onExchange?: (e: LlmExchange) => void },
    call: (extra: {
      monitor: TransportMonitor;
      onExchange: (e: LlmExchange) => void;
      signal?: AbortSignal;
    }) => Promise<LlmResult<R>>,
  ): Promise<LlmResult<R>> {
    if (!this.available || this.stopped) {
      this.noteBudget();
      const why = this.stopped ? this.stopped.reason : "the run's LLM token budget is spent";
      return { ok: false, error: { code: "budget", message: why }, exchanges: [] };
    }
    for (let round = 1; ; round++) {
      const result = await call({
        monitor: this.monitorFor(request.purpose),
        onExchange: (e) => {
          this.used += tokensOf(e);
          request.onExchange?.(e);
        },
        ...(this.d.signal ? { signal: this.d.signal } : {}),
      });
      const wait = this.outageWait(result, levelOfPurpose(request.purpose), round);
      if (wait !== null && this.available) {
        if (await sleep(wait, this.d.signal)) continue;
        this.outageOver("the run stopped while waiting");
        const message = "stopped while waiting out an LLM outage";
        return { ok: false, error: { code: "aborted", message }, exchanges: result.exchanges };
      }
      this.track(result);
      if (!this.available) this.noteBudget();
      return result;
    }
  }

  /**
   * How long to wait before making a failed call again through a provider outage (a transient
   * fault that outlasted the call's own retries), or null: the result stands. Backoff from 5 s up
   * to llm.maxRetryWaitMs; once the outage has lasted llm.maxOutageMs, failures count as usual.
   * The outage's start and end are events.
   */
  private outageWait(result: LlmResult<unknown>, level: EventLevel, round: number): number | null {
    if (result.ok) {
      this.outageOver("the LLM answers again");
      return null;
    }
    const { error } = result;
    const max = this.d.settings.maxOutageMs;
    if (!isTransient(error) || !(max > 0) || this.d.signal?.aborted) return null;
    const now = Date.now();
    if (!this.outage) {
      this.outage = { since: now, calls: 0, level };
      this.record(
        level,
        "llm-outage",
        `the LLM is failing (${describe(error)}): the run waits, calling again, for up to ${duration(max)} (llm.maxOutageMs)`,
      );
    }
    this.outage.calls++;
    const down = now - this.outage.since;
    if (down >= max) return null;
    // Backoff capped by llm.maxRetryWaitMs, never under a second (no tight loop, even with a cap
    // of 0), the server's Retry-After honoured; the last wait ends when the outage's time is up.
    const backoff = Math.min(this.d.settings.maxRetryWaitMs, 5000 * 2 ** Math.min(round - 1, 10));
    const wait = Math.min(max - down, Math.max(OUTAGE_MIN_WAIT_MS, backoff, error.retryAfterMs ?? 0));
    this.d.observer?.llmOutage?.({
      level,
      reason: describe(error).slice(0, 200),
      downMs: down,
      waitMs: wait,
    });
    return wait;
  }

  /** The end of an outage, as an event with its length. */
  private outageOver(how: string): void {
    if (!this.outage) return;
    const { since, calls, level } = this.outage;
    this.outage = null;
    this.record(
      level,
      "llm-outage-over",
      `${how} after ${duration(Date.now() - since)} of failures (${calls} calls failed)`,
    );
  }

  private record(level: EventLevel, kind: string, message: string): void {
    this.d.store.addEvent(this.d.store.completedIterations(), level, kind, message);
    this.d.emit(level, message);
  }

  private monitorFor(purpose: string): TransportMonitor {
    const level = levelOfPurpose(purpose);
    const o = this.d.observer;
    return {
      attempt: (attempt, of) => o?.llmWaiting?.({ level, purpose, attempt, of }),
      retry: (error, waitMs, attempt, of) =>
        o?.llmRetry?.({ level, purpose, attempt, of, waitMs, reason: describe(error).slice(0, 200) }),
      settled: () => o?.llmSettled?.(),
    };
  }

  /** Count the call; the same error `maxConsecutiveFailures` times in a row stops the run. */
  private track(result: LlmResult<unknown>): void {
    if (result.ok) {
      this.attempted++;
      this.succeeded++;
      this.streak = null;
      return;
    }
    const { error } = result;
    if (error.code === "aborted" || error.code === "budget") return;
    this.attempted++;
    this.lastError = describe(error);
    const key = `${error.code}${error.status ? ` ${error.status}` : ""}`;
    const same = this.streak?.key === key ? this.streak : null;
    this.streak = {
      key,
      count: (same?.count ?? 0) + 1,
      messages: [...(same?.messages ?? []), this.lastError].slice(-STREAK_MESSAGES),
    };
    const max = this.d.settings.maxConsecutiveFailures;
    if (max > 0 && this.streak.count >= max && !this.stopped) {
      const outage = this.outage ? `, after ${duration(Date.now() - this.outage.since)} of failures` : "";
      this.end({ kind: "failed", reason: `${streakReason(this.streak)}${outage}` }, "llm-failed");
    }
  }

  private noteBudget(): void {
    if (this.budgetNoted) return;
    this.budgetNoted = true;
    const { maxTokensPerRun, onBudgetExhausted } = this.d.settings;
    const spent = `LLM token budget reached: ${this.used} of ${maxTokensPerRun} tokens`;
    if (onBudgetExhausted === "stop") {
      this.end(
        { kind: "budget", reason: `${spent}; the run stops (resume with a larger llm.maxTokensPerRun)` },
        "llm-budget",
      );
      return;
    }
    const message = `${spent}: no more LLM calls; the offline proposer, rule-based Level 1.5 and the library Level 2 take over`;
    this.record("run", "llm-budget", message);
  }

  private end(stop: LlmStop, kind: string): void {
    this.stopped = stop;
    this.d.store.transaction(() => {
      this.d.store.setMeta("stop_reason", stop.reason);
      this.d.store.addEvent(this.d.store.completedIterations(), "run", kind, stop.reason);
    });
    this.d.emit("run", stop.reason);
    this.d.stop();
  }

  private modeChanged(mode: StructuredMode, reason: string): void {
    const message = `LLM structured output: now ${mode} (the server refused the previous mode: ${reason.slice(0, 300)})`;
    this.d.store.transaction(() => {
      this.d.store.setMeta("llm_mode", mode);
      this.d.store.addEvent(this.d.store.completedIterations(), "run", "llm-mode", message);
    });
    this.d.emit("run", message);
  }
}

/** A resumed run's structured-output mode (kept across resumes), or null. */
export function storedMode(store: RunStore): StructuredMode | null {
  const mode = store.getMeta("llm_mode");
  return isStructuredMode(mode) ? mode : null;
}

/** Record how the run ended when its LLM use ended it (after the loop wrote "stopped"). */
export function recordStop(store: RunStore, stop: LlmStop): void {
  store.transaction(() => {
    store.setMeta("status", stop.kind === "failed" ? "failed" : "stopped");
    store.setMeta("stop_reason", stop.reason);
  });
}
