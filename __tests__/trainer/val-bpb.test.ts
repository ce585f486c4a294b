// The val_bpb formula (trainer/train.py evaluate) on models whose answer is known exactly.
import { spawnSync } from "node:child_process";
import path from "node:path";

const repo = path.resolve(import.meta.dirname, "../..");

test("evaluate gives 8 bits per byte for uniform logits, 1 for p = 1/2, and divides by UTF-8 bytes", () => {
  const r = spawnSync("/usr/bin/python3", [path.join(repo, "__tests__/fixtures/trainer/val_bpb_check.py")], {
    cwd: repo,
    encoding: "utf8",
    timeout: 60_000,
    env: { ...process.env, PYTHONPATH: repo, OPENBLAS_NUM_THREADS: "1" },
  });
  expect(r.stderr).toBe("");
  expect(r.status).toBe(0);
  const out = JSON.parse(r.stdout) as Record<string, [number, number]>;
  expect(out.uniform![0]).toBeCloseTo(8, 5);
  expect(out.uniform![1]).toBe(4096); // --eval-bytes 4096 of byte tokens
  expect(out.uniform_tail![0]).toBeCloseTo(8, 5); // SEQ_LEN 100: the tail windows count too
  expect(out.uniform_tail![1]).toBe(4096);
  expect(out.half![0]).toBeCloseTo(1, 5);
  expect(out.two_bytes![0]).toBeCloseTo(4, 5); // ln 256 nats over 2 bytes per token
  expect(out.two_bytes![1]).toBe(8192);
  expect(out.special![0]).toBeCloseTo(8, 5); // 0-byte tokens are neither scored nor counted
  expect(out.special![1]).toBe(2048); // every other target is a special token
}, 60_000);
