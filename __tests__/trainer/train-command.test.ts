// `bilevel train`: bad input is exit 2 before anything runs; --json prints one object.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { cliArgv } from "../support/cli.ts";

let tmp: string;
beforeAll(() => {
  tmp = mkdtempSync(path.join(os.tmpdir(), "bilevel-train-cli-"));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function train(...args: string[]) {
  return spawnSync(process.execPath, cliArgv("train", ...args), {
    encoding: "utf8",
    env: { ...process.env, BILEVEL_CACHE: path.join(tmp, "cache") },
    timeout: 120_000,
  });
}

test.each([
  [["--set", "DEPTH=banana"], /DEPTH must be a number/],
  [["--set", "DEPTH=0"], /DEPTH must be in \[1, 24\]/],
  [["--set", "LEARNING_RATE=0.1"], /unknown hyperparameter "LEARNING_RATE"/],
  [["--set", "SEED=3"], /run option/],
  [["--set", "DEPTH"], /KEY=VALUE/],
  [["--set", "WINDOW_PATTERN=ABC"], /WINDOW_PATTERN must be one of/],
  [["--budget", "0"], /--budget must be a number > 0/],
  [["--budget", "soon"], /--budget/],
  [["--max-steps", "2.5"], /--max-steps must be an integer >= 1/],
  [["--seed", "-1"], /--seed must be an integer >= 0/],
  [["--device", "tpu"], /Allowed choices are auto, cpu, cuda/],
  [["--data", "/definitely/not/here"], /is not a folder/],
  [["--frobnicate"], /unknown option '--frobnicate'/],
  [["--budget"], /argument missing/],
])("bilevel train %j is exit 2 with a clear error and runs nothing", (args, error) => {
  const workDir = path.join(tmp, "never");
  const r = train("--work-dir", workDir, ...args);
  expect(r.stderr).toMatch(error);
  expect(r.status).toBe(2);
  expect(r.stdout).toBe("");
  expect(existsSync(workDir)).toBe(false);
});

test("several bad values are all reported at once", () => {
  const r = train("--set", "DEPTH=0", "--set", "NOPE=1", "--seed", "x");
  expect(r.status).toBe(2);
  expect(r.stderr.split("\n").filter((l) => /must|unknown/.test(l))).toHaveLength(3);
});

test("--json prints exactly one outcome object on stdout", () => {
  const workDir = path.join(tmp, "ok");
  const r = train(
    "--max-steps",
    "2",
    "--device",
    "cpu",
    "--set",
    "ADAM_BETAS=0.9,0.99",
    "--json",
    "--work-dir",
    workDir,
  );
  expect(r.status).toBe(0);
  const lines = r.stdout.trim().split("\n");
  expect(lines).toHaveLength(1);
  const outcome = JSON.parse(lines[0]!);
  expect(outcome.status).toBe("ok");
  expect(outcome.result.num_steps).toBe(2);
  expect(outcome.result.config.ADAM_BETA1).toBe(0.9);
  expect(outcome.result.config.ADAM_BETA2).toBe(0.99);
  expect(outcome.logPath).toBe(path.join(workDir, "trainer.log"));
}, 60_000);

test("without --json the summary block goes to stdout; a failed trial exits with its class's code", () => {
  const r = train(
    "--max-steps",
    "30",
    "--device",
    "cpu",
    "--set",
    "UNEMBEDDING_LR=0.3",
    "--set",
    "EMBEDDING_LR=3",
    "--set",
    "MATRIX_LR=1",
    "--work-dir",
    path.join(tmp, "div"),
  );
  expect(r.status).toBe(4);
  expect(r.stdout).toMatch(/status: diverged/);
  expect(r.stderr).toMatch(/diverged/);
}, 60_000);

test("--dry-run --device cuda resolves the CUDA trial as a run would and exits 0 without a GPU", () => {
  const workDir = path.join(tmp, "dry");
  const r = train("--device", "cuda", "--dry-run", "--work-dir", workDir);
  expect(r.stderr).toBe("");
  expect(r.status).toBe(0);
  expect(r.stdout).toMatch(/^device: +cuda$/m);
  expect(r.stdout).toMatch(/DEPTH=8 .*HEAD_DIM=128 .*SEQ_LEN=2048/); // the GPU defaults
  expect(r.stdout).toMatch(/^evaluation: +524288 bytes \(the validation split has 1048576\)$/m);
  expect(r.stdout).toMatch(
    /^command: +\S+ -m trainer --config '\{"DEPTH":8,.*' --budget 60 --seed 0 --device cuda$/m,
  );
  expect(r.stdout).toMatch(/^memory: +parameters \+ gradients \+ optimizer 0\.47 GiB/m);
  expect(r.stdout).toMatch(/^verdict: +would run$/m);
  expect(existsSync(workDir)).toBe(false); // nothing ran
}, 120_000);

test("--dry-run names what would fail: an evaluation size larger than the data's validation split", () => {
  const dir = path.join(tmp, "two-mb");
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, "a.txt"), "All work and no play. ".repeat(100_000));
  const r = train("--device", "cuda", "--dry-run", "--data", dir);
  expect(r.status).toBe(2);
  expect(r.stderr).toMatch(
    /evaluation size \(524288 bytes\) does not fit the validation split .*\(196608 bytes; it needs at least 524289\)/,
  );
}, 60_000);

test("--dry-run --json: the plan of a config too large for this host's memory, exit 3", () => {
  const r = train("--device", "cpu", "--dry-run", "--json", "--set", "DEPTH=24", "--set", "ASPECT_RATIO=256");
  const report = JSON.parse(r.stdout);
  expect(report.plan.num_params).toBeGreaterThan(1e10);
  if (report.plan.memory_free_mb > report.plan.memory_needed_mb) return; // a host that large would train it
  expect(r.status).toBe(3);
  expect(report.exitCode).toBe(3);
  expect(report.error).toMatch(/need about 202\.5 GiB/);
}, 60_000);
