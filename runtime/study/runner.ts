// Runs a study's runs as child processes (`bilevel run`, each in its own folder), at most `jobs`
// at once, each pinned to its slot (runtime/study/slots.ts; not when its trials go to Slurm). Resumable as a whole: a finished run
// is never started again, an unfinished one is continued with `run --resume` (its store skips
// every committed trial), and a run process left over from a killed study is stopped first, so
// no two processes ever write one store. The study records each run process's pid in its folder
// (run.pid) right after starting it, and the run touches its folder only once it is recorded (it
// quits if the study is gone first): a resume therefore knows every process it must wait for.
import { spawn } from "node:child_process";
import {
  closeSync,
  existsSync,
  fstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { UserError } from "../errors.ts";
import { stoppedBy } from "../stop-signals.ts";
import { safeText } from "../terminal-text.ts";
import {
  type Attempt,
  appendAttempt,
  type RunState,
  readAttempts,
  readRunPid,
  runDir,
  runPidPath,
  runState,
  type StudyFile,
} from "./layout.ts";
import { runPool, slotLaunch } from "./slots.ts";
import type { StudyRunSpec } from "./spec.ts";

const CLI = path.resolve(import.meta.dirname, "../cli.ts");
/** How much of a failed run's log is read for its last error line. */
const TAIL_BYTES = 64 * 1024;
/** How a run process is started: this Node with the launcher's flags on runtime/cli.ts. */
export const CLI_ARGV: readonly string[] = [
  process.execPath,
  "--no-node-snapshot",
  "--disable-warning=ExperimentalWarning",
  CLI,
];

/** Names, in a run process's environment, the pid of the study that started it. */
export const STUDY_PARENT_ENV = "BILEVEL_STUDY_PARENT";

/** The pid of the study that started this process, or undefined (not started by a study). */
export function studyParent(): number | undefined {
  const parent = Number(process.env[STUDY_PARENT_ENV]);
  return Number.isInteger(parent) && parent > 0 ? parent : undefined;
}

/**
 * For a run started by study `parent`, before it touches `folder`: true once the study has recorded
 * this process in run.pid, false if the study is gone first. A study killed between starting a run
 * and recording its pid leaves a process that its resume cannot see (it would start the run afresh
 * beside it), so on false the run must quit without touching anything.
 */
export async function recordedByStudy(
  folder: string,
  parent: number,
  { pollMs = 20, giveUpMs = 60_000 }: { pollMs?: number; giveUpMs?: number } = {},
): Promise<boolean> {
  const giveUp = Date.now() + giveUpMs;
  for (;;) {
    if (readRunPid(folder) === process.pid) return true;
    // Re-parented: the study died before recording this process.
    if (process.ppid !== parent) return false;
    if (Date.now() > giveUp)
      throw new UserError(`the study (process ${parent}) did not record this run in ${runPidPath(folder)}`);
    await sleep(pollMs);
  }
}

export interface RunnerOptions {
  readonly jobs: number;
  readonly log: (line: string) => void;
  readonly signal?: AbortSignal;
}

export interface RunnerSummary {
  /** Run processes started by this call. */
  readonly started: number;
  /** Runs whose process exited non-zero (they are continued by the next `bilevel study`). */
  readonly failed: readonly FailedRun[];
}

export interface FailedRun {
  readonly id: string;
  /** How its last attempt ended: "exit 1", "killed by SIGKILL". */
  readonly ended: string;
  /** What that attempt printed last in run.log ("bilevel: …", else its last line); null: nothing. */
  readonly reason: string | null;
  /** How many of its attempts in a row, the last one included, ended so with that line. */
  readonly sameInARow: number;
}

export async function runStudy(
  dir: string,
  study: StudyFile,
  options: RunnerOptions,
): Promise<RunnerSummary> {
  const states = new Map(study.runs.map((r) => [r.id, runState(runDir(dir, r.id))]));
  const todo = study.runs.filter((r) => states.get(r.id) !== "finished");
  const done = study.runs.length - todo.length;
  const begun = (state: RunState | undefined) => state !== "not started" && state !== "empty";
  const resumed = todo.filter((r) => begun(states.get(r.id))).map((r) => r.id);
  if (done > 0 || resumed.length > 0) {
    const named =
      resumed.length > 10
        ? `${resumed.slice(0, 10).join(", ")} and ${resumed.length - 10} more`
        : resumed.join(", ");
    const verb = resumed.length === 1 ? "continues where it stopped" : "continue where they stopped";
    const continuing = resumed.length > 0 ? ` (${resumed.length} ${verb}: ${named})` : "";
    options.log(`${done} of ${study.runs.length} runs already finished; ${todo.length} to go${continuing}`);
  }
  const failed: FailedRun[] = [];
  const live = new Set<number>();
  const onAbort = () => {
    for (const pid of live) signalPid(pid, "SIGTERM");
  };
  options.signal?.addEventListener("abort", onAbort);
  let finished = done;
  let started = 0;
  try {
    await runPool(todo, options.jobs, async (run, slot) => {
      if (options.signal?.aborted) return;
      started++;
      const attempt = await launchRun(dir, study, run, slot, options.jobs, live);
      finished++;
      let verdict = "finished";
      const stop = stoppedBy(attempt.exitCode);
      if (stop !== null && options.signal?.aborted) {
        // Stopped with the study: it continues where it stopped, nothing failed.
        verdict = `stopped (${stop}; it continues with the study)`;
      } else if (attempt.exitCode !== 0) {
        const failure = failedRun(dir, attempt);
        failed.push(failure);
        verdict = `failed (${failure.ended}; see runs/${run.id}/run.log)${failure.reason ? `: ${failure.reason}` : ""}`;
      }
      options.log(`[${finished}/${study.runs.length}] ${run.id} ${verdict}`);
    });
  } finally {
    options.signal?.removeEventListener("abort", onAbort);
  }
  return { started, failed };
}

/** A failed attempt as the study reports it, with how many of the run's attempts in a row failed alike. */
function failedRun(dir: string, last: Attempt): FailedRun {
  const ended = (a: Attempt) => {
    const stop = stoppedBy(a.exitCode);
    if (a.signal) return `killed by ${a.signal}`;
    return stop ? `stopped by ${stop} (exit ${a.exitCode})` : `exit ${a.exitCode}`;
  };
  const attempts = readAttempts(dir).filter((a) => a.run === last.run);
  let sameInARow = 0;
  for (let i = attempts.length - 1; i >= 0; i--, sameInARow++) {
    const a = attempts[i]!;
    if (ended(a) !== ended(last) || a.error !== last.error) break;
  }
  return {
    id: last.run,
    ended: ended(last),
    reason: last.error ?? null,
    sameInARow: Math.max(1, sameInARow),
  };
}

/**
 * The last "bilevel: " line of the log from byte `from` on (this attempt's part of it; at most its
 * final 64 KiB), else its last line, made safe for a terminal; null when there is none.
 */
export function lastErrorLine(file: string, from = 0): string | null {
  let text: string;
  try {
    const fd = openSync(file, "r");
    try {
      const size = fstatSync(fd).size;
      const start = Math.max(from, size - TAIL_BYTES);
      const length = Math.max(0, size - start);
      const buffer = Buffer.alloc(length);
      readSync(fd, buffer, 0, length, start);
      text = buffer.toString("utf8");
    } finally {
      closeSync(fd);
    }
  } catch {
    return null;
  }
  const lines = text
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "");
  const line = lines.findLast((l) => l.startsWith("bilevel: ")) ?? lines.at(-1);
  return line === undefined ? null : safeText(line, { maxLength: 300 });
}

