// The run folder's lock: held by a live process, taken over from a gone one, and from one that has
// exited but is not reaped yet (a zombie answers kill(pid, 0); containers reap orphans late).
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { acquireRunLock, runLockHolder } from "../../runtime/run-lock.ts";
import { waitFor } from "../support/wait.ts";

function lockedBy(pid: number): string {
  const dir = mkdtempSync(path.join(tmpdir(), "bilevel-lock-"));
  writeFileSync(
    path.join(dir, "run.lock"),
    `${JSON.stringify({ pid, started: new Date().toISOString() })}\n`,
  );
  return dir;
}

function state(pid: number): string {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  return stat.slice(stat.lastIndexOf(")") + 2).charAt(0);
}

test("a live holder refuses a second process; this process's own lock is released", () => {
  const holder = spawn("sleep", ["30"]);
  try {
    const dir = lockedBy(holder.pid as number);
    expect(runLockHolder(dir)).toBe(holder.pid);
    expect(() => acquireRunLock(dir)).toThrow(new RegExp(`in use by process ${holder.pid}`));
  } finally {
    holder.kill("SIGKILL");
  }
  const mine = mkdtempSync(path.join(tmpdir(), "bilevel-lock-"));
  const release = acquireRunLock(mine);
  expect(runLockHolder(mine)).toBe(process.pid);
  release();
  expect(runLockHolder(mine)).toBeNull();
});

test("an exited process that is not reaped yet (a zombie) holds nothing: the lock is taken over", async () => {
  // `sleep 0` exits at once; its parent execs into `sleep 30`, which never reaps it.
  const parent = spawn("sh", ["-c", "sleep 0 & echo $!; exec sleep 30"], {
    stdio: ["ignore", "pipe", "ignore"],
  });
  try {
    const zombie = await new Promise<number>((resolve) =>
      parent.stdout.once("data", (chunk: Buffer) => resolve(Number(chunk.toString().trim()))),
    );
    await waitFor(() => state(zombie) === "Z");
    // kill(pid, 0) still succeeds: what the lock used to take for a live holder.
    expect(() => process.kill(zombie, 0)).not.toThrow();
    const dir = lockedBy(zombie);
    expect(runLockHolder(dir)).toBeNull();
    acquireRunLock(dir)();
  } finally {
    parent.kill("SIGKILL");
  }
});
