// Where the k-th of N concurrent jobs runs: CPU jobs pinned to their own core (taskset when the
// machine has it, else one BLAS/OpenMP thread each), CUDA jobs on their own device.
import { spawnSync } from "node:child_process";
import { availableParallelism } from "node:os";

export interface SlotLaunch {
  /** Words before the command (e.g. ["taskset", "-c", "1"]); empty when nothing is pinned. */
  readonly prefix: readonly string[];
  /** Environment values for the job. */
  readonly env: Readonly<Record<string, string>>;
}

let tasksetCache: boolean | undefined;

/** Whether `taskset` runs here (util-linux; absent on macOS). */
export function hasTaskset(): boolean {
  if (tasksetCache === undefined) {
    const r = spawnSync("taskset", ["-p", String(process.pid)], { stdio: "ignore" });
    tasksetCache = r.status === 0;
  }
  return tasksetCache;
}

/**
 * The launch of job slot `slot` of `jobs`. One job needs nothing pinned. CUDA slots get
 * CUDA_VISIBLE_DEVICES = slot mod `gpus` (when the count is known); CPU slots a core each
 * (slots beyond the core count share cores round-robin).
 */
export function slotLaunch(
  slot: number,
  jobs: number,
  device: "cpu" | "cuda",
  options: { cores?: number; gpus?: number; taskset?: boolean } = {},
): SlotLaunch {
  const threads = { OMP_NUM_THREADS: "1", MKL_NUM_THREADS: "1", OPENBLAS_NUM_THREADS: "1" };
  if (jobs <= 1) return { prefix: [], env: {} };
  if (device === "cuda") return { prefix: [], env: slotEnv(slot, jobs, device, options) };
  const cores = options.cores ?? availableParallelism();
  const pin = options.taskset ?? hasTaskset();
  return pin
    ? { prefix: ["taskset", "-c", String(slot % cores)], env: threads }
    : { prefix: [], env: threads };
}

/**
 * The environment of slot `slot` of `slots` when nothing is pinned (a run's local executor): a
 * CUDA slot sees one GPU (slot mod `gpus`, default one per slot); a CPU slot gets an equal share
 * of the cores as its thread counts (the trainer reads BILEVEL_THREADS), so slots do not
 * oversubscribe the machine. One slot: nothing set.
 */
export function slotEnv(
  slot: number,
  slots: number,
  device: "cpu" | "cuda",
  options: { cores?: number; gpus?: number } = {},
): Record<string, string> {
  if (slots <= 1) return {};
  if (device === "cuda") return { CUDA_VISIBLE_DEVICES: String(slot % Math.max(1, options.gpus ?? slots)) };
  const threads = String(Math.max(1, Math.floor((options.cores ?? availableParallelism()) / slots)));
  return {
    BILEVEL_THREADS: threads,
    OMP_NUM_THREADS: threads,
    MKL_NUM_THREADS: threads,
    OPENBLAS_NUM_THREADS: threads,
  };
}

/**
 * Runs `work` over `items` with at most `jobs` at once; each call gets its slot number. After a
 * failure no new item starts; the ones in flight finish, then the first error is thrown.
 */
export async function runPool<T>(
  items: readonly T[],
  jobs: number,
  work: (item: T, slot: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  let failed = false;
  const worker = async (slot: number) => {
    while (!failed && next < items.length) {
      const item = items[next++] as T;
      try {
        await work(item, slot);
      } catch (error) {
        failed = true;
        throw error;
      }
    }
  };
  const workers = Array.from({ length: Math.max(1, Math.min(jobs, items.length)) }, (_, s) => worker(s));
  const settled = await Promise.allSettled(workers);
  const rejected = settled.find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (rejected) throw rejected.reason;
}
