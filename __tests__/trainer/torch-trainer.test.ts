// Real trials of the Python trainer on the real corpus (CPU). Each failure class is
// produced for real and must come back classified, never thrown.
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { TorchTrainer } from "../../trainer/torch-trainer.ts";
import type { TrainerProgress } from "../../trainer/types.ts";
import { waitFor } from "../support/wait.ts";

const fixtures = path.resolve(import.meta.dirname, "../fixtures/trainer");
let tmp: string;
let cache: string;
let trainer: TorchTrainer;
let small: TorchTrainer; // a small eval set: for runs where only the outcome matters

beforeAll(() => {
  tmp = mkdtempSync(path.join(os.tmpdir(), "bilevel-trainer-"));
  cache = path.join(tmp, "cache");
  trainer = new TorchTrainer({ env: { BILEVEL_CACHE: cache } });
  small = new TorchTrainer({ env: { BILEVEL_CACHE: cache }, extraArgs: ["--eval-bytes", "16384"] });
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function unigramEntropyBits(bytes: Uint8Array): number {
  const counts = new Array<number>(256).fill(0);
  for (const b of bytes) counts[b] = (counts[b] ?? 0) + 1;
  let h = 0;
  for (const c of counts) if (c > 0) h -= (c / bytes.length) * Math.log2(c / bytes.length);
  return h;
}

// How far a time-budgeted run gets depends on the machine, so learning is tested on a fixed number
// of steps (20 steps reach ~3.5 bits per byte; the unigram entropy is ~4.4), and the time budget
// by a separate run that only checks that it stopped at the budget.
test("[slow] 20 steps on the real corpus get below the validation text's unigram byte entropy", async () => {
  const progress: TrainerProgress[] = [];
  const o = await trainer.run({
    config: {},
    budgetSeconds: 60,
    maxSteps: 20,
    seed: 0,
    device: "cpu",
    workDir: path.join(tmp, "learn"),
    onProgress: (p) => progress.push(p),
  });
  expect(o.message).toBe("ok");
  expect(o.status).toBe("ok");
  expect(o.exitCode).toBe(0);
  const r = o.result!;
  // The cache was prepared in BILEVEL_CACHE: tokens and per-token byte counts.
  const [key] = readdirSync(cache).filter((d) => !d.startsWith("."));
  const val = new Uint8Array(readFileSync(path.join(cache, key!, "val.bin")));
  const valBytes = readFileSync(path.join(cache, key!, "val_bytes.bin"));
  expect(valBytes.length).toBe(val.length);
  const entropy = unigramEntropyBits(val);
  expect(entropy).toBeGreaterThan(3.5); // English prose: ~4.4 bits per byte
  expect(o.valBpb).toBe(r.val_bpb);
  expect(r.val_bpb).toBeLessThan(entropy);
  expect(r.num_steps).toBe(20);
  expect(r.num_tokens).toBe(r.num_steps * 4096);
  expect(r.device).toBe("cpu");
  expect(r.mfu_percent).toBeNull();
  expect(r.config.DEPTH).toBe(2); // the CPU defaults filled in
  expect(progress.length).toBeGreaterThan(1);
  expect(progress.at(-1)!.progress).toBe(1);
  for (let i = 1; i < progress.length; i++) expect(progress[i]!.step).toBeGreaterThan(progress[i - 1]!.step);
  const log = readFileSync(o.logPath, "utf8");
  expect(log).toMatch(/^val_bpb: +\d+\.\d{6}$/m); // Karpathy's summary block, for grep-based tools
  expect(log).toMatch(/^training_seconds: /m);
  expect(log).toMatch(/^num_steps: +\d+$/m);
}, 120_000);

test("a time-budgeted run trains until the budget is spent, however many steps that takes", async () => {
  const progress: TrainerProgress[] = [];
  const o = await small.run({
    config: {},
    budgetSeconds: 2,
    seed: 0,
    device: "cpu",
    workDir: path.join(tmp, "budget"),
    onProgress: (p) => progress.push(p),
  });
  expect(o.status).toBe("ok");
  expect(o.result!.training_seconds).toBeGreaterThanOrEqual(2);
  expect(o.result!.num_steps).toBeGreaterThanOrEqual(1);
  expect(progress.at(-1)!.progress).toBe(1);
}, 60_000);

test("same seed and MAX_STEPS give the same val_bpb; another seed does not", async () => {
  const run = (seed: number, name: string) =>
    small.run({
      config: {},
      budgetSeconds: 30,
      maxSteps: 3,
      seed,
      device: "cpu",
      workDir: path.join(tmp, name),
    });
  const a = await run(3, "det-a");
  const b = await run(3, "det-b");
  const c = await run(4, "det-c");
  expect([a.status, b.status, c.status]).toEqual(["ok", "ok", "ok"]);
  expect(a.result!.num_steps).toBe(3);
  expect(Math.abs(a.valBpb! - b.valBpb!)).toBeLessThan(1e-6);
  expect(Math.abs(a.valBpb! - c.valBpb!)).toBeGreaterThan(1e-6);
}, 60_000);

test("a diverging learning rate is classified as diverged (exit 4)", async () => {
  const o = await small.run({
    config: { EMBEDDING_LR: 3, UNEMBEDDING_LR: 0.3, MATRIX_LR: 1 },
    budgetSeconds: 30,
    maxSteps: 30,
    seed: 0,
    device: "cpu",
    workDir: path.join(tmp, "diverge"),
  });
  expect(o.status).toBe("diverged");
  expect(o.exitCode).toBe(4);
  expect(o.valBpb).toBeNull();
  expect(o.result).toBeNull();
  expect(o.message).toMatch(/loss .* at step \d+/);
}, 60_000);

test("an invalid config is refused before anything runs", async () => {
  const o = await trainer.run({
    config: { DEPTH: 99, WINDOW_PATTERN: "Q" },
    budgetSeconds: 5,
    seed: 0,
    device: "cpu",
    workDir: path.join(tmp, "invalid"),
  });
  expect(o.status).toBe("invalid-config");
  expect(o.exitCode).toBeNull(); // no process was started
  expect(o.message).toMatch(/DEPTH must be in/);
  expect(o.message).toMatch(/WINDOW_PATTERN/);
  expect(readFileSync(o.logPath, "utf8")).toMatch(/invalid config/);
  for (const bad of [
    { budgetSeconds: 0, seed: 0 },
    { budgetSeconds: Number.NaN, seed: 0 },
    { budgetSeconds: 5, seed: -1 },
    { budgetSeconds: 5, seed: 0, maxSteps: 0.5 },
  ]) {
    const r = await trainer.run({ config: {}, device: "cpu", workDir: path.join(tmp, "invalid2"), ...bad });
    expect(r.status).toBe("invalid-config");
  }
});

test("an invalid config found by the trainer itself is exit 2 (too little validation text)", async () => {
  const o = await trainer.run({
    config: {},
    budgetSeconds: 5,
    seed: 0,
    device: "cpu",
    dataDir: fixtures, // a few KB of Python files and no .txt: nothing to train on
    workDir: path.join(tmp, "invalid-data"),
  });
  expect(o.status).toBe("invalid-config");
  expect(o.exitCode).toBe(2);
  expect(o.message).toMatch(/no \.txt or \.jsonl files/);
}, 30_000);

/** Processes as [pid, process group, cwd, state] (those we may not read are skipped). */
function processes(): { pid: number; pgrp: number; cwd: string; zombie: boolean }[] {
  const out: { pid: number; pgrp: number; cwd: string; zombie: boolean }[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, "utf8");
      const [state, , pgrp] = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      out.push({
        pid: Number(name),
        pgrp: Number(pgrp),
        cwd: readlinkSync(`/proc/${name}/cwd`),
        zombie: state === "Z",
      });
    } catch {
      // Gone meanwhile, or not ours.
    }
  }
  return out;
}

