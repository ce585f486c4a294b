// The host's side of the compiler process (compiler-server.ts): it starts the process (from the
// snapshot when it can, see compiler-blob.ts), sends one compile at a time, SIGKILLs the process on
// a missed deadline, and starts a new one for the next compile after a kill or a crash. The process
// runs with a V8 heap cap; it runs no guest code (the isolates are in the sandbox child), only the
// TypeScript compiler on the mechanism's text, so a pathological file can hang or crash only it.
import { type ChildProcess, spawn } from "node:child_process";
import { accessSync, constants, mkdirSync } from "node:fs";
import module from "node:module";
import path from "node:path";
import type { Readable, Writable } from "node:stream";
import type { Failure } from "./child-process.ts";
import type { CompileResult } from "./compiler.ts";
import {
  buildBlob,
  type CompilerStart,
  discardBlob,
  findBlob,
  PLAIN_START,
  snapshotStart,
} from "./compiler-blob.ts";
import { LineReader, MAX_LINE_CHARS } from "./protocol.ts";
import { compilerAnswerSchema } from "./schemas.ts";
import { validator } from "./validation.ts";

export interface CompilerOptions {
  /** V8 heap cap of the compiler process in MB. */
  readonly heapMb: number;
  /** Deadline for the process to say it is ready, in ms (a snapshot's build is not counted). */
  readonly startTimeoutMs: number;
  /** The snapshot's folder (compiler-blob.ts); null: always the plain start. */
  readonly cacheDir: string | null;
  /** Says, once, that the snapshot is being built (a user waits for it). */
  readonly notice: (line: string) => void;
}

type Answer =
  | { readonly ready: true }
  | { readonly id: number; readonly result: CompileResult; readonly mappings?: string }
  | { readonly id: number; readonly mappings: string | null }
  | { readonly id: number; readonly invalid: string };
type Reply = Exclude<Answer, { ready: true }>;

/** A compile's result, and the source map's mappings of its JS when it compiled (null: none). */
export interface Compiled {
  readonly result: CompileResult;
  readonly mappings: string | null;
}

const isAnswer = validator<Answer>(compilerAnswerSchema);

/** One running compiler process. */
class CompilerProcess {
  private readonly proc: ChildProcess;
  private readonly pending = new Map<number, (reply: Reply | Failure) => void>();
  private nextId = 1;
  private stderrTail = "";
  private killedFor: Failure | null = null;
  private readyResolve: ((ok: boolean) => void) | null = null;
  readonly exited: Promise<void>;
  alive = true;

  constructor(start: CompilerStart, heapMb: number) {
    const args = [`--max-old-space-size=${heapMb}`, ...start.args];
    // No core dumps from aborts; only TZ and Node's compile cache reach it (its own folder, as the child's).
    const script = 'ulimit -c 0 2>/dev/null; unset PWD OLDPWD; exec "$@"';
    this.proc = spawn("/bin/sh", ["-c", script, "sh", process.execPath, ...args], {
      stdio: ["pipe", "pipe", "pipe"],
      env: compilerEnv(),
    });
    this.exited = new Promise((resolve) => {
      this.proc.once("exit", () => resolve());
      this.proc.once("error", () => resolve());
    });
    void this.exited.then(() => this.onExit());
    const stderr = this.proc.stderr as Readable;
    stderr.setEncoding("utf8");
    stderr.on("data", (chunk: string) => {
      this.stderrTail = (this.stderrTail + chunk).slice(-4096);
    });
    const stdout = this.proc.stdout as Readable;
    stdout.setEncoding("utf8");
    const reader = new LineReader(
      MAX_LINE_CHARS,
      (line) => this.onLine(line),
      () => this.kill({ failure: "crashed", detail: "the compiler sent an oversized message" }),
    );
    stdout.on("data", (chunk: string) => reader.push(chunk));
    (this.proc.stdin as Writable).on("error", () => {});
  }

  /** Resolves true once the process says it is ready; false if it exits or misses `timeoutMs`. */
  ready(timeoutMs: number): Promise<boolean> {
    const ready = new Promise<boolean>((resolve) => {
      this.readyResolve = resolve;
    });
    const timer = setTimeout(() => this.readyResolve?.(false), timeoutMs);
    return Promise.race([ready, this.exited.then(() => false)]).finally(() => clearTimeout(timer));
  }

