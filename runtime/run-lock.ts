// One process at a time per run folder: a lock file (run.lock) holds the pid of the process running
// or resuming the run, and when it started (Linux: its start time in clock ticks since boot, from
// /proc). A second process is refused; a lock whose process is gone (a killed run) is taken over,
// since the store's checkpoints make the resume exact. The start time tells a gone holder from
// another process that got its pid since (pids wrap around at pid_max, 32768 on many machines).
import { readFileSync, rmdirSync, unlinkSync, writeFileSync } from "node:fs";
import path from "node:path";
import { procStat } from "../trainer/process.ts";
import { UserError } from "./errors.ts";
import { makeRunFolder } from "./store.ts";

const LOCK_FILE = "run.lock";

/** Whether `pid` is the live process that took the lock (`ticks`: its start time, when recorded). */
function alive(pid: number, ticks: string | undefined): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    // EPERM: it exists but belongs to someone else.
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
  const stat = procStat(pid);
  if (stat === null) return true; // no /proc (not Linux): trust kill(pid, 0)
  // A process that has exited but not been reaped (state Z) still answers kill(pid, 0); a killed
  // run's orphans are reaped by PID 1, which in a container can take seconds: it holds nothing.
  if (stat.state === "Z" || stat.state === "X") return false;
  return ticks === undefined || stat.startTicks === ticks;
}

/** The pid of the live process that holds the run folder, or null (no lock, or its process is gone). */
export function runLockHolder(dir: string): number | null {
  let pid: number;
  let ticks: string | undefined;
  try {
    const record = JSON.parse(readFileSync(path.join(dir, LOCK_FILE), "utf8")) as {
      pid?: unknown;
      startTicks?: unknown;
    };
    pid = Number(record.pid);
    // Locks written before the start time was recorded have none: the pid alone decides.
    ticks = typeof record.startTicks === "string" ? record.startTicks : undefined;
  } catch {
    return null;
  }
  return Number.isSafeInteger(pid) && pid > 0 && alive(pid, ticks) ? pid : null;
}

/** Take the run folder's lock for this process; returns the release function. */
export function acquireRunLock(dir: string): () => void {
  const file = path.join(dir, LOCK_FILE);
  const startTicks = procStat("self")?.startTicks;
  const record = `${JSON.stringify({ pid: process.pid, started: new Date().toISOString(), ...(startTicks ? { startTicks } : {}) })}\n`;
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

/**
 * A run's hold on its folder for one process: a resume takes the lock at once; a new run claims
 * its folder (creating it) and the lock just before its first costly step (the LLM check, a paid
 * request), so that a second new run on the same folder is refused before paying for its own. On
 * release, the folders a claim created go again if the run wrote nothing in them: a run refused
 * at its LLM check leaves nothing behind.
 */
export class RunFolderLock {
  private readonly dir: string;
  private unlock: (() => void) | null = null;
  private created: string[] = [];

  constructor(dir: string) {
    this.dir = dir;
  }

  get held(): boolean {
    return this.unlock !== null;
  }

  /** Take the lock of an existing folder (a resume). */
  take(): void {
    this.unlock ??= acquireRunLock(this.dir);
  }

  /** Create the folder if it is missing, then take its lock (a new run). */
  claimNew(): void {
    if (this.held) return;
    this.created = makeRunFolder(this.dir);
    try {
      this.take();
    } catch (error) {
      this.removeCreated();
      throw error;
    }
  }

  /** Give the lock up; remove the folders the claim made if nothing was written in them. */
  release(): void {
    this.unlock?.();
    this.unlock = null;
    this.removeCreated();
  }

  private removeCreated(): void {
    for (const folder of this.created.reverse()) {
      try {
        rmdirSync(folder); // only an empty one: anything written there stays
      } catch {
        break;
      }
    }
    this.created = [];
  }
}
