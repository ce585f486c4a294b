// One supervised child process: its own process group (so a kill takes its children
// too), a hard deadline, AbortSignal support, output split into lines for parsing and
// copied to a log file. Never throws for anything the child does. Being detached, the
// child does not die with us by itself: it ties itself to BILEVEL_PARENT_PID (see
// trainer/parent_death.py). At the deadline every descendant is killed, found through /proc
// whatever session or group it moved to (the parent-death shim is a subreaper, so orphans
// stay its descendants), and the result comes even if something still holds the output pipe.
import { spawn } from "node:child_process";
import { createWriteStream, mkdirSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";

export interface ProcessOptions {
  readonly command: string;
  readonly args: readonly string[];
  readonly cwd: string;
  /** The child's whole environment (build it with childEnv: nothing else is inherited). */
  readonly env: Readonly<Record<string, string>>;
  /** Everything the child prints goes here (stdout and stderr, interleaved as received). */
  readonly logPath: string;
  /** The kill deadline, from the start (a `deadline` may move it while the process runs). */
  readonly timeoutMs: number;
  readonly deadline?: Deadline;
  readonly signal?: AbortSignal;
  /** Called for each line (split on \n and \r) of stdout or stderr. */
  readonly onLine?: (line: string, stream: "stdout" | "stderr") => void;
  /** Longer lines are cut to this many characters (default 64 KiB). */
  readonly maxLineChars?: number;
  /** The log stops growing after this many bytes (default 64 MiB). */
  readonly maxLogBytes?: number;
}

export interface ProcessResult {
  readonly exitCode: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly timedOut: boolean;
  readonly aborted: boolean;
  /** Set when the process could not be started at all. */
  readonly spawnError: string | null;
  /** The last few KB of stderr, for error messages. */
  readonly stderrTail: string;
  readonly durationMs: number;
}

const TAIL_CHARS = 4000;

/**
 * A kill deadline its owner can move while the process runs: the torch adapter gives the
 * start (data, model, cold compile) its own allowance and starts the budget's deadline at
 * the first progress record.
 */
export class Deadline {
  private move: ((ms: number) => void) | null = null;

  /** Kill the process `ms` from now instead (no effect before it starts or after it ends). */
  restart(ms: number): void {
    this.move?.(ms);
  }

  /** Used by runProcess. */
  bind(move: ((ms: number) => void) | null): void {
    this.move = move;
  }
}

class LineSplitter {
  private buffer = "";
  private dropping = false;
  private readonly max: number;
  private readonly emit: (line: string) => void;

  constructor(max: number, emit: (line: string) => void) {
    this.max = max;
    this.emit = emit;
  }

  push(chunk: string): void {
    let text = this.buffer + chunk;
    for (;;) {
      const i = text.search(/[\r\n]/);
      if (i < 0) break;
      const line = text.slice(0, i);
      text = text.slice(i + 1);
      if (!this.dropping) this.emit(line.length > this.max ? line.slice(0, this.max) : line);
      this.dropping = false;
    }
    if (text.length > this.max) {
      // An endless line: keep its head, skip the rest until the next newline.
      if (!this.dropping) this.emit(text.slice(0, this.max));
      this.dropping = true;
      text = "";
    }
    this.buffer = text;
  }

  end(): void {
    if (this.buffer && !this.dropping) this.emit(this.buffer);
    this.buffer = "";
  }
}

function killGroup(pid: number | undefined): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, "SIGKILL");
  } catch {
    // The group is already gone.
  }
}

function send(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // Already gone.
  }
}

/**
 * A process's state, parent and start time (clock ticks since boot), from /proc/PID/stat (Linux);
 * null where there is no such file (no /proc, or the process is gone).
 */
export function procStat(pid: number | "self"): { state: string; ppid: number; startTicks: string } | null {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return null;
  }
  // After the command name (which may hold spaces and parentheses): state is field 3, ppid 4,
  // starttime 22.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return { state: fields[0] ?? "", ppid: Number(fields[1]), startTicks: fields[19] ?? "" };
}

/** The live (not zombie) descendants of `root`, from /proc (Linux); empty where there is no /proc. */
export function descendants(root: number): number[] {
  let entries: string[];
  try {
    entries = readdirSync("/proc");
  } catch {
    return [];
  }
  const children = new Map<number, number[]>();
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = procStat(Number(entry));
    // Gone meanwhile, or exited and not reaped: no descendants of its own.
    if (stat === null || stat.state === "Z" || stat.state === "X") continue;
    const list = children.get(stat.ppid) ?? [];
    list.push(Number(entry));
    children.set(stat.ppid, list);
  }
  const out: number[] = [];
  const todo = [root];
  for (let pid = todo.pop(); pid !== undefined; pid = todo.pop()) {
    for (const child of children.get(pid) ?? []) {
      out.push(child);
      todo.push(child);
    }
  }
  return out;
}