  /** The last lines of its stderr (why it did not start). */
  get stderr(): string {
    return this.stderrTail.trim().split("\n").slice(-3).join(" | ");
  }

  /** Send one request; its reply, or a Failure after SIGKILL on the deadline. */
  request(body: { source: string; js?: string }, deadlineMs: number): Promise<Reply | Failure> {
    if (!this.alive) return Promise.resolve({ failure: "crashed", detail: "the compiler is not running" });
    const id = this.nextId++;
    return new Promise((resolve) => {
      const timer = setTimeout(
        () => this.kill({ failure: "timeout", detail: `no answer within ${deadlineMs} ms` }),
        deadlineMs,
      );
      this.pending.set(id, (reply) => {
        clearTimeout(timer);
        resolve(reply);
      });
      (this.proc.stdin as Writable).write(`${JSON.stringify({ id, ...body })}\n`);
    });
  }

  kill(reason: Failure): void {
    if (!this.alive) return;
    this.killedFor ??= reason;
    this.proc.kill("SIGKILL");
  }

  async close(): Promise<void> {
    if (!this.alive) return;
    (this.proc.stdin as Writable).end();
    const timer = setTimeout(() => this.kill({ failure: "crashed", detail: "closed" }), 2000);
    await this.exited;
    clearTimeout(timer);
  }

  private onLine(line: string): void {
    let message: unknown;
    try {
      message = JSON.parse(line);
    } catch {
      message = undefined;
    }
    if (!isAnswer(message)) {
      this.kill({ failure: "crashed", detail: "the compiler sent an invalid message" });
      return;
    }
    if ("ready" in message) {
      this.readyResolve?.(true);
      return;
    }
    const settle = this.pending.get(message.id);
    if (!settle) return;
    this.pending.delete(message.id);
    settle(message);
  }

  private onExit(): void {
    this.alive = false;
    const reason = this.killedFor ?? this.exitReason();
    for (const settle of this.pending.values()) settle(reason);
    this.pending.clear();
  }

  private exitReason(): Failure {
    if (/out of memory|heap limit|allocation failed/i.test(this.stderrTail)) {
      return { failure: "memory", detail: "the compiler ran out of memory" };
    }
    const signal = this.proc.signalCode;
    return {
      failure: "crashed",
      detail: `the compiler died (${signal ? `signal ${signal}` : `exit code ${String(this.proc.exitCode)}`})`,
    };
  }
}

/** TZ=UTC, and when the host uses Node's compile cache, a folder of the compiler's own beside it. */
function compilerEnv(): Record<string, string> {
  const env: Record<string, string> = { TZ: "UTC" };
  const hostCache = module.getCompileCacheDir?.();
  if (hostCache) env.NODE_COMPILE_CACHE = path.join(path.dirname(hostCache), "bilevel-compiler");
  return env;
}

/**
 * The host's compiler: one process at a time, started on the first compile (or by start(), to
 * overlap its start with other work), and again after a kill or a crash.
 */
export class Compiler {
  private readonly options: CompilerOptions;
  private process: Promise<CompilerProcess> | null = null;
  private closed = false;
  private starts = 0;
  private queue: Promise<unknown> = Promise.resolve();
  /** How the last process started: from a snapshot or plainly (for tests and diagnostics). */
  startedFrom: "snapshot" | "plain" | null = null;

  constructor(options: CompilerOptions) {
    this.options = options;
  }

  /** How many times a process was started after the first (after a kill or a crash). */
  get restarts(): number {
    return Math.max(0, this.starts - 1);
  }

  /** Start the process now if none is running or starting (failures are the next compile's). */
  start(): void {
    if (this.closed) return;
    this.process ??= this.spawn();
    this.process.catch(() => {});
  }

  /** Compile `source`: its result, or the Failure (after a SIGKILL on the deadline). */
  async compile(source: string, deadlineMs: number): Promise<Compiled | Failure> {
    const reply = await this.request({ source }, deadlineMs);
    if ("failure" in reply || "invalid" in reply) return failed(reply);
    return "result" in reply ? { result: reply.result, mappings: reply.mappings ?? null } : failed(reply);
  }

