// The start of a run by a study: the run touches its folder only once the study has recorded it in
// run.pid, and quits if the study is gone first (else a resume could not see it). The study here is
// this test's parent process (alive) or a pid that is not this process's parent (gone).
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { DatabaseSync } from "node:sqlite";
import { failureSummary } from "../../../runtime/commands/study.ts";
import { UserError } from "../../../runtime/errors.ts";
import { RunStore } from "../../../runtime/store.ts";
import { readRunPid, runPidPath, runState } from "../../../runtime/study/layout.ts";
import { lastErrorLine, recordedByStudy } from "../../../runtime/study/runner.ts";

const folder = () => mkdtempSync(path.join(tmpdir(), "bilevel-recorded-"));

test("waits while the study lives and has not recorded this process; true once run.pid names it", async () => {
  const dir = folder();
  let settled: boolean | undefined;
  const recorded = recordedByStudy(dir, process.ppid, { pollMs: 5 }).then((r) => {
    settled = r;
    return r;
  });
  // Another process's pid, then half a write: neither is this process.
  writeFileSync(runPidPath(dir), String(process.ppid));
  await new Promise((resolve) => setTimeout(resolve, 50));
  writeFileSync(runPidPath(dir), String(process.pid).slice(0, -1));
  await new Promise((resolve) => setTimeout(resolve, 50));
  expect(settled).toBeUndefined();
  writeFileSync(runPidPath(dir), `${process.pid}\n`);
  await expect(recorded).resolves.toBe(true);
});

test("false when the study is gone (this process is not its child) before recording it", async () => {
  const gone = spawnSync(process.execPath, ["-e", ""]).pid;
  await expect(recordedByStudy(folder(), gone, { pollMs: 5 })).resolves.toBe(false);
});

test("a study that lives but never records the run is a clear error, not a hang", async () => {
  const dir = folder();
  await expect(recordedByStudy(dir, process.ppid, { pollMs: 5, giveUpMs: 50 })).rejects.toThrow(
    new UserError(`the study (process ${process.ppid}) did not record this run in ${runPidPath(dir)}`),
  );
});

test("readRunPid: a pid, or null for no file, an empty or half-written one, or garbage", () => {
  const dir = folder();
  expect(readRunPid(dir)).toBeNull();
  for (const text of ["", "12x", "-3", "0", "1.5"]) {
    writeFileSync(runPidPath(dir), text);
    expect(readRunPid(dir)).toBeNull();
  }
  writeFileSync(runPidPath(dir), "4045\n");
  expect(readRunPid(dir)).toBe(4045);
});

test("lastErrorLine: a failed run's last 'bilevel:' line, else its last line; null for no log", () => {
  const dir = folder();
  const log = path.join(dir, "run.log");
  expect(lastErrorLine(log)).toBeNull();
  writeFileSync(log, "");
  expect(lastErrorLine(log)).toBeNull();
  writeFileSync(
    log,
    "[run] started\nbilevel: first failure\n[run] resumed\nbilevel: the second\n  at a stack\n\n",
  );
  expect(lastErrorLine(log)).toBe("bilevel: the second");
  writeFileSync(log, "Traceback (most recent call last):\nKeyError: 'x'\n");
  expect(lastErrorLine(log)).toBe("KeyError: 'x'");
  // From where this attempt's part of the log starts: an earlier attempt's error is not its own.
  const earlier = "[run] started\nbilevel: the first attempt's error\n";
  writeFileSync(log, `${earlier}[run] resumed\nKilled\n`);
  expect(lastErrorLine(log, Buffer.byteLength(earlier))).toBe("Killed");
  expect(lastErrorLine(log, Buffer.byteLength(`${earlier}[run] resumed\nKilled\n`))).toBeNull();
  // Only the log's end is read: an error line 100 kB back does not count.
  writeFileSync(log, `bilevel: long ago\n${"step 1 loss 2.0\n".repeat(7000)}the end\n`);
  expect(lastErrorLine(log)).toBe("the end");
  // What a run printed is made safe for the terminal the study's log goes to.
  writeFileSync(log, "bilevel: \u001b[2Jcleared?\n");
  expect(lastErrorLine(log)).not.toContain("\u001b");
  expect(lastErrorLine(log)).toMatch(/^bilevel: .*cleared\?$/);
});

test("failureSummary: each run's exit and reason; 'run it again' only while no run failed the same way twice", () => {
  const once = { id: "A-r1", ended: "exit 1", reason: "bilevel: a blip", sameInARow: 1 };
  const stuck = { id: "C-r2", ended: "killed by SIGKILL", reason: null, sameInARow: 3 };
  expect(failureSummary([once])).toBe(
    "1 run(s) did not finish:\n  A-r1: exit 1 — bilevel: a blip\nRun the same command again to continue them.",
  );
  expect(failureSummary([once, stuck])).toBe(
    "2 run(s) did not finish:\n  A-r1: exit 1 — bilevel: a blip\n  C-r2: killed by SIGKILL, the same on its last 3 attempts\n" +
      "Running the same command again continues them, but C-r2 failed the same way more than once: fix what runs/C-r2/run.log says first.",
  );
});

describe("runState: a store is taken for empty (deleted by the study, which starts the run afresh) only when it is", () => {
  test("a 0-byte run.db and one with no table yet (killed before its schema) are empty", () => {
    const zero = folder();
    writeFileSync(RunStore.dbPath(zero), "");
    expect(runState(zero)).toBe("empty");
    const noTables = folder();
    const db = new DatabaseSync(RunStore.dbPath(noTables));
    db.exec("PRAGMA journal_mode = WAL");
    db.close();
    expect(runState(noTables)).toBe("empty");
    expect(runState(folder())).toBe("not started");
  });

  test("a damaged store or one from a newer bilevel is an error naming it, and stays byte for byte", () => {
    const garbage = folder();
    writeFileSync(
      RunStore.dbPath(garbage),
      "this is not a database, but it is somebody's file\n".repeat(200),
    );
    const newer = folder();
    const store = RunStore.open(newer);
    store.setMeta("schema_version", "99");
    store.close();
    for (const dir of [garbage, newer]) {
      const before = readFileSync(RunStore.dbPath(dir));
      expect(() => runState(dir)).toThrow(UserError);
      expect(() => runState(dir)).toThrow(`cannot read the run store ${RunStore.dbPath(dir)}`);
      expect(readFileSync(RunStore.dbPath(dir)).equals(before)).toBe(true);
    }
    expect(() => runState(newer)).toThrow(/schema version 99/);
  });
});