/** One run process, from start to exit: the attempt it made (also appended to attempts.jsonl). */
async function launchRun(
  dir: string,
  study: StudyFile,
  run: StudyRunSpec,
  slot: number,
  jobs: number,
  live: Set<number>,
): Promise<Attempt> {
  const folder = runDir(dir, run.id);
  mkdirSync(folder, { recursive: true });
  const configFile = path.join(folder, "config.json");
  if (!existsSync(configFile)) writeFileSync(configFile, `${JSON.stringify(run.config, null, 2)}\n`);
  await stopLeftover(folder);
  const state: RunState = runState(folder);
  if (state === "empty") removeEmptyStore(folder);
  const fresh = state === "not started" || state === "empty";
  const args = fresh ? ["run", "--config", configFile, "--out", folder] : ["run", "--resume", folder];
  if (study.spec.offline) args.push("--offline");
  const device = run.config.device === "cuda" ? "cuda" : "cpu";
  // A run whose trials go to Slurm takes no slot of this machine: its trials run on the cluster's
  // nodes (so --jobs may exceed the cores here, and a study can fill the cluster).
  const onSlurm = (run.config.executor as { kind?: string } | undefined)?.kind === "slurm";
  const launch = onSlurm ? { prefix: [], env: {} } : slotLaunch(slot, jobs, device);
  const argv = [...launch.prefix, ...CLI_ARGV, ...args];
  const logFile = path.join(folder, "run.log");
  const logFd = openSync(logFile, "a");
  const logStart = fstatSync(logFd).size;
  const startedAt = new Date();
  const child = spawn(argv[0] as string, argv.slice(1), {
    stdio: ["ignore", logFd, logFd],
    // The run stops itself when this process goes away (commands/run.ts watches its parent).
    env: { ...process.env, ...launch.env, [STUDY_PARENT_ENV]: String(process.pid) },
  });
  const pidFile = runPidPath(folder);
  // The child waits for this before it touches the folder (recordedByStudy); its pid is the run's
  // own, since the slot's prefix (taskset) execs the command.
  if (child.pid !== undefined) {
    live.add(child.pid);
    writeFileSync(pidFile, String(child.pid));
  }
  const exit = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on("error", () => resolve({ code: 127, signal: null }));
    child.on("exit", (code, signal) => resolve({ code, signal }));
  });
  if (child.pid !== undefined) live.delete(child.pid);
  closeSync(logFd);
  rmSync(pidFile, { force: true });
  // A clean stop (Ctrl-C, SIGTERM, a hang-up) is no error: its log ends with how to look again.
  const error = exit.code === 0 || stoppedBy(exit.code) !== null ? null : lastErrorLine(logFile, logStart);
  const attempt: Attempt = {
    run: run.id,
    startedAt: startedAt.toISOString(),
    seconds: (Date.now() - startedAt.getTime()) / 1000,
    exitCode: exit.code,
    signal: exit.signal,
    ...(error === null ? {} : { error }),
  };
  appendAttempt(dir, attempt);
  return attempt;
}

