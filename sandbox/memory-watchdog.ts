// The per-call memory bound of the sandbox child. isolated-vm compares an isolate's heap with its
// memoryLimit only after a garbage collection, and when an allocation would fail it lets V8 take up
// to 1 GB more first; so one allocation (an array of 2^26 elements, a flattened 512 MB string, an
// array growing by copying) grows the process by hundreds of MB to ~1 GB before the isolate is
// stopped, inside V8 code that cannot be interrupted. Only the process can be stopped at once: a
// worker thread samples the resident set every millisecond while guest code runs and, past the
// call's allowance, writes the reason to stderr and SIGKILLs the process. The host reads the
// reason, quarantines the mechanism with `memory`, restarts the child and reloads the others.
import { writeSync } from "node:fs";
import { isMainThread, Worker, workerData } from "node:worker_threads";

/** Extra resident memory a hook call may use beyond its isolate's limit (V8 and isolated-vm overheads). */
export const CALL_MEMORY_SLACK_MB = 64;
/** The line the child writes before it kills itself; the host turns it into the `memory` fault's message. */
export const MEMORY_KILL_MARK = "bilevel sandbox child: memory: ";

const POLL_MS = 1;
/**
 * How long the worker keeps polling (every POLL_MS) after a call before it sleeps until the next is
 * armed. Calls come in bursts (a phase's filters, a batch): within one, arming is a plain store the
 * polling worker sees at its next tick, instead of a wake-up that, on a busy machine, makes the
 * woken worker preempt the call it is to watch (165-220 µs a call at load 1.6-2.7).
 */
export const LINGER_MS = 50;
// Shared cells: the state, the resident-set limit in KiB, the allowance in MiB (for the message),
// whether the worker is polling (1) or asleep until notified (0).
const STATE = 0;
const LIMIT_KB = 1;
const ALLOWANCE_MB = 2;
const POLLING = 3;
const IDLE = 0;
const ARMED = 1;
const FIRED = 2;
const WORKER_TAG = "bilevel-memory-watchdog";

export class MemoryWatchdog {
  private readonly cells: Int32Array;
  /** Resolves once the worker runs; calls must not start before (they would be unguarded). */
  readonly ready: Promise<void>;

  constructor() {
    const shared = new SharedArrayBuffer(4 * Int32Array.BYTES_PER_ELEMENT);
    this.cells = new Int32Array(shared);
    const worker = new Worker(new URL(import.meta.url), { workerData: { tag: WORKER_TAG, shared } });
    worker.unref();
    this.ready = new Promise((resolve) => worker.once("online", () => resolve()));
    // Without its watchdog the child must not run guest code: stop, and let the host restart it.
    worker.once("exit", () => {
      writeSync(2, "bilevel sandbox child: the memory watchdog stopped\n");
      process.exit(70);
    });
  }

  /** Run `fn` (synchronous guest code) with the process's resident-set growth capped at `allowanceMb`. */
  guard<T>(allowanceMb: number, fn: () => T): T {
    const limitKb = Math.ceil(process.memoryUsage.rss() / 1024) + allowanceMb * 1024;
    Atomics.store(this.cells, LIMIT_KB, Math.min(limitKb, 2 ** 31 - 1));
    Atomics.store(this.cells, ALLOWANCE_MB, allowanceMb);
    Atomics.store(this.cells, STATE, ARMED);
    // Sequentially consistent: if the worker is seen polling here, it stores POLLING = 0 after
    // STATE = ARMED, so its wait on IDLE below returns at once; no call goes unwatched.
    if (Atomics.load(this.cells, POLLING) === 0) Atomics.notify(this.cells, STATE);
    try {
      return fn();
    } finally {
      if (Atomics.compareExchange(this.cells, STATE, ARMED, IDLE) === FIRED) {
        // The worker is killing the process: answer nothing more (the answer would race the kill).
        for (;;) Atomics.wait(this.cells, STATE, FIRED);
      }
    }
  }
}

function watch(cells: Int32Array): never {
  for (;;) {
    Atomics.store(cells, POLLING, 0);
    Atomics.wait(cells, STATE, IDLE);
    Atomics.store(cells, POLLING, 1);
    // Poll while armed, and for LINGER_MS after the last call (no one notifies a polling worker).
    let idleSince = performance.now();
    for (;;) {
      const state = Atomics.load(cells, STATE);
      if (state === ARMED) {
        check(cells);
        idleSince = performance.now();
      } else if (performance.now() - idleSince > LINGER_MS) {
        break;
      }
      Atomics.wait(cells, STATE, state, POLL_MS);
    }
  }
}

/** Kill the process if its resident set is past the armed call's limit. */
function check(cells: Int32Array): void {
  const rssKb = process.memoryUsage.rss() / 1024;
  const limitKb = Atomics.load(cells, LIMIT_KB);
  if (rssKb > limitKb && Atomics.compareExchange(cells, STATE, ARMED, FIRED) === ARMED) {
    const allowance = Atomics.load(cells, ALLOWANCE_MB);
    writeSync(
      2,
      `\n${MEMORY_KILL_MARK}a hook call grew the sandbox process past its allowance of ${allowance} MB (isolateMemoryMb + ${CALL_MEMORY_SLACK_MB} MB); the process was stopped at ${Math.round(rssKb / 1024)} MB\n`,
    );
    process.kill(process.pid, "SIGKILL");
  }
}

const data = workerData as { tag?: unknown; shared?: unknown } | null;
if (!isMainThread && data?.tag === WORKER_TAG && data.shared instanceof SharedArrayBuffer) {
  watch(new Int32Array(data.shared));
}