/**
 * Kill `root` and everything below it. Each process is stopped first (a stopped process cannot
 * fork), sweeping until no new one appears, then all are SIGKILLed, with root's process group.
 */
export function killTree(root: number | undefined): void {
  if (root === undefined) return;
  send(root, "SIGSTOP");
  const stopped = new Set<number>();
  for (let sweep = 0; sweep < 50; sweep++) {
    const found = descendants(root).filter((pid) => !stopped.has(pid));
    if (found.length === 0) break;
    for (const pid of found) {
      send(pid, "SIGSTOP");
      stopped.add(pid);
    }
  }
  for (const pid of stopped) send(pid, "SIGKILL");
  killGroup(root);
  send(root, "SIGKILL");
}

/** After the command exits, how long its output may stay open (a leftover holding the pipe) before we stop reading. */
const DRAIN_MS = 5000;

export function runProcess(options: ProcessOptions): Promise<ProcessResult> {
  const started = Date.now();
  const maxLine = options.maxLineChars ?? 64 * 1024;
  const maxLog = options.maxLogBytes ?? 64 * 1024 * 1024;
  mkdirSync(path.dirname(options.logPath), { recursive: true });
  const log = createWriteStream(options.logPath);
  let logged = 0;
  const writeLog = (text: string) => {
    if (logged >= maxLog) return;
    const bytes = Buffer.byteLength(text);
    log.write(logged + bytes > maxLog ? `${text.slice(0, maxLog - logged)}\n[log truncated]\n` : text);
    logged += bytes;
  };
  const finish = (result: Omit<ProcessResult, "durationMs">): Promise<ProcessResult> =>
    new Promise((resolve) => log.end(() => resolve({ ...result, durationMs: Date.now() - started })));

  if (options.signal?.aborted) {
    return finish({
      exitCode: null,
      signal: null,
      timedOut: false,
      aborted: true,
      spawnError: null,
      stderrTail: "",
    });
  }

  return new Promise((resolve) => {
    let timedOut = false;
    let aborted = false;
    let stderrTail = "";
    const child = spawn(options.command, [...options.args], {
      cwd: options.cwd,
      // Lets a child that ties itself to us (trainer/parent_death.py) see that we died
      // before it could ask the kernel to tell it.
      env: { ...options.env, BILEVEL_PARENT_PID: String(process.pid) },
      detached: true, // its own process group: a kill reaches its children too
      stdio: ["ignore", "pipe", "pipe"],
    });
    const out = new LineSplitter(maxLine, (line) => options.onLine?.(line, "stdout"));
    const err = new LineSplitter(maxLine, (line) => options.onLine?.(line, "stderr"));
    child.stdout.setEncoding("utf8");
    child.stderr.setEncoding("utf8");
    child.stdout.on("data", (chunk: string) => {
      writeLog(chunk);
      out.push(chunk);
    });
    child.stderr.on("data", (chunk: string) => {
      writeLog(chunk);
      stderrTail = (stderrTail + chunk).slice(-TAIL_CHARS);
      err.push(chunk);
    });
    const expire = () => {
      timedOut = true;
      killTree(child.pid);
    };
    let timer = setTimeout(expire, options.timeoutMs);
    options.deadline?.bind((ms) => {
      if (timedOut) return;
      clearTimeout(timer);
      timer = setTimeout(expire, ms);
    });
    const onAbort = () => {
      aborted = true;
      killTree(child.pid);
    };
    options.signal?.addEventListener("abort", onAbort, { once: true });
    let spawnError: string | null = null;
    let settled = false;
    let drain: NodeJS.Timeout | undefined;
    const settle = (code: number | null, signal: NodeJS.Signals | null) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      clearTimeout(drain);
      options.deadline?.bind(null);
      options.signal?.removeEventListener("abort", onAbort);
      out.end();
      err.end();
      killGroup(child.pid); // leftovers (e.g. compile workers) go with their parent
      void finish({ exitCode: code, signal, timedOut, aborted, spawnError, stderrTail }).then(resolve);
    };
    child.on("error", (e) => {
      spawnError = e.message;
      if (child.pid === undefined) settle(null, null); // never started: no "close" is coming
    });
    child.on("close", settle);
    // A process that escaped (no shim, or not Linux) may keep the pipe open after the command
    // ended: the trial still ends, with what was read so far.
    child.on("exit", (code, sig) => {
      drain = setTimeout(() => {
        child.stdout.destroy();
        child.stderr.destroy();
        settle(code, sig);
      }, DRAIN_MS);
    });
  });
}