test("a trial that overruns budget × factor + grace is killed and classified as timeout; its process group is gone", async () => {
  const quick = new TorchTrainer({ env: { BILEVEL_CACHE: cache }, timeoutFactor: 1, graceSeconds: 4 });
  const workDir = path.join(tmp, "timeout");
  // The trainer leads its own process group and runs in workDir. It is found from /proc while the
  // trial runs, whether or not it got as far as a progress line before the 5 s deadline.
  const seen: { leader?: { pid: number; pgrp: number }; settled?: boolean } = {};
  const finding = waitFor(() => {
    seen.leader ??= processes().find((p) => p.cwd === workDir && p.pid === p.pgrp && !p.zombie);
    return seen.leader !== undefined || seen.settled === true;
  });
  const o = await quick.run({
    config: {},
    budgetSeconds: 1,
    maxSteps: 1_000_000, // MAX_STEPS overrides the time budget: the trainer never stops by itself
    seed: 0,
    device: "cpu",
    workDir,
  });
  seen.settled = true;
  await finding;
  expect(o.status).toBe("timeout");
  expect(o.message).toMatch(/killed after 5 s/);
  expect(seen.leader).toBeDefined();
  const pgrp = seen.leader!.pgrp;
  const left = () => processes().filter((p) => !p.zombie && p.pgrp === pgrp);
  // The kernel takes a moment to take down SIGKILLed members; a survivor fails the test by its timeout.
  try {
    await waitFor(() => left().length === 0);
  } finally {
    for (const p of left()) process.kill(p.pid, "SIGKILL"); // never leave one behind
  }
}, 60_000);

