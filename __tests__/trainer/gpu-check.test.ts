// The GPU check (trainer/gpu_check.sh) in its CPU dry mode: every stage end to end, the CUDA
// plan resolved for real by the trainer (GPU defaults, their evaluation size against the
// default corpus, the memory estimate), and the loop's CUDA command exactly as the adapter
// builds it.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { resolveRunConfig } from "../../runtime/config.ts";
import { defaultConfig, defaultEvalBytes } from "../../trainer/search-space.ts";
import { trialArgs } from "../../trainer/torch-trainer.ts";

const repo = path.resolve(import.meta.dirname, "../..");
let tmp: string;
/** gpu_check.json: the figures of each stage (and `dry`). */
let figures: Record<string, Record<string, unknown>> & { dry?: unknown };
let stdout: string;

beforeAll(() => {
  tmp = mkdtempSync(path.join(os.tmpdir(), "bilevel-gpu-check-"));
  const r = spawnSync(
    "bash",
    [path.join(repo, "trainer/gpu_check.sh"), "--dry", "--out", path.join(tmp, "out")],
    {
      encoding: "utf8",
      timeout: 300_000,
      env: { ...process.env, BILEVEL_CACHE: path.join(tmp, "cache"), OUT: "" },
    },
  );
  if (r.status !== 0) throw new Error(`gpu_check.sh --dry exited ${r.status}: ${r.stderr}\n${r.stdout}`);
  stdout = r.stdout;
  figures = JSON.parse(readFileSync(path.join(tmp, "out", "gpu_check.json"), "utf8"));
}, 300_000);
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

test("[slow] the dry mode resolves the loop's CUDA trial for real: GPU defaults whose evaluation fits the data", () => {
  const plan = figures.plan!;
  expect(plan.status).toBe("ok");
  expect(plan.config).toEqual(defaultConfig("cuda"));
  expect(plan.eval_bytes).toBe(defaultEvalBytes("cuda"));
  expect(plan.val_tokens).toBeGreaterThanOrEqual(Number(plan.eval_bytes) + 1);
  expect(plan.memory_needed_mb).toBeGreaterThan(0);
  expect(plan.memory_fits).toBeNull(); // no GPU here to compare with
  expect(stdout).toMatch(/== plan/);
});

test("[slow] the command it prints is the one the loop's first CUDA trial runs", () => {
  const run = resolveRunConfig({ device: "cuda" }, { baseDir: tmp, label: "t" });
  const args = trialArgs({
    config: run.startConfig,
    budgetSeconds: run.budgetSeconds,
    seed: run.seed,
    device: run.device,
    workDir: tmp,
  });
  expect(figures.plan!.loop_args).toEqual(args);
});

test("[slow] every other stage ran in miniature on the CPU", () => {
  expect(figures.dry).toBe(true);
  const f = (stage: string) => figures[stage] ?? {};
  expect(f("env").torch).toBeTruthy();
  expect((f("kernels").attention_kernels as unknown[]).length).toBeGreaterThan(0);
  expect(f("parity").grad_cosine_bf16_eager).toBeGreaterThan(0.99);
  expect(f("parity").causal_leak_eager).toBe(0);
  expect(f("trial").status).toBe("ok");
  expect(f("trial").val_bpb).toBeGreaterThan(0);
  expect(f("trial").step_ms_p50).toBeGreaterThan(0);
  expect(f("warm").status).toBe("ok");
  expect([f("windows").status_L, f("windows").status_SSSL]).toEqual(["ok", "ok"]);
  expect(f("failures").largest_status).toBe("oom");
  expect(f("failures").diverging_status).toBe("diverged");
  expect(f("spread").spread).toBe(0); // the CPU is deterministic; CUDA is measured, not assumed
});
