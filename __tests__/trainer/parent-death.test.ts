// A trial must not outlive the process that started it: when the run process is
// SIGKILLed, the trainer (and a user's command, with its children) goes too, even when
// it prints nothing for minutes (CUDA compile) and so never meets a broken pipe.
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { waitFor } from "../support/wait.ts";

const parentScript = path.resolve(import.meta.dirname, "../fixtures/trainer/orphan-parent.ts");
let tmp: string;
beforeAll(() => {
  tmp = mkdtempSync(path.join(os.tmpdir(), "bilevel-orphan-"));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** Running (a zombie waiting to be reaped counts as dead). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return !/^[ZX]$/.test(stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3));
  } catch {
    return false;
  }
}

/** Pids reported by parents, killed in afterAll if a failed test left any running. */
const reported = new Set<number>();
afterAll(() => {
  for (const pid of reported) if (alive(pid)) process.kill(pid, "SIGKILL");
});

/**
 * Start the parent, read the pids it reports, SIGKILL it, and wait until those processes are gone.
 * There is no deadline of our own: one that never goes fails the test by the jest timeout.
 */
async function afterParentKill(mode: string): Promise<{ pids: number[] }> {
  const parent = spawn(process.execPath, [parentScript, mode, path.join(tmp, mode)], {
    env: { ...process.env, BILEVEL_CACHE: path.join(tmp, "cache") },
    stdio: ["ignore", "pipe", "ignore"],
  });
  const lines = createInterface({ input: parent.stdout });
  const first = await new Promise<string>((resolve, reject) => {
    lines.once("line", resolve);
    parent.once("exit", (code) => reject(new Error(`the parent exited ${code} before reporting`)));
  });
  const { pids } = JSON.parse(first) as { pids: number[] };
  for (const pid of pids) reported.add(pid);
  expect(pids.length).toBeGreaterThan(0);
  expect(pids.every(alive)).toBe(true);
  parent.kill("SIGKILL");
  await waitFor(() => !pids.some(alive), { intervalMs: 100 });
  return { pids };
}

test("the Python trainer dies with its parent, while silent in the middle of training", async () => {
  await afterParentKill("torch");
}, 60_000);

test("an external command dies with its parent", async () => {
  await afterParentKill("external");
}, 60_000);

test("an external command run under a shell (like `uv run`) dies with its parent, children included", async () => {
  const { pids } = await afterParentKill("external-sh");
  expect(pids.length).toBeGreaterThanOrEqual(2); // the shell and the script under it
}, 60_000);

describe("trainer/parent_death.py", () => {
  const repo = path.resolve(import.meta.dirname, "../..");
  const shim = path.join(repo, "trainer/parent_death.py");
  const deadPid = () => spawnSync("true").pid!; // exited and reaped: no such process now
  // Asynchronous, with no timeout of its own: the jest test timeout bounds it (a spawnSync would
  // need its own timeout, since jest cannot interrupt a blocked event loop).
  const run = (args: string[], env: NodeJS.ProcessEnv = {}) =>
    new Promise<{ status: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>(
      (resolve, reject) => {
        const child = spawn("/usr/bin/python3", args, {
          cwd: repo,
          env: { ...process.env, OPENBLAS_NUM_THREADS: "1", ...env },
          stdio: ["ignore", "pipe", "pipe"],
        });
        let stdout = "";
        let stderr = "";
        child.stdout.on("data", (chunk: Buffer) => {
          stdout += chunk.toString();
        });
        child.stderr.on("data", (chunk: Buffer) => {
          stderr += chunk.toString();
        });
        child.on("error", reject);
        child.on("close", (status, signal) => resolve({ status, signal, stdout, stderr }));
      },
    );

  test("passes on the command's exit code and its death by a signal", async () => {
    expect((await run([shim, "/bin/sh", "-c", "exit 7"])).status).toBe(7);
    expect((await run([shim, "/bin/sh", "-c", "kill -TERM $$"])).signal).toBe("SIGTERM");
    expect((await run([shim, "/bin/sh", "-c", "echo out; echo err >&2"])).stdout).toBe("out\n");
  });

  test("no command, or one that cannot start, is a clear error", async () => {
    const none = await run([shim]);
    expect(none.status).toBe(2);
    expect(none.stderr).toMatch(/usage: parent_death.py COMMAND/);
    const missing = await run([shim, "/nonexistent/cmd"]);
    expect(missing.status).toBe(127);
    expect(missing.stderr).toMatch(/cannot run \/nonexistent\/cmd/);
  });

  test("a parent that died before prctl ran: the shim and the trainer exit at once", async () => {
    // Exit status 1 is the shim's own: `sleep 30` run to its end would pass on 0.
    const shimmed = await run([shim, "sleep", "30"], { BILEVEL_PARENT_PID: String(deadPid()) });
    expect(shimmed.status).toBe(1);
    const trainer = await run(["-m", "trainer", "--help"], { BILEVEL_PARENT_PID: String(deadPid()) });
    expect(trainer.status).toBe(1);
    expect(trainer.stdout).toBe(""); // gone before argparse
    // A live parent (this process) or garbage in the variable changes nothing.
    const live = { BILEVEL_PARENT_PID: String(process.pid) };
    expect((await run(["-m", "trainer", "--help"], live)).status).toBe(0);
    expect((await run(["-m", "trainer", "--help"], { BILEVEL_PARENT_PID: "x" })).status).toBe(0);
  }, 60_000);
});