test("the validation bytes do not depend on SEQ_LEN or the batch size", async () => {
  const configs = [
    { SEQ_LEN: 128, DEVICE_BATCH_SIZE: 32, TOTAL_BATCH_SIZE: 4096 },
    { SEQ_LEN: 96, DEVICE_BATCH_SIZE: 4, TOTAL_BATCH_SIZE: 768 }, // 2048 = 21 × 96 + 32: a tail window
    { SEQ_LEN: 512, DEVICE_BATCH_SIZE: 2, TOTAL_BATCH_SIZE: 2048 },
  ];
  const evalBytes: number[] = [];
  for (const [i, config] of configs.entries()) {
    const o = await small.run({
      config,
      budgetSeconds: 30,
      maxSteps: 1,
      seed: 0,
      device: "cpu",
      workDir: path.join(tmp, `eval-bytes-${i}`),
    });
    expect(o.status).toBe("ok");
    // eval_bytes is an extra field of the result record (not in the contract): read the log.
    const record = readFileSync(o.logPath, "utf8")
      .split("\n")
      .find((l) => l.startsWith('{"event": "result"'));
    evalBytes.push((JSON.parse(record!) as { eval_bytes: number }).eval_bytes);
  }
  expect(evalBytes).toEqual([16384, 16384, 16384]); // --eval-bytes 16384, one byte per token
}, 60_000);

test("an allocation failure inside the trainer is classified as oom (exit 3)", async () => {
  const capped = new TorchTrainer({
    python: path.join(fixtures, "python-memlimit.sh"),
    env: { BILEVEL_CACHE: cache, MEMLIMIT_KB: "2000000" },
    extraArgs: ["--eval-bytes", "2048"],
  });
  const o = await capped.run({
    config: { DEVICE_BATCH_SIZE: 64, SEQ_LEN: 2048 },
    budgetSeconds: 30,
    maxSteps: 2,
    seed: 0,
    device: "cpu",
    workDir: path.join(tmp, "oom"),
  });
  expect(o.status).toBe("oom");
  expect(o.exitCode).toBe(3);
  expect(o.message).toMatch(/out of memory/);
}, 60_000);

test("abort kills the trial; the outcome is crashed with message aborted", async () => {
  const controller = new AbortController();
  const o = await small.run({
    config: {},
    budgetSeconds: 60,
    seed: 0,
    device: "cpu",
    workDir: path.join(tmp, "abort"),
    signal: controller.signal,
    onProgress: () => controller.abort(),
  });
  expect(o.status).toBe("crashed");
  expect(o.message).toBe("aborted");
  // Killed at its first progress line, long before the 60 s budget: no result record.
  expect(o.result).toBeNull();
  expect(readFileSync(o.logPath, "utf8")).not.toMatch(/"event": "result"/);
}, 60_000);
