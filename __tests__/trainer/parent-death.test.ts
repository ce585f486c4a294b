// A trial must not outlive the process that started it: when the run process is
// SIGKILLed, the trainer (and a user's command, with its children) goes too, even when
// it prints nothing for minutes (CUDA compile) and so never meets a broken pipe.
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";

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

/** Start the parent, read the pids it reports, SIGKILL it; the pids still running after `waitMs`. */
async function survivorsAfterParentKill(
  mode: string,
  waitMs: number,
): Promise<{ pids: number[]; left: number[] }> {
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
  expect(pids.length).toBeGreaterThan(0);
  expect(pids.every(alive)).toBe(true);
  parent.kill("SIGKILL");
  const deadline = Date.now() + waitMs;
  while (Date.now() < deadline && pids.some(alive)) await new Promise((r) => setTimeout(r, 100));
  const left = pids.filter(alive);
  for (const pid of left) process.kill(pid, "SIGKILL"); // never leave one behind, then fail
  return { pids, left };
}

test("the Python trainer dies with its parent, while silent in the middle of training", async () => {
  const { left } = await survivorsAfterParentKill("torch", 5000);
  expect(left).toEqual([]);
}, 60_000);

test("an external command dies with its parent", async () => {
  const { left } = await survivorsAfterParentKill("external", 5000);
  expect(left).toEqual([]);
}, 30_000);

test("an external command run under a shell (like `uv run`) dies with its parent, children included", async () => {
  const { pids, left } = await survivorsAfterParentKill("external-sh", 5000);
  expect(pids.length).toBeGreaterThanOrEqual(2); // the shell and the script under it
  expect(left).toEqual([]);
}, 30_000);

describe("trainer/parent_death.py", () => {
  const repo = path.resolve(import.meta.dirname, "../..");
  const shim = path.join(repo, "trainer/parent_death.py");
  const deadPid = () => spawnSync("true").pid!; // exited and reaped: no such process now
  const run = (args: string[], env: NodeJS.ProcessEnv = {}) =>
    spawnSync("/usr/bin/python3", args, {
      cwd: repo,
      encoding: "utf8",
      timeout: 20_000,
      env: { ...process.env, OPENBLAS_NUM_THREADS: "1", ...env },
    });

  test("passes on the command's exit code and its death by a signal", () => {
    expect(run([shim, "/bin/sh", "-c", "exit 7"]).status).toBe(7);
    expect(run([shim, "/bin/sh", "-c", "kill -TERM $$"]).signal).toBe("SIGTERM");
    expect(run([shim, "/bin/sh", "-c", "echo out; echo err >&2"]).stdout).toBe("out\n");
  });

  test("no command, or one that cannot start, is a clear error", () => {
    const none = run([shim]);
    expect(none.status).toBe(2);
    expect(none.stderr).toMatch(/usage: parent_death.py COMMAND/);
    const missing = run([shim, "/nonexistent/cmd"]);
    expect(missing.status).toBe(127);
    expect(missing.stderr).toMatch(/cannot run \/nonexistent\/cmd/);
  });

  test("a parent that died before prctl ran: the shim and the trainer exit at once", () => {
    const started = Date.now();
    const shimmed = run([shim, "sleep", "30"], { BILEVEL_PARENT_PID: String(deadPid()) });
    expect(shimmed.status).toBe(1);
    const trainer = run(["-m", "trainer", "--help"], { BILEVEL_PARENT_PID: String(deadPid()) });
    expect(trainer.status).toBe(1);
    expect(trainer.stdout).toBe(""); // gone before argparse
    expect(Date.now() - started).toBeLessThan(15_000); // not the 30 s sleep
    // A live parent (this process) or garbage in the variable changes nothing.
    expect(run(["-m", "trainer", "--help"], { BILEVEL_PARENT_PID: String(process.pid) }).status).toBe(0);
    expect(run(["-m", "trainer", "--help"], { BILEVEL_PARENT_PID: "x" }).status).toBe(0);
  }, 30_000);
});
