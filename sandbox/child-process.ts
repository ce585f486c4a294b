// Host side of one sandbox child: spawn, line protocol, per-request deadlines, SIGKILL, and an RSS
// watchdog (the OS-level memory cap: RLIMIT_AS cannot work because every isolate reserves ~0.5 GB
// of address space, and RLIMIT_DATA stops V8 from reserving its code range at all).
import { readFile } from "node:fs/promises";
import path from "node:path";
import { type Failure, LineProcess, lineProcessEnv, type Routed } from "./line-process.ts";
import { MEMORY_KILL_MARK } from "./memory-watchdog.ts";
import { HeldTexts, isResponse, type Request, type Response } from "./protocol.ts";
import type { SandboxPolicy } from "./types.ts";

const CHILD_ENTRY = path.join(import.meta.dirname, "child.ts");
const PAGE_BYTES = 4096;

export type { Failure };
export type Reply = Response | Failure;
export type Item = Extract<Response, { op: "item" }>;

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

export function isFailure(reply: Reply): reply is Failure {
  return "failure" in reply;
}

export class SandboxChild extends LineProcess<Response> {
  private readonly watchdog: NodeJS.Timeout;
  /** The call texts this child holds (a request leaves them out). */
  readonly heldTexts = new HeldTexts();

  private constructor(options: ChildOptions) {
    super({
      args: [
        "--no-node-snapshot",
        `--max-old-space-size=${options.heapMb}`,
        "--disable-warning=ExperimentalWarning",
        CHILD_ENTRY,
        ...(options.chainRule ? ["--chain-rule", options.chainRule] : []),
      ],
      // Its policy and nothing of the host's environment.
      env: lineProcessEnv("bilevel-sandbox-child", {
        BILEVEL_SANDBOX_POLICY: JSON.stringify(options.policy),
      }),
      channel: "fd3",
      name: "the sandbox child",
      stderrChars: 8192,
      isMessage: isResponse,
      isReady: (message) => message.op === "ready",
    });
    this.watchdog = setInterval(() => void this.checkMemory(options.memoryMb), options.watchdogIntervalMs);
    this.watchdog.unref();
  }

  static async start(options: ChildOptions): Promise<SandboxChild> {
    const child = new SandboxChild(options);
    if (!(await child.ready(options.startTimeoutMs))) {
      const detail = child.stderr;
      child.kill({ failure: "crashed", detail: "start failed" });
      await child.exited;
      throw new Error(`the sandbox child did not start${detail ? `: ${detail}` : ""}`);
    }
    return child;
  }

  /**
   * Send one request (an object, or its JSON without `id`); resolve with its response, or with a
   * Failure after SIGKILL on the deadline. A batch's "item" lines go to `onItem`, and each starts
   * the deadline afresh: every call of a batch has the deadline of a single call.
   */
  request(body: RequestBody | string, deadlineMs: number, onItem?: (item: Item) => void): Promise<Reply> {
    // A pre-serialised body (the host measured its size already) is not stringified twice.
    const json = typeof body === "string" ? body : JSON.stringify(body);
    return this.send(json, deadlineMs, onItem && ((message) => onItem(message as Item)));
  }

  protected route(message: Response): Routed<Response> | null {
    return { id: message.id, partial: message.op === "item", message };
  }

  protected override onExit(): void {
    clearInterval(this.watchdog);
  }

  protected exitReason(): Failure {
    const tail = this.stderrText;
    const mark = tail.lastIndexOf(MEMORY_KILL_MARK);
    if (mark >= 0) {
      const line = tail.slice(mark + MEMORY_KILL_MARK.length).split("\n", 1)[0]!;
      return { failure: "memory", detail: line.slice(0, 500) };
    }
    // V8's own out-of-memory aborts (isolated-vm prints is_heap_oom for an isolate's heap).
    if (/out of memory|heap limit|allocation failed|is_heap_oom = 1|invalid size error/i.test(tail)) {
      return { failure: "memory", detail: "the sandbox child ran out of memory" };
    }
    return { failure: "crashed", detail: `the sandbox child died (${this.exitStatus()})` };
  }

  private async checkMemory(memoryMb: number): Promise<void> {
    if (!this.alive || this.pid === undefined) return;
    try {
      const statm = await readFile(`/proc/${this.pid}/statm`, "utf8");
      const residentPages = Number(statm.split(" ")[1]);
      if (residentPages * PAGE_BYTES > memoryMb * 1024 * 1024) {
        this.kill({ failure: "memory", detail: `the sandbox child exceeded its ${memoryMb} MB memory cap` });
      }
    } catch {
      // not Linux, or the process just exited
    }
  }
}
