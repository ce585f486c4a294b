// The files a Slurm job and the run process share in the trial folder: job.json (what to run),
// started.json and outcome.json (written by the job, each whole, by rename).
import { renameSync, writeFileSync } from "node:fs";
import type { TrialRequest } from "../../trainer/types.ts";
import type { ResolvedRunConfig } from "../config.ts";

/** The job's description, written by the slurm executor. */
export interface JobFile {
  readonly config: ResolvedRunConfig;
  readonly request: Omit<TrialRequest, "signal" | "onProgress">;
  /** The environment the trainer may see (the run's allow-list, applied on the submitting side). */
  readonly env: Readonly<Record<string, string>>;
}

export const STARTED_FILE = "started.json";
export const OUTCOME_FILE = "outcome.json";

export function writeWhole(file: string, value: unknown): void {
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(value)}\n`);
  renameSync(tmp, file);
}
