// One process at a time per run folder: a lock file (run.lock) holds the pid of the process running
// or resuming the run. A second process is refused; a lock whose process is gone (a killed run) is
// taken over, since the store's checkpoints make the resume exact.
import { readFileSync, unlinkSync, writeFileSync } from "node:fs";
import path from "node:path";
import { UserError } from "./errors.ts";

const LOCK_FILE = "run.lock";

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    // EPERM: it exists but belongs to someone else.
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
  return !exited(pid);
}

/**
 * A process that has exited but not been reaped (state Z) still answers kill(pid, 0). A killed
 * run's orphans are reaped by PID 1, which in a container can take seconds: it holds nothing.
 */
function exited(pid: number): boolean {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return false; // no /proc (not Linux): trust kill(pid, 0)
  }
  const state = stat.slice(stat.lastIndexOf(")") + 2).charAt(0);
  return state === "Z" || state === "X";
}

/** The pid of the live process that holds the run folder, or null (no lock, or its process is gone). */
export function runLockHolder(dir: string): number | null {
  let pid: number;
  try {
    pid = Number(JSON.parse(readFileSync(path.join(dir, LOCK_FILE), "utf8")).pid);
  } catch {
    return null;
  }
  return Number.isSafeInteger(pid) && pid > 0 && alive(pid) ? pid : null;
}

/** Take the run folder's lock for this process; returns the release function. */
export function acquireRunLock(dir: string): () => void {
  const file = path.join(dir, LOCK_FILE);
  const record = `${JSON.stringify({ pid: process.pid, started: new Date().toISOString() })}\n`;
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(file, record, { flag: "wx" });
      return () => release(file);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
    }
    const holder = runLockHolder(dir);
    if (holder !== null && holder !== process.pid) {
      throw new UserError(
        `${dir} is in use by process ${holder} (a run or a resume of this run is going on); wait for it or stop it first`,
        2,
      );
    }
    // A stale lock (its process is gone): take it over.
    unlinkSync(file);
  }
  throw new UserError(`${dir}: could not take the run lock (${file})`, 2);
}

function release(file: string): void {
  try {
    if (Number(JSON.parse(readFileSync(file, "utf8")).pid) === process.pid) unlinkSync(file);
  } catch {
    // Already gone.
  }
}
