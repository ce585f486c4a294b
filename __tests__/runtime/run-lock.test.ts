// The run folder's lock: held by a live process, taken over from a gone one, and from one that has
// exited but is not reaped yet (a zombie answers kill(pid, 0); containers reap orphans late).
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { acquireRunLock, runLockHolder } from "../../runtime/run-lock.ts";
import { waitFor } from "../support/wait.ts";

function lockedBy(pid: number, startTicks?: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), "bilevel-lock-"));
  writeFileSync(
    path.join(dir, "run.lock"),
    `${JSON.stringify({ pid, started: new Date().toISOString(), ...(startTicks ? { startTicks } : {}) })}\n`,
  );
  return dir;
}

/** A process's start time in clock ticks since boot (field 22 of /proc/PID/stat). */
function startTicks(pid: number): string {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19] as string;
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

test("a lock whose pid now belongs to another process (pids wrap around) is taken over; its own holder is not", () => {
  const other = spawn("sleep", ["30"]);
  try {
    const pid = other.pid as number;
    // The lock's holder started at another time than the process that has its pid now.
    const reused = lockedBy(pid, String(Number(startTicks(pid)) - 1));
    expect(runLockHolder(reused)).toBeNull();
    acquireRunLock(reused)();
    // The same pid with its own start time is the holder.
    const held = lockedBy(pid, startTicks(pid));
    expect(runLockHolder(held)).toBe(pid);
    expect(() => acquireRunLock(held)).toThrow(new RegExp(`in use by process ${pid}`));
  } finally {
    other.kill("SIGKILL");
  }
  // This process's own lock records its start time, so it is recognised as held.
  const mine = mkdtempSync(path.join(tmpdir(), "bilevel-lock-"));
  const release = acquireRunLock(mine);
  expect(JSON.parse(readFileSync(path.join(mine, "run.lock"), "utf8")).startTicks).toBe(
    startTicks(process.pid),
  );
  expect(runLockHolder(mine)).toBe(process.pid);
  release();
});
