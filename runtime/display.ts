// The live display of a run on stderr: one line per event, a progress bar for the running trial
// (on a TTY), best so far and the active mechanisms, and while an LLM call waits, that it waits
// (level, purpose, attempt, seconds). Every line passes through safeText: event messages carry
// mechanism and LLM text (names, reasons, thrown messages, rationales).
import { SingleBar } from "cli-progress";
import type { TrainerProgress } from "../trainer/types.ts";
import type { LlmCallInfo, LlmObserver } from "./llm/run-llm.ts";
import type { IterationStatus, LoopObserver } from "./loop.ts";
import { duration } from "./report/html.ts";
import type { EventLevel, TrialRow } from "./store.ts";
import { canStyle, safeText } from "./terminal-text.ts";

const LEVEL_TAG: Record<EventLevel, string> = { run: "run", "1": "L1 ", "1.5": "L1.5", "2": "L2 " };

export interface WaitTiming {
  /** On a TTY: how often the waiting line is redrawn. */
  readonly redrawMs: number;
  /** Elsewhere: the first "still waiting" line comes after this, then one per `repeatMs`. */
  readonly firstMs: number;
  readonly repeatMs: number;
}

const WAIT_TIMING: WaitTiming = { redrawMs: 1000, firstMs: 10_000, repeatMs: 30_000 };

export class RunDisplay implements LoopObserver, LlmObserver {
  private bar: SingleBar | null = null;
  private readonly out: NodeJS.WriteStream;
  /** Whether the progress bar (cursor moves) may be drawn: a TTY without NO_COLOR. */
  private readonly styled: boolean;
  private readonly timing: WaitTiming;
  private waitTimer: NodeJS.Timeout | null = null;
  /** Whether the TTY's waiting line is on screen (to be erased before the next line). */
  private waitShown = false;
  /** Trials started and not yet ended (what a Ctrl-C would kill). */
  private readonly inFlight = new Set<number>();

  constructor(out: NodeJS.WriteStream = process.stderr, timing: WaitTiming = WAIT_TIMING) {
    this.out = out;
    this.styled = canStyle(out);
    this.timing = timing;
  }

  private line(text: string): void {
    if (this.bar) {
      this.bar.stop();
      this.bar = null;
    }
    this.eraseWaitLine();
    // Neutralised as a whole: the project's own lines hold no control characters, so only
    // foreign text changes, and an embedded newline cannot start a forged line.
    this.out.write(`${safeText(text)}\n`);
  }

  event(level: EventLevel, message: string): void {
    this.line(`[${LEVEL_TAG[level]}] ${message}`);
  }

  iterationStart(iteration: number, total: number, status: IterationStatus): void {
    this.line(
      `── iteration ${iteration}/${total} · best ${status.best === null ? "n/a" : status.best.toFixed(4)} · strategy ${status.strategy} · mechanisms: ${status.mechanisms.length > 0 ? status.mechanisms.join(", ") : "none"}`,
    );
  }

  /** The ids of the trials in flight now, in start order. */
  trialsInFlight(): number[] {
    return [...this.inFlight];
  }

  trialStart(trialId: number, description: string, budgetSeconds: number): void {
    this.inFlight.add(trialId);
    this.line(`[L1 ] training #${trialId}: ${description} (budget ${budgetSeconds}s)`);
  }

  /** The bar appears with the first progress record (trials in flight side by side send none). */
  trialProgress(p: TrainerProgress): void {
    if (this.styled && !this.bar) {
      this.bar = new SingleBar({
        format: "      {bar} {percentage}% | step {step} | loss {loss} | {tps} tok/s",
        hideCursor: true,
        clearOnComplete: true,
        stream: this.out,
      });
      this.bar.start(100, 0, { step: 0, loss: "-", tps: 0 });
    }
    this.bar?.update(Math.round(p.progress * 100), {
      step: p.step,
      loss: p.loss.toFixed(3),
      tps: Math.round(p.tokensPerSecond),
    });
  }

  trialEnd(trial: TrialRow, best: number | null): void {
    this.inFlight.delete(trial.id);
    const score = trial.valBpb === null ? trial.status.toUpperCase() : `val_bpb ${trial.valBpb.toFixed(4)}`;
    const why = trial.status === "ok" ? "" : ` (${trial.message})`;
    const verdict = `${trial.kind === "baseline" ? "baseline" : trial.kept ? "KEPT" : "discarded"}${why}`;
    this.line(
      `[L1 ] #${trial.id}${trial.kind === "baseline" ? " (baseline)" : ` (iteration ${trial.iteration})`} ${score} — ${verdict}; best so far ${best === null ? "n/a" : best.toFixed(4)}`,
    );
  }

  llmWaiting(call: LlmCallInfo): void {
    this.llmSettled();
    const started = Date.now();
    const text = () =>
      `[${LEVEL_TAG[call.level]}] waiting for the LLM (${call.purpose}, attempt ${call.attempt}/${call.of}): ${Math.round((Date.now() - started) / 1000)}s`;
    if (this.styled) {
      // Redrawn in place: one line that counts the seconds (not for a quick call), erased after.
      const draw = () => {
        this.out.write(`\r\x1b[2K${safeText(text())}`);
        this.waitShown = true;
      };
      this.waitTimer = setInterval(draw, this.timing.redrawMs);
    } else {
      // A log: silent for a quick call, then a line now and then while it waits.
      const tick = () => {
        this.line(`${text()} …`);
        this.waitTimer = setTimeout(tick, this.timing.repeatMs);
        this.waitTimer.unref();
      };
      this.waitTimer = setTimeout(tick, this.timing.firstMs);
    }
    this.waitTimer.unref();
  }

  llmRetry(call: LlmCallInfo & { readonly reason: string; readonly waitMs: number }): void {
    this.llmSettled();
    this.line(
      `[${LEVEL_TAG[call.level]}] LLM ${call.purpose} failed (${call.reason}); retrying in ${(call.waitMs / 1000).toFixed(1)}s (attempt ${call.attempt}/${call.of})`,
    );
  }

  llmOutage(o: {
    readonly level: EventLevel;
    readonly reason: string;
    readonly downMs: number;
    readonly waitMs: number;
  }): void {
    this.llmSettled();
    this.line(
      `[${LEVEL_TAG[o.level]}] the LLM ${o.downMs < 1000 ? "is failing" : `has been failing for ${duration(o.downMs)}`} (${o.reason}); calling again in ${duration(o.waitMs)}`,
    );
  }

  llmSettled(): void {
    if (this.waitTimer) clearTimeout(this.waitTimer);
    this.waitTimer = null;
    this.eraseWaitLine();
  }

  private eraseWaitLine(): void {
    if (!this.waitShown) return;
    this.out.write("\r\x1b[2K");
    this.waitShown = false;
  }

  close(): void {
    this.llmSettled();
    this.bar?.stop();
    this.bar = null;
  }
}
