// A Node process the host talks to in JSON lines, one request and one answer each, matched by id:
// what the sandbox child (child-process.ts) and the compiler process (compiler-process.ts) share.
// It is started through /bin/sh without core dumps and with only the environment it is given,
// says {"ready"...} once it can take requests, gets a deadline per request (missed: SIGKILL), and
// on exit settles every pending request with why it ended. What a line may be is the caller's
// (a validator); a line that is not JSON or not valid ends the process.
import { type ChildProcess, spawn } from "node:child_process";
import module from "node:module";
import path from "node:path";
import type { Readable, Writable } from "node:stream";
import { LineReader, MAX_LINE_CHARS } from "./protocol.ts";

export type Failure = { readonly failure: "timeout" | "crashed" | "memory"; readonly detail: string };

/**
 * A LineProcess's whole environment: `extra`, TZ=UTC (its views of time must not depend on the
 * machine) and, when the host uses Node's compile cache, a cache folder of its own (`cacheName`)
 * beside the host's: never the host's folder, so that nothing the host loads from its cache was
 * written by another process.
 */
export function lineProcessEnv(
  cacheName: string,
  extra: Record<string, string> = {},
): Record<string, string> {
  const env: Record<string, string> = { ...extra, TZ: "UTC" };
  const hostCache = module.getCompileCacheDir?.();
  if (hostCache) env.NODE_COMPILE_CACHE = path.join(path.dirname(hostCache), cacheName);
  return env;
}

export interface LineProcessSpec<M> {
  /** Node's arguments (flags, then the entry and its own). */
  readonly args: readonly string[];
  /** Its whole environment (nothing of the host's is added). */
  readonly env: Record<string, string>;
  /** Where its answers come: stdout, or a pipe on fd 3 (stdout then goes nowhere). */
  readonly channel: "stdout" | "fd3";
  /** How it is named in failures ("the sandbox child"). */
  readonly name: string;
  /** How much of its stderr is kept (for why it ended). */
  readonly stderrChars: number;
  readonly isMessage: ((value: unknown) => value is M) & { explain(): string };
  /** Whether a message is its "ready" line. */
  readonly isReady: (message: M) => boolean;
}

/** A message that answers request `id`; `partial`: one of several lines of that answer. */
export type Routed<M> = { readonly id: number; readonly partial: boolean; readonly message: M };

interface Pending<M> {
  readonly resolve: (reply: M | Failure) => void;
  readonly timer: NodeJS.Timeout;
  readonly onPartial: ((message: M) => void) | undefined;
}

export abstract class LineProcess<M extends object> {
  protected readonly proc: ChildProcess;
  private readonly spec: LineProcessSpec<M>;
  private readonly pending = new Map<number, Pending<M>>();
  private nextId = 1;
  private stderrTail = "";
  private killedFor: Failure | null = null;
  private readyResolve: ((ok: boolean) => void) | null = null;
  readonly exited: Promise<void>;
  alive = true;

  protected constructor(spec: LineProcessSpec<M>) {
    this.spec = spec;
    // No core dumps from aborts; only `env` (the shell would add PWD, so it is unset).
    const script = 'ulimit -c 0 2>/dev/null; unset PWD OLDPWD; exec "$@"';
    const stdio = spec.channel === "fd3" ? ["pipe", "ignore", "pipe", "pipe"] : ["pipe", "pipe", "pipe"];
    this.proc = spawn("/bin/sh", ["-c", script, "sh", process.execPath, ...spec.args], {
      stdio: stdio as ("pipe" | "ignore")[],
      env: spec.env,
    });
    this.exited = new Promise((resolve) => {
      this.proc.once("exit", () => resolve());
      this.proc.once("error", () => resolve());
    });
    void this.exited.then(() => this.settleAll());
    const stderr = this.proc.stderr as Readable;
    stderr.setEncoding("utf8");
    stderr.on("data", (chunk: string) => {
      this.stderrTail = (this.stderrTail + chunk).slice(-spec.stderrChars);
    });
    const channel = (spec.channel === "fd3" ? this.proc.stdio[3] : this.proc.stdout) as Readable;
    channel.setEncoding("utf8");
    const reader = new LineReader(
      MAX_LINE_CHARS,
      (line) => this.onLine(line),
      () => this.kill({ failure: "crashed", detail: `${spec.name} sent an oversized message` }),
    );
    channel.on("data", (chunk: string) => reader.push(chunk));
    channel.on("error", () => {});
    (this.proc.stdin as Writable).on("error", () => {});
  }

