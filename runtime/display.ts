// The live display of a run on stderr: one line per event, a progress bar for the running trial
// (on a TTY), best so far and the active mechanisms. Every line passes through safeText: event
// messages carry mechanism and LLM text (names, reasons, thrown messages, rationales).
import { SingleBar } from "cli-progress";
import type { TrainerProgress } from "../trainer/types.ts";
import type { IterationStatus, LoopObserver } from "./loop.ts";
import type { EventLevel, TrialRow } from "./store.ts";
import { canStyle, safeText } from "./terminal-text.ts";

const LEVEL_TAG: Record<EventLevel, string> = { run: "run", "1": "L1 ", "1.5": "L1.5", "2": "L2 " };

export class RunDisplay implements LoopObserver {
  private bar: SingleBar | null = null;
  private readonly out: NodeJS.WriteStream;
  /** Whether the progress bar (cursor moves) may be drawn: a TTY without NO_COLOR. */
  private readonly styled: boolean;

  constructor(out: NodeJS.WriteStream = process.stderr) {
    this.out = out;
    this.styled = canStyle(out);
  }

  private line(text: string): void {
    if (this.bar) {
      this.bar.stop();
      this.bar = null;
    }
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

  trialStart(trialId: number, description: string, budgetSeconds: number): void {
    this.line(`[L1 ] training #${trialId}: ${description} (budget ${budgetSeconds}s)`);
    if (this.styled) {
      this.bar = new SingleBar({
        format: "      {bar} {percentage}% | step {step} | loss {loss} | {tps} tok/s",
        hideCursor: true,
        clearOnComplete: true,
        stream: this.out,
      });
      this.bar.start(100, 0, { step: 0, loss: "-", tps: 0 });
    }
  }

  trialProgress(p: TrainerProgress): void {
    this.bar?.update(Math.round(p.progress * 100), {
      step: p.step,
      loss: p.loss.toFixed(3),
      tps: Math.round(p.tokensPerSecond),
    });
  }

  trialEnd(trial: TrialRow, best: number | null): void {
    const score = trial.valBpb === null ? trial.status.toUpperCase() : `val_bpb ${trial.valBpb.toFixed(4)}`;
    const why = trial.status === "ok" ? "" : ` (${trial.message})`;
    const verdict = `${trial.kind === "baseline" ? "baseline" : trial.kept ? "KEPT" : "discarded"}${why}`;
    this.line(
      `[L1 ] #${trial.id}${trial.kind === "baseline" ? " (baseline)" : ` (iteration ${trial.iteration})`} ${score} — ${verdict}; best so far ${best === null ? "n/a" : best.toFixed(4)}`,
    );
  }

  close(): void {
    this.bar?.stop();
    this.bar = null;
  }
}
