// Waiting for an event in tests without assuming how fast the machine is.
import { readFileSync } from "node:fs";

/**
 * Resolve once `check()` is true, polling every `intervalMs`. There is no deadline: the jest test
 * timeout is the only bound, so a slow or loaded machine takes longer instead of failing. (A
 * poller outlives a test that jest has already failed by timeout; it stops on its own after
 * `giveUpMs`, 10 minutes by default, so that it does not run on for the rest of the worker.)
 */
export async function waitFor(
  check: () => boolean,
  { intervalMs = 20, giveUpMs = 600_000 }: { intervalMs?: number; giveUpMs?: number } = {},
): Promise<void> {
  const stop = Date.now() + giveUpMs;
  while (!check()) {
    if (Date.now() > stop) throw new Error(`waitFor: still waiting after ${giveUpMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/** Whether a process is running (Linux /proc; a zombie waiting to be reaped counts as gone). */
export function running(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    return state !== "Z" && state !== "X";
  } catch {
    return false;
  }
}

/**
 * Whether a process with this pid exists at all, a zombie included: its parent (this process) has
 * not reaped it yet, so its "exit" event has not been handled either.
 */
export function pidExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