  /** Resolves true once it says it is ready; false if it exits or misses `timeoutMs`. */
  ready(timeoutMs: number): Promise<boolean> {
    const ready = new Promise<boolean>((resolve) => {
      this.readyResolve = resolve;
    });
    const timer = setTimeout(() => this.readyResolve?.(false), timeoutMs);
    return Promise.race([ready, this.exited.then(() => false)]).finally(() => clearTimeout(timer));
  }

  get pid(): number | undefined {
    return this.proc.pid;
  }

  /** The last lines of its stderr (why it did not start). */
  get stderr(): string {
    return this.stderrTail.trim().split("\n").slice(-3).join(" | ");
  }

  /** All of its stderr that is kept. */
  protected get stderrText(): string {
    return this.stderrTail;
  }

  /**
   * Send one request (`json`: an object's JSON without `id`); its answer, or a Failure after
   * SIGKILL on the deadline. Each partial line (`onPartial`) starts the deadline afresh.
   */
  protected send(json: string, deadlineMs: number, onPartial?: (message: M) => void): Promise<M | Failure> {
    if (!this.alive)
      return Promise.resolve({ failure: "crashed", detail: `${this.spec.name} is not running` });
    const id = this.nextId++;
    return new Promise((resolve) => {
      const timer = setTimeout(
        () => this.kill({ failure: "timeout", detail: `no answer within ${deadlineMs} ms` }),
        deadlineMs,
      );
      this.pending.set(id, { resolve, timer, onPartial });
      (this.proc.stdin as Writable).write(`{"id":${id}${json === "{}" ? "}" : `,${json.slice(1)}`}\n`);
    });
  }

  /** SIGKILL; pending requests resolve with `reason` once the process is gone. */
  kill(reason: Failure): void {
    if (!this.alive) return;
    this.killedFor ??= reason;
    this.proc.kill("SIGKILL");
  }

  /** Ask it to exit (closing stdin), SIGKILL if it does not within a moment. */
  async close(): Promise<void> {
    if (!this.alive) return;
    (this.proc.stdin as Writable).end();
    const timer = setTimeout(() => this.kill({ failure: "crashed", detail: "closed" }), 2000);
    await this.exited;
    clearTimeout(timer);
  }

  /** Which request a (valid, not ready) message answers; null: none, and it is ignored. */
  protected abstract route(message: M): Routed<M> | null;

  /** Why it ended, when nobody killed it (from its stderr and exit status). */
  protected abstract exitReason(): Failure;

  /** Called once it has exited, before the pending requests are settled. */
  protected onExit(): void {}

  private onLine(line: string): void {
    let message: unknown;
    try {
      message = JSON.parse(line);
    } catch {
      this.kill({ failure: "crashed", detail: `${this.spec.name} sent a message that is not JSON` });
      return;
    }
    if (!this.spec.isMessage(message)) {
      this.kill({
        failure: "crashed",
        detail: `${this.spec.name} sent an invalid message: ${this.spec.isMessage.explain()}`,
      });
      return;
    }
    if (this.spec.isReady(message)) {
      this.readyResolve?.(true);
      return;
    }
    const routed = this.route(message);
    const entry = routed && this.pending.get(routed.id);
    if (!routed || !entry) return;
    if (routed.partial) {
      if (!entry.onPartial) {
        this.kill({ failure: "crashed", detail: `${this.spec.name} answered a single request in parts` });
        return;
      }
      entry.timer.refresh();
      entry.onPartial(routed.message);
      return;
    }
    this.pending.delete(routed.id);
    clearTimeout(entry.timer);
    entry.resolve(routed.message);
  }

  private settleAll(): void {
    this.alive = false;
    this.onExit();
    const reason = this.killedFor ?? this.exitReason();
    for (const { resolve, timer } of this.pending.values()) {
      clearTimeout(timer);
      resolve(reason);
    }
    this.pending.clear();
  }

  /** "signal SIGKILL" or "exit code 1". */
  protected exitStatus(): string {
    const signal = this.proc.signalCode;
    return signal ? `signal ${signal}` : `exit code ${String(this.proc.exitCode)}`;
  }
}
