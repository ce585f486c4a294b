// Host side of one sandbox child: spawn, line protocol, per-request deadlines, SIGKILL, and an RSS
// watchdog (the OS-level memory cap: RLIMIT_AS cannot work because every isolate reserves ~0.5 GB
// of address space, and RLIMIT_DATA stops V8 from reserving its code range at all).
import { type ChildProcess, spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import module from "node:module";
import path from "node:path";
import type { Readable, Writable } from "node:stream";
import { MEMORY_KILL_MARK } from "./memory-watchdog.ts";
import { isResponse, LineReader, MAX_LINE_CHARS, type Request, type Response } from "./protocol.ts";
import type { SandboxPolicy } from "./types.ts";

const CHILD_ENTRY = path.join(import.meta.dirname, "child.ts");
const PAGE_BYTES = 4096;

export type Failure = { readonly failure: "timeout" | "crashed" | "memory"; readonly detail: string };
export type Reply = Response | Failure;
export type Item = Extract<Response, { op: "item" }>;

interface Pending {
  readonly resolve: (reply: Reply) => void;
  readonly timer: NodeJS.Timeout;
  readonly onItem: ((item: Item) => void) | undefined;
}

export interface ChildOptions {
  readonly policy: SandboxPolicy;
  /** RSS cap for the whole child (its isolates); the watchdog SIGKILLs above it. */
  readonly memoryMb: number;
  /** V8 heap cap of the child's own Node heap (isolates have their own). */
  readonly heapMb: number;
  readonly startTimeoutMs: number;
  readonly watchdogIntervalMs: number;
  /** The filter chain's rule module (SandboxOptions.chainRule); "" or absent: none. */
  readonly chainRule?: string;
}

type Distributive<T> = T extends unknown ? Omit<T, "id"> : never;
export type RequestBody = Distributive<Request>;

/**
 * The child's environment: its policy, TZ=UTC (guest local-time views of the frozen clock must not
 * depend on the machine) and, when the host uses Node's compile cache, a cache folder of the
 * child's own beside it (its modules are most of its start): never the host's folder,
 * so that nothing the host loads from its cache was written by the process that runs guest code.
 */
function childEnv(policy: SandboxPolicy): Record<string, string> {
  const env: Record<string, string> = { BILEVEL_SANDBOX_POLICY: JSON.stringify(policy), TZ: "UTC" };
  const hostCache = module.getCompileCacheDir?.();
  if (hostCache) env.NODE_COMPILE_CACHE = path.join(path.dirname(hostCache), "bilevel-sandbox-child");
  return env;
}

export function isFailure(reply: Reply): reply is Failure {
  return "failure" in reply;
}

export class SandboxChild {
  private readonly proc: ChildProcess;
  private readonly pending = new Map<number, Pending>();
  private readonly watchdog: NodeJS.Timeout;
  private nextId = 1;
  private stderrTail = "";
  private killedFor: Failure | null = null;
  private readyResolve: ((ok: boolean) => void) | null = null;
  readonly exited: Promise<void>;
  alive = true;

  private constructor(options: ChildOptions) {
    const node = process.execPath;
    const args = [
      "--no-node-snapshot",
      `--max-old-space-size=${options.heapMb}`,
      "--disable-warning=ExperimentalWarning",
      CHILD_ENTRY,
      ...(options.chainRule ? ["--chain-rule", options.chainRule] : []),
    ];
    // No core dumps from aborts; a minimal environment (childEnv): no host variable reaches the
    // child (the shell would add PWD, so it is unset).
    const script = 'ulimit -c 0 2>/dev/null; unset PWD OLDPWD; exec "$@"';
    this.proc = spawn("/bin/sh", ["-c", script, "sh", node, ...args], {
      stdio: ["pipe", "ignore", "pipe", "pipe"],
      env: childEnv(options.policy),
    });
    this.exited = new Promise((resolve) => {
      this.proc.once("exit", () => resolve());
      this.proc.once("error", () => resolve());
    });
    void this.exited.then(() => this.onExit());
    const stderr = this.proc.stderr as Readable;
    stderr.setEncoding("utf8");
    stderr.on("data", (chunk: string) => {
      this.stderrTail = (this.stderrTail + chunk).slice(-8192);
    });
    const channel = this.proc.stdio[3] as Readable;
    channel.setEncoding("utf8");
    const reader = new LineReader(
      MAX_LINE_CHARS,
      (line) => this.onLine(line),
      () => this.kill({ failure: "crashed", detail: "the sandbox child sent an oversized message" }),
    );
    channel.on("data", (chunk: string) => reader.push(chunk));
    (this.proc.stdin as Writable).on("error", () => {});
    channel.on("error", () => {});
    this.watchdog = setInterval(() => void this.checkMemory(options.memoryMb), options.watchdogIntervalMs);
    this.watchdog.unref();
  }

  static async start(options: ChildOptions): Promise<SandboxChild> {
    const child = new SandboxChild(options);
    const ready = new Promise<boolean>((resolve) => {
      child.readyResolve = resolve;
    });
    const timer = setTimeout(() => child.readyResolve?.(false), options.startTimeoutMs);
    const ok = await Promise.race([ready, child.exited.then(() => false)]);
    clearTimeout(timer);
    if (!ok) {
      const detail = child.stderrTail.trim().split("\n").slice(-3).join(" | ");
      child.kill({ failure: "crashed", detail: "start failed" });
      await child.exited;
      throw new Error(`the sandbox child did not start${detail ? `: ${detail}` : ""}`);
    }
    return child;
  }

  get pid(): number | undefined {
    return this.proc.pid;
  }

  /**
   * Send one request (an object, or its JSON without `id`); resolve with its response, or with a
   * Failure after SIGKILL on the deadline. A batch's "item" lines go to `onItem`, and each starts
   * the deadline afresh: every call of a batch has the deadline of a single call.
   */
  request(body: RequestBody | string, deadlineMs: number, onItem?: (item: Item) => void): Promise<Reply> {
    if (!this.alive)
      return Promise.resolve({ failure: "crashed", detail: "the sandbox child is not running" });
    const id = this.nextId++;
    return new Promise<Reply>((resolve) => {
      const timer = setTimeout(() => {
        this.kill({ failure: "timeout", detail: `no answer within ${deadlineMs} ms` });
      }, deadlineMs);
      this.pending.set(id, { resolve, timer, onItem });
      // A pre-serialised body (the host measured its size already) is not stringified twice.
      const json = typeof body === "string" ? body : JSON.stringify(body);
      (this.proc.stdin as Writable).write(`{"id":${id},${json.slice(1)}\n`);
    });
  }

  /** SIGKILL; pending requests resolve with `reason` once the process is gone. */
  kill(reason: Failure): void {
    if (!this.alive) return;
    this.killedFor ??= reason;
    this.proc.kill("SIGKILL");
  }

  /** Ask the child to exit (closing stdin), SIGKILL if it does not within a moment. */
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
      this.kill({ failure: "crashed", detail: "the sandbox child sent a message that is not JSON" });
      return;
    }
    if (!isResponse(message)) {
      this.kill({
        failure: "crashed",
        detail: `the sandbox child sent an invalid message: ${isResponse.explain()}`,
      });
      return;
    }
    if (message.op === "ready") {
      this.readyResolve?.(true);
      return;
    }
    const entry = this.pending.get(message.id);
    if (!entry) return;
    if (message.op === "item") {
      if (!entry.onItem) {
        this.kill({ failure: "crashed", detail: "the sandbox child answered a single request item by item" });
        return;
      }
      entry.timer.refresh();
      entry.onItem(message);
      return;
    }
    this.pending.delete(message.id);
    clearTimeout(entry.timer);
    entry.resolve(message);
  }

  private onExit(): void {
    this.alive = false;
    clearInterval(this.watchdog);
    const reason = this.killedFor ?? this.exitReason();
    for (const { resolve, timer } of this.pending.values()) {
      clearTimeout(timer);
      resolve(reason);
    }
    this.pending.clear();
  }

  private exitReason(): Failure {
    const tail = this.stderrTail;
    const mark = tail.lastIndexOf(MEMORY_KILL_MARK);
    if (mark >= 0) {
      const line = tail.slice(mark + MEMORY_KILL_MARK.length).split("\n", 1)[0]!;
      return { failure: "memory", detail: line.slice(0, 500) };
    }
    // V8's own out-of-memory aborts (isolated-vm prints is_heap_oom for an isolate's heap).
    if (/out of memory|heap limit|allocation failed|is_heap_oom = 1|invalid size error/i.test(tail)) {
      return { failure: "memory", detail: "the sandbox child ran out of memory" };
    }
    const signal = this.proc.signalCode;
    const code = this.proc.exitCode;
    return {
      failure: "crashed",
      detail: `the sandbox child died (${signal ? `signal ${signal}` : `exit code ${String(code)}`})`,
    };
  }

  private async checkMemory(memoryMb: number): Promise<void> {
    if (!this.alive || this.proc.pid === undefined) return;
    try {
      const statm = await readFile(`/proc/${this.proc.pid}/statm`, "utf8");
      const residentPages = Number(statm.split(" ")[1]);
      if (residentPages * PAGE_BYTES > memoryMb * 1024 * 1024) {
        this.kill({ failure: "memory", detail: `the sandbox child exceeded its ${memoryMb} MB memory cap` });
      }
    } catch {
      // not Linux, or the process just exited
    }
  }
}
