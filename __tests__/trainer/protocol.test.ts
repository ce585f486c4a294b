// The adapter against processes that misbehave: garbage output, bad result records,
// silent crashes, a missing interpreter, grandchildren that must die with the trial.
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseResult, TorchTrainer, trainerEnv } from "../../trainer/torch-trainer.ts";
import type { TrialRequest } from "../../trainer/types.ts";
import { waitFor } from "../support/wait.ts";

const fixtures = path.resolve(import.meta.dirname, "../fixtures/trainer");
let tmp: string;
beforeAll(() => {
  tmp = mkdtempSync(path.join(os.tmpdir(), "bilevel-protocol-"));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function request(name: string, extra: Partial<TrialRequest> = {}): TrialRequest {
  return { config: {}, budgetSeconds: 5, seed: 0, device: "cpu", workDir: path.join(tmp, name), ...extra };
}

function garbage(mode: string, extra: ConstructorParameters<typeof TorchTrainer>[0] = {}) {
  return new TorchTrainer({
    python: "/usr/bin/python3",
    entry: [path.join(fixtures, "garbage.py")],
    env: { GARBAGE_MODE: mode },
    ...extra,
  });
}

/** Running (a zombie waiting for init to reap it counts as dead). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return !/^\d+ \(.*\) [ZX] /.test(stat);
  } catch {
    return false;
  }
}

test("a process that prints garbage and exits 0 is a classified crash, not an exception", async () => {
  const o = await garbage("noise").run(request("noise"));
  expect(o.status).toBe("crashed");
  expect(o.exitCode).toBe(0);
  expect(o.message).toMatch(/exited 0 with no result record \(\d+ unparseable/);
  expect(o.valBpb).toBeNull();
  expect(readFileSync(o.logPath, "utf8")).toMatch(/hello, I am not JSON/);
});

test("a result record that fails the schema is a classified crash", async () => {
  const o = await garbage("bad-result").run(request("bad-result"));
  expect(o.status).toBe("crashed");
  expect(o.message).toMatch(/invalid result record/);
  expect(o.message).toMatch(/val_bpb/);
});

test("an unknown exit code with no output is a crash that says the code", async () => {
  const o = await garbage("silent-crash").run(request("silent"));
  expect(o.status).toBe("crashed");
  expect(o.exitCode).toBe(9);
  expect(o.message).toMatch(/exited 9/);
});

test("a missing interpreter is a classified crash", async () => {
  const o = await new TorchTrainer({ python: "/nonexistent/python3" }).run(request("missing"));
  expect(o.status).toBe("crashed");
  expect(o.message).toMatch(/could not start \/nonexistent\/python3/);
});

test("a timeout is classified as timeout", async () => {
  // It never prints a progress record: the start's own allowance runs out (trial-deadline.test.ts
  // has the budget's deadline, which starts at the first progress record).
  const t = garbage("spawn-and-sleep", {
    timeoutFactor: 1,
    graceSeconds: 1,
    startupSeconds: 2,
    env: { GARBAGE_MODE: "spawn-and-sleep", PID_FILE: path.join(tmp, "timeout.pid") },
  });
  const o = await t.run(request("timeout", { budgetSeconds: 1 }));
  expect(o.status).toBe("timeout");
  expect(o.message).toMatch(/killed after 2 s without a progress record/);
}, 20_000);

// The kill of the whole group is the same for a timeout and an abort (process.ts: killGroup). It
// is triggered here by an abort once the grandchild exists, so that a slow start cannot make the
// kill come before there is a grandchild to kill.
test("killing a trial kills its whole process group, grandchildren included", async () => {
  const pidFile = path.join(tmp, "grandchild.pid");
  const t = garbage("spawn-and-sleep", { env: { GARBAGE_MODE: "spawn-and-sleep", PID_FILE: pidFile } });
  const controller = new AbortController();
  const pending = t.run(request("group", { budgetSeconds: 60, signal: controller.signal }));
  // The fixture writes the file after starting the grandchild.
  await waitFor(() => existsSync(pidFile) && readFileSync(pidFile, "utf8") !== "");
  const pid = Number(readFileSync(pidFile, "utf8"));
  controller.abort();
  const o = await pending;
  expect(o.status).toBe("crashed");
  expect(o.message).toBe("aborted");
  // The trial ends when its output pipes close, which the grandchild held open too: it is gone.
  const survived = alive(pid);
  if (survived) process.kill(pid, "SIGKILL"); // never leave it behind, then fail
  expect(survived).toBe(false);
});

test("a throwing progress callback does not end the trial", async () => {
  const o = await garbage("noise").run(
    request("callback", {
      onProgress: () => {
        throw new Error("boom");
      },
    }),
  );
  expect(o.status).toBe("crashed"); // from the garbage, not from the callback
});

test("parseResult keeps the contract's fields and rejects wrong types", () => {
  const good = {
    event: "result",
    val_bpb: 2.1,
    training_seconds: 10,
    total_seconds: 12,
    warmup_seconds: 0.2,
    num_steps: 5,
    num_tokens: 20480,
    num_params: 1000,
    peak_memory_mb: 500,
    mfu_percent: null,
    tokens_per_second: 2048,
    device: "cpu",
    config: { DEPTH: 2, WINDOW_PATTERN: "L" },
    extra_field: 1,
  };
  const r = parseResult(good);
  expect("result" in r && r.result.val_bpb).toBe(2.1);
  expect("result" in r && Object.keys(r.result)).not.toContain("extra_field");
  for (const bad of [
    { ...good, val_bpb: "2.1" },
    { ...good, val_bpb: -1 },
    { ...good, num_steps: 1.5 },
    { ...good, config: { DEPTH: [2] } },
    { ...good, mfu_percent: "n/a" },
    null,
    [],
  ]) {
    expect("error" in parseResult(bad)).toBe(true);
  }
});

test("the child environment pins one BLAS thread unless set, and puts the repo on PYTHONPATH", () => {
  const env = trainerEnv({ PATH: "/bin" });
  expect(env.OPENBLAS_NUM_THREADS).toBe("1");
  expect(env.PYTHONPATH?.split(path.delimiter)[0]).toBe(path.resolve(import.meta.dirname, "../.."));
  expect(trainerEnv({ OPENBLAS_NUM_THREADS: "4" }).OPENBLAS_NUM_THREADS).toBe("4");
  expect(trainerEnv({ OPENBLAS_CORETYPE: "Haswell" }).OPENBLAS_CORETYPE).toBe("Haswell");
});

test("malloc's huge pages are added to a user's tunables unless they choose them, and the trainer then starts once", () => {
  if (process.platform !== "linux") return;
  expect(trainerEnv({ PATH: "/bin" }).GLIBC_TUNABLES).toBe("glibc.malloc.hugetlb=1");
  expect(trainerEnv({ GLIBC_TUNABLES: "glibc.malloc.arena_max=2" }).GLIBC_TUNABLES).toBe(
    "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1",
  );
  expect(trainerEnv({ GLIBC_TUNABLES: "glibc.malloc.hugetlb=0" }).GLIBC_TUNABLES).toBe(
    "glibc.malloc.hugetlb=0",
  );
  // The Python side agrees: in the environment a trial gets, it needs no restart of the interpreter.
  const env = trainerEnv({ PATH: process.env.PATH ?? "/usr/bin" });
  const python = process.env.BILEVEL_PYTHON ?? "/usr/bin/python3";
  const out = spawnSync(python, ["-c", "from trainer.cpu_env import needs_reexec; print(needs_reexec())"], {
    env,
    encoding: "utf8",
  });
  expect(out.stdout.trim()).toBe("False");
});