  /** The source map's mappings of `js`, compiled from `source` (null: it was not). */
  async mappings(source: string, js: string, deadlineMs: number): Promise<string | null | Failure> {
    const reply = await this.request({ source, js }, deadlineMs);
    if ("failure" in reply || "invalid" in reply || "result" in reply) return failed(reply);
    return reply.mappings;
  }

  /** One request at a time: a request's deadline is its own, not the time spent behind another. */
  private request(body: { source: string; js?: string }, deadlineMs: number): Promise<Reply | Failure> {
    const run = this.queue.then(async (): Promise<Reply | Failure> => {
      if (this.closed) return { failure: "crashed", detail: "the sandbox is closed" };
      let proc: CompilerProcess;
      try {
        proc = await this.live();
      } catch (e) {
        return { failure: "crashed", detail: e instanceof Error ? e.message : "the compiler did not start" };
      }
      const reply = await proc.request(body, deadlineMs);
      if ("failure" in reply) await proc.exited;
      return reply;
    });
    this.queue = run.catch(() => {});
    return run;
  }

  async close(): Promise<void> {
    this.closed = true;
    const proc = await this.process?.catch(() => null);
    await proc?.close();
  }

  /** The running process, or a new one (after a kill, a crash, or a failed start). */
  private async live(): Promise<CompilerProcess> {
    const current = await this.process?.catch(() => null);
    if (current?.alive) return current;
    // Closed meanwhile: no new process (nobody would close it, and its pipes would hold the host).
    if (this.closed) throw new Error("the sandbox is closed");
    this.process = this.spawn();
    const proc = await this.process;
    if (this.closed) {
      await proc.close();
      throw new Error("the sandbox is closed");
    }
    return proc;
  }

  private async spawn(): Promise<CompilerProcess> {
    this.starts++;
    const { start, fresh } = await this.chooseStart();
    try {
      return await this.launch(start);
    } catch (e) {
      if (start.blob === null) throw e;
      // A blob that does not start (damaged, or this Node cannot): the plain start, same answers.
      // It is discarded only if it exited and the plain start works: a start that was merely slow
      // (a loaded machine) or fails either way says nothing against the blob.
      const plain = await this.launch(PLAIN_START);
      if (!(e instanceof SlowStart)) discardBlob(start.blob, fresh);
      return plain;
    }
  }

  private async chooseStart(): Promise<{ start: CompilerStart; fresh: boolean }> {
    const dir = this.options.cacheDir;
    const found = dir === null ? ({ kind: "broken" } as const) : findBlob(dir);
    if (found.kind === "ready") return { start: snapshotStart(found.blob), fresh: false };
    if (found.kind === "broken" || dir === null || !writable(dir))
      return { start: PLAIN_START, fresh: false };
    this.options.notice("preparing the compiler (once, ~2 s)");
    try {
      return { start: snapshotStart(await buildBlob(dir)), fresh: true };
    } catch {
      return { start: PLAIN_START, fresh: false };
    }
  }

  private async launch(start: CompilerStart): Promise<CompilerProcess> {
    const proc = new CompilerProcess(start, this.options.heapMb);
    // While it starts: the validator of its answers is prepared now, not when the first one comes.
    isAnswer.warm();
    if (await proc.ready(this.options.startTimeoutMs)) {
      this.startedFrom = start.blob === null ? "plain" : "snapshot";
      return proc;
    }
    const slow = proc.alive;
    const detail = proc.stderr;
    proc.kill({ failure: "crashed", detail: "start failed" });
    await proc.exited;
    if (slow) throw new SlowStart(`the compiler did not start within ${this.options.startTimeoutMs} ms`);
    throw new Error(`the compiler did not start${detail ? `: ${detail}` : ""}`);
  }
}

/** Whether the blob could be written to `dir` (made if missing): else no build is tried or announced. */
function writable(dir: string): boolean {
  try {
    mkdirSync(dir, { recursive: true });
    accessSync(dir, constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

/** A start that missed its deadline while the process still ran. */
class SlowStart extends Error {}

/** A reply that is not the one asked for: the host's bug or the compiler's, as the compiler's failure. */
function failed(reply: Reply | Failure): Failure {
  if ("failure" in reply) return reply;
  return {
    failure: "crashed",
    detail: "invalid" in reply ? reply.invalid : "the compiler answered another request",
  };
}
