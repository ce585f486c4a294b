// Where a trial runs: the loop hands each trial to an executor (local slots, or one Slurm job per
// trial) and gets its outcome back. The executor reports the job's id before the job can start,
// so the loop stores it first and a killed run can reattach to it.
import type { TrialOutcome, TrialRequest } from "../../trainer/types.ts";
import { UserError } from "../errors.ts";
import type { JobRow } from "../store.ts";

/** A trial for an executor: its number, its slot (0 … parallel−1) and what to run. */
export interface ExecutorTrial {
  readonly trialId: number;
  readonly slot: number;
  readonly request: TrialRequest;
}

/** What an executor tells the loop while a trial is in flight. */
export interface ExecutorHooks {
  /** The job exists and cannot start before this returns (Slurm: held); null for a local trial. */
  submitted(jobId: string | null): void;
  /** The trial started running, at `atMs` (epoch milliseconds). */
  started(atMs: number): void;
}

export interface Executor {
  readonly kind: "local" | "slurm";
  /**
   * Checks before anything is created (Slurm: the resource request, with `sbatch --test-only`);
   * a problem is an ExecutorError.
   */
  check?(): Promise<void>;
  /** Checks once the run folder exists (Slurm: that the nodes see it). */
  prepare?(runDir: string, signal?: AbortSignal): Promise<void>;
  /**
   * Run one trial. Whatever the trial does comes back as its outcome (an abort: status crashed,
   * message "aborted"); a job that cannot even be submitted throws an ExecutorError.
   */
  run(trial: ExecutorTrial, hooks: ExecutorHooks): Promise<TrialOutcome>;
  /**
   * A trial that was in flight when the run stopped: its outcome, when its job still runs (it is
   * followed to its end) or finished meanwhile; null when it must be run again.
   */
  reattach(job: JobRow, trial: ExecutorTrial, hooks: ExecutorHooks): Promise<TrialOutcome> | null;
}

/** The executor cannot run trials as configured (a refused submission, a folder the nodes do not see). */
export class ExecutorError extends UserError {
  override name = "ExecutorError";
}