function signalPid(pid: number, signal: NodeJS.Signals | 0): boolean {
  try {
    process.kill(pid, signal);
    return true;
  } catch {
    return false;
  }
}

/** Whether `pid` is a live process whose command line names `folder` (not a reused pid). */
function isRunProcess(pid: number, folder: string): boolean {
  if (!signalPid(pid, 0)) return false;
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(folder);
  } catch {
    return true; // no /proc: trust the pid file
  }
}

/**
 * A run process left by a killed study (it stops itself; this makes sure before a resume). Only the
 * process in run.pid can be one: a run the study did not record quits untouched (recordedByStudy).
 * Its children go with it (the trainer's die with their parent, the sandbox's on their stdin's end).
 */
async function stopLeftover(folder: string): Promise<void> {
  const pid = readRunPid(folder);
  if (pid !== null && isRunProcess(pid, folder)) {
    signalPid(pid, "SIGTERM");
    for (let waited = 0; isRunProcess(pid, folder); waited += 100) {
      if (waited >= 15_000) signalPid(pid, "SIGKILL");
      await sleep(100);
    }
  }
  rmSync(runPidPath(folder), { force: true });
}

/** A run.db without a config: the run was killed before it wrote anything; start it afresh. */
function removeEmptyStore(folder: string): void {
  for (const f of ["run.db", "run.db-wal", "run.db-shm"]) rmSync(path.join(folder, f), { force: true });
}
