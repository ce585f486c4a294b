// `bilevel train --script path/train.py`, as a user calls it: --list prints the script's constants
// with the search range each would get; --set runs one trial of the script and prints the summary
// block; unknown names, wrong types and broken declared constraints are exit 2 before anything runs.
import { spawnSync } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { cliArgv } from "../support/cli.ts";

const tmp = mkdtempSync(path.join(tmpdir(), "bilevel-train-script-"));
const project = path.join(tmp, "project");
cpSync(path.resolve(import.meta.dirname, "../fixtures/autoresearch"), project, { recursive: true });
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function cli(...args: string[]) {
  return spawnSync(process.execPath, cliArgv("train", ...args), {
    encoding: "utf8",
    cwd: tmp,
    timeout: 120_000,
  });
}

test("--list prints every constant with the range it would use (a config's declarations marked)", () => {
  const r = cli("--script", "project/train.py", "--list");
  expect(r.status).toBe(0);
  expect(r.stdout).toMatch(/^train\.py: 20 top-level constant\(s\)/);
  expect(r.stdout).toMatch(/^ {2}MATRIX_LR +0\.04 +float \[0\.01, 0\.16\] log$/m);
  expect(r.stdout).toMatch(/^ {2}TOTAL_BATCH_SIZE +2\*\*19 +int \[131072, 2097152\] log, powers of two$/m);
  const config = path.join(tmp, "run.json");
  writeFileSync(
    config,
    JSON.stringify({
      trainer: {
        kind: "external",
        script: "project/train.py",
        params: {
          DEPTH: { min: 4, max: 16 },
          TOTAL_BATCH_SIZE: { constraint: "TOTAL_BATCH_SIZE % (DEVICE_BATCH_SIZE * MAX_SEQ_LEN) == 0" },
        },
      },
    }),
  );
  const declared = cli("--config", config, "--list");
  expect(declared.status).toBe(0);
  expect(declared.stdout).toMatch(/^\* DEPTH +8 +int \[4, 16\] log$/m);
  expect(declared.stdout).toMatch(
    /^\* TOTAL_BATCH_SIZE .*where TOTAL_BATCH_SIZE % \(DEVICE_BATCH_SIZE \* 2048\) == 0$/m,
  );
  // A proposal-like --set that breaks the declared constraint never starts the script.
  const broken = cli(
    "--config",
    config,
    "--set",
    "TOTAL_BATCH_SIZE=890212",
    "--work-dir",
    path.join(tmp, "broken"),
  );
  expect(broken.status).toBe(2);
  expect(broken.stderr).toMatch(
    /invalid-config: .*constraint "TOTAL_BATCH_SIZE % \(DEVICE_BATCH_SIZE \* 2048\) == 0" is false/,
  );
  expect(readFileSync(path.join(tmp, "broken", "train.log"), "utf8")).not.toMatch(/Gradient accumulation/);
});

test("--set runs one trial of the script and prints its summary block like the built-in trainer", () => {
  const work = path.join(tmp, "one");
  const r = cli(
    "--script",
    "project/train.py",
    "--set",
    "DEPTH=10",
    "--set",
    "TOTAL_BATCH_SIZE=2**18",
    "--work-dir",
    work,
  );
  expect(r.stderr).not.toMatch(/bilevel train:/);
  expect(r.status).toBe(0);
  expect(r.stdout).toMatch(/^---\nval_bpb: +\d\.\d{6}\n/);
  expect(r.stdout).toMatch(/^depth: +10$/m);
  const copy = readFileSync(path.join(work, "train.py"), "utf8");
  expect(copy).toMatch(/^TOTAL_BATCH_SIZE = 2\*\*18 /m);
  expect(copy).toMatch(/^DEPTH = 10 /m);
  // The budget is the script's own TIME_BUDGET (prepare.py's 3 s) when --budget is not given.
  expect(readFileSync(path.join(work, "train.log"), "utf8")).toMatch(/Time budget: 3s/);
});

test.each([
  [["--set", "SEQ_LEN=128"], /train\.py has no top-level constant SEQ_LEN \(its constants: ASPECT_RATIO, /],
  [["--set", "DEPTH=deep"], /DEPTH is a number in the script \(8\), got "deep"/],
  [["--set", "MAX_SEQ_LEN=1024"], /MAX_SEQ_LEN is imported into train\.py from another file/],
  [["--list"], /--list needs --script/],
])("%j is a usage error (exit 2)", (args, message) => {
  const r = cli(...(args[0] === "--list" ? args : ["--script", "project/train.py", ...args]));
  expect(r.status).toBe(2);
  expect(r.stderr).toMatch(message);
});
