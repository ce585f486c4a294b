// The trials in flight: up to `size` at once, each in a slot. Only training runs concurrently:
// the loop takes finished trials back one at a time, in the order they finished, and judges and
// stores each in its own flow, so no two phases ever interleave their writes.
import type { TrialOutcome } from "../../trainer/types.ts";

interface Entry<T> {
  readonly trialId: number;
  readonly slot: number;
  readonly info: T;
}

/** A trial whose training ended: its outcome (or the error its executor threw). */
export type Finished<T> = Entry<T> & { readonly endedMs: number } & (
    | { readonly outcome: TrialOutcome }
    | { readonly error: unknown }
  );

export class TrialPool<T> {
  readonly size: number;
  private readonly running = new Map<number, Entry<T>>();
  private readonly finished: Finished<T>[] = [];
  private wake: (() => void) | null = null;

  constructor(size: number) {
    this.size = Math.max(1, size);
  }

  get count(): number {
    return this.running.size + this.finished.length;
  }

  /** What is in flight (finished but not yet taken back included), by trial id. */
  entries(): Entry<T>[] {
    return [...this.running.values(), ...this.finished].sort((a, b) => a.trialId - b.trialId);
  }

  /** The lowest slot nobody holds, or null when all are taken. */
  freeSlot(): number | null {
    const taken = new Set(this.entries().map((e) => e.slot));
    for (let slot = 0; slot < this.size; slot++) if (!taken.has(slot)) return slot;
    return null;
  }

  add(trialId: number, slot: number, info: T, outcome: Promise<TrialOutcome>): void {
    const entry = { trialId, slot, info };
    this.running.set(trialId, entry);
    const settle = (done: Finished<T>) => {
      this.running.delete(trialId);
      this.finished.push(done);
      this.wake?.();
    };
    outcome.then(
      (o) => settle({ ...entry, endedMs: Date.now(), outcome: o }),
      (error: unknown) => settle({ ...entry, endedMs: Date.now(), error }),
    );
  }

  /** The next trial to finish (the earliest finished first); null when none is in flight. */
  async next(): Promise<Finished<T> | null> {
    while (this.finished.length === 0) {
      if (this.running.size === 0) return null;
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
      this.wake = null;
    }
    return this.finished.shift() ?? null;
  }
}
