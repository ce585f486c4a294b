// The trainer's public contract, used by the loop (runtime/) and the CLI.
import type { Config, TrialStatus } from "../mechanism-api/index.d.ts";

export type Device = "auto" | "cpu" | "cuda";

/** One JSON-lines progress record from the trainer. */
export interface TrainerProgress {
  readonly step: number;
  readonly loss: number;
  /** Training seconds so far (warm-up/compile excluded). */
  readonly elapsed: number;
  readonly tokensPerSecond: number;
  /** Fraction of the budget (time or MAX_STEPS) spent, 0..1. */
  readonly progress: number;
}

/** The trainer's final JSON result (validated with ajv). */
export interface TrainerResult {
  readonly val_bpb: number;
  readonly training_seconds: number;
  readonly total_seconds: number;
  readonly warmup_seconds: number;
  readonly num_steps: number;
  readonly num_tokens: number;
  readonly num_params: number;
  readonly peak_memory_mb: number;
  readonly mfu_percent: number | null;
  readonly tokens_per_second: number;
  readonly device: string;
  readonly config: Config;
  /** The interpreter the trial ran (set by the torch adapter; trainer/find_python.sh chose it). */
  readonly python?: string;
}

export interface TrialRequest {
  /** Search-space values; missing parameters take the device's defaults. */
  readonly config: Config;
  readonly budgetSeconds: number;
  /** Train exactly this many steps instead of until the budget is spent (deterministic tests). */
  readonly maxSteps?: number;
  readonly seed: number;
  readonly device: Device;
  /** A folder of .txt/.jsonl files instead of the default corpus. */
  readonly dataDir?: string;
  /** Where the trial writes its log (stdout/stderr) and any files. Created if missing. */
  readonly workDir: string;
  readonly onProgress?: (progress: TrainerProgress) => void;
  /** Abort kills the process group; the outcome is then `crashed` with message "aborted". */
  readonly signal?: AbortSignal;
  /** What the trial tries, in words (a user's train.py under git: the commit message). */
  readonly description?: string;
  /** Values for the trial's environment, over the trainer's own: an executor's slot (CUDA_VISIBLE_DEVICES, thread counts). */
  readonly env?: Readonly<Record<string, string>>;
}

export interface TrialOutcome {
  readonly status: TrialStatus;
  /** null unless status is "ok". */
  readonly valBpb: number | null;
  readonly result: TrainerResult | null;
  /** One line on what happened (the error for failures). */
  readonly message: string;
  readonly exitCode: number | null;
  readonly durationMs: number;
  readonly logPath: string;
  /**
   * The config that actually ran, read back from the file the trial executed (a user's
   * train.py: every top-level constant); absent when the trainer does not read it back.
   */
  readonly ranConfig?: Config;
  /** The git commit holding the script that ran (a user's train.py in a repository). */
  readonly commit?: string;
  /** The interpreter that ran the trial, when a Python trainer did. */
  readonly python?: string;
}

/** Anything that can run a trial: the Python trainer, a user's train.py, or a stub in benchmarks. */
export interface Trainer {
  run(request: TrialRequest): Promise<TrialOutcome>;
  /**
   * Called when a run starts or resumes, with the commit of the incumbent so far (null: none
   * yet): a trainer that keeps history (git) puts its branch there.
   */
  begin?(incumbentCommit: string | null): Promise<void> | void;
  /** Called after the loop stored a trial: a trainer that keeps history (git) drops a discarded one. */
  judged?(trial: {
    readonly commit: string | null;
    readonly kept: boolean;
    readonly kind: string;
  }): Promise<void> | void;
}
