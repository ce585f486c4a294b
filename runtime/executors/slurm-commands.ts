// Slurm's own client commands, run as child processes: sbatch, squeue, scontrol, scancel. The
// cluster is found the way those commands find it (SLURM_CONF, or /etc/slurm).
import { execFile } from "node:child_process";
import { ExecutorError } from "./types.ts";

export interface CommandResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Run one Slurm command; never throws for its exit status (a missing command is an ExecutorError). */
export function slurm(command: string, args: readonly string[]): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    execFile(command, args, { timeout: 60_000, maxBuffer: 1 << 20 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === "number" ? error.code : null) : 0;
      if (error && (error as NodeJS.ErrnoException).code === "ENOENT") {
        reject(
          new ExecutorError(
            `${command} is not installed here: the slurm executor needs Slurm's client commands (sbatch, squeue, scontrol, scancel) on this machine`,
          ),
        );
        return;
      }
      resolve({ code: code ?? 1, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

/** Slurm job states in which the job may still run (held or queued included). */
const ACTIVE = new Set([
  "PENDING",
  "RUNNING",
  "CONFIGURING",
  "COMPLETING",
  "REQUEUED",
  "RESIZING",
  "SUSPENDED",
  "STOPPED",
  "SIGNALING",
  "STAGE_OUT",
  "REQUEUE_HOLD",
  "REQUEUE_FED",
]);

export const isActive = (state: string | null): boolean => state !== null && ACTIVE.has(state);

/**
 * A job's state: squeue while it is queued or running, then `scontrol show job` (which knows it
 * for MinJobAge after it ends, without an accounting database); null once Slurm forgot it.
 */
export async function jobState(jobId: string): Promise<string | null> {
  const q = await slurm("squeue", ["-h", "-j", jobId, "-o", "%T"]);
  const state = q.code === 0 ? q.stdout.trim() : "";
  if (state !== "") return state;
  const s = await slurm("scontrol", ["show", "job", "-o", jobId]);
  return s.code === 0 ? (/\bJobState=(\S+)/.exec(s.stdout)?.[1] ?? null) : null;
}

/** sbatch's refusal in one line (its error lines, without the "sbatch: error:" prefix). */
export function refusal(result: CommandResult): string {
  const lines = `${result.stderr}\n${result.stdout}`
    .split("\n")
    .map((l) => l.replace(/^sbatch: error: /, "").trim())
    .filter((l) => l !== "" && !l.startsWith("sbatch: Job "));
  return lines.join("; ") || `exit status ${result.code}`;
}
