// The local executor: up to `parallel` trials at once on this machine, through the run's trainer.
// Each slot gets its own GPU or its share of the cores; a trial dies with the run process, so a
// resumed run runs its trials in flight again.
import type { Trainer, TrialOutcome } from "../../trainer/types.ts";
import { slotEnv } from "../study/slots.ts";
import type { Executor, ExecutorHooks, ExecutorTrial } from "./types.ts";

export interface LocalExecutorOptions {
  readonly slots: number;
  readonly device: "cpu" | "cuda";
  readonly gpus?: number;
  readonly cores?: number;
}

export class LocalExecutor implements Executor {
  readonly kind = "local";
  private readonly trainer: Trainer;
  private readonly options: LocalExecutorOptions;

  constructor(trainer: Trainer, options: LocalExecutorOptions) {
    this.trainer = trainer;
    this.options = options;
  }

  run(trial: ExecutorTrial, hooks: ExecutorHooks): Promise<TrialOutcome> {
    const { slots, device, ...counts } = this.options;
    hooks.submitted(null);
    hooks.started(Date.now());
    const env = slotEnv(trial.slot, slots, device, counts);
    // One slot: the request as it always was (no environment of its own).
    const request = Object.keys(env).length > 0 ? { ...trial.request, env } : trial.request;
    return this.trainer.run(request);
  }

  reattach(): null {
    return null; // a local trial died with the run process (PR_SET_PDEATHSIG): run it again
  }
}
