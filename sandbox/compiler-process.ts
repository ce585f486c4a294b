// The host's side of the compiler process (compiler-server.ts): it starts the process (from the
// snapshot when it can, see compiler-blob.ts), sends one compile at a time, SIGKILLs the process on
// a missed deadline, and starts a new one for the next compile after a kill or a crash. The process
// runs with a V8 heap cap; it runs no guest code (the isolates are in the sandbox child), only the
// TypeScript compiler on the mechanism's text, so a pathological file can hang or crash only it.
import { accessSync, constants, mkdirSync } from "node:fs";
import type { CompileResult } from "./compiler.ts";
import {
  buildBlob,
  type CompilerStart,
  discardBlob,
  findBlob,
  PLAIN_START,
  snapshotStart,
} from "./compiler-blob.ts";
import { type Failure, LineProcess, lineProcessEnv, type Routed } from "./line-process.ts";
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
class CompilerProcess extends LineProcess<Answer> {
  constructor(start: CompilerStart, heapMb: number) {
    super({
      args: [`--max-old-space-size=${heapMb}`, ...start.args],
      // Only TZ and Node's compile cache reach it (its own folder, as the child's).
      env: lineProcessEnv("bilevel-compiler"),
      channel: "stdout",
      name: "the compiler",
      stderrChars: 4096,
      isMessage: isAnswer,
      isReady: (message) => "ready" in message,
    });
  }

  /** Send one request; its reply, or a Failure after SIGKILL on the deadline. */
  request(body: { source: string; js?: string }, deadlineMs: number): Promise<Reply | Failure> {
    // route() passes on only answers with an id, never the ready line.
    return this.send(JSON.stringify(body), deadlineMs) as Promise<Reply | Failure>;
  }

  protected route(message: Answer): Routed<Answer> | null {
    return "id" in message ? { id: message.id, partial: false, message } : null;
  }

  protected exitReason(): Failure {
    if (/out of memory|heap limit|allocation failed/i.test(this.stderrText)) {
      return { failure: "memory", detail: "the compiler ran out of memory" };
    }
    return { failure: "crashed", detail: `the compiler died (${this.exitStatus()})` };
  }
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
