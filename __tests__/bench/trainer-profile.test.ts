// bench/trainer_profile.py (BENCH_PROFILE=1 of bench:trainer): it profiles both models on a small
// config and attributes their time to the phases of a step. No timing thresholds: what is checked
// is where time is found (Muon's matmuls in the trainer's optimizer, none in AdamW's) and that
// the figures are consistent with each other.
import { spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { REFERENCE_MODEL } from "../../bench/reference-model.ts";
import { defaultConfig } from "../../trainer/search-space.ts";
import { trainerEnv } from "../../trainer/torch-trainer.ts";

const repo = path.resolve(import.meta.dirname, "../..");

interface Model {
  step_ms: number;
  fixed_ms: number;
  per_sample_ms: number;
  phases: Record<string, { matmul: number; other: number; outside: number }>;
  top: { ms: number; calls: number; op: string }[];
}

function profile(config: Record<string, unknown>, extra: string[] = []) {
  const modelFile = path.join(mkdtempSync(path.join(os.tmpdir(), "bilevel-profile-")), "reference_model.py");
  writeFileSync(modelFile, REFERENCE_MODEL);
  const args = [path.join(repo, "bench/trainer_profile.py"), "--config", JSON.stringify(config)];
  return spawnSync("/usr/bin/python3", [...args, "--reference", modelFile, ...extra], {
    cwd: repo,
    encoding: "utf8",
    timeout: 240_000,
    env: trainerEnv(process.env as Record<string, string>),
  });
}

test("the step profile finds each phase's time in both models, Muon's matmuls only in the trainer", () => {
  const small = {
    ...defaultConfig("cpu"),
    DEPTH: 1,
    DEVICE_BATCH_SIZE: 4,
    SEQ_LEN: 64,
    TOTAL_BATCH_SIZE: 256,
  };
  const r = profile(small, ["--steps", "3", "--rounds", "1"]);
  expect(r.stderr).toBe("");
  expect(r.status).toBe(0);
  const out = JSON.parse(r.stdout) as { batch: number; steps: number; trainer: Model; reference: Model };
  expect(out).toMatchObject({ batch: 4, steps: 3 });
  for (const m of [out.trainer, out.reference]) {
    expect(Object.keys(m.phases)).toEqual(["data", "forward", "backward", "optimizer"]);
    for (const phase of ["forward", "backward"]) {
      expect(m.phases[phase]!.matmul).toBeGreaterThan(0);
      expect(m.phases[phase]!.other).toBeGreaterThan(0);
    }
    for (const p of Object.values(m.phases))
      for (const v of Object.values(p)) expect(v).toBeGreaterThanOrEqual(0);
    expect(m.step_ms).toBeGreaterThan(0);
    expect(m.top.length).toBeGreaterThan(3);
    expect(m.top.map((t) => t.ms)).toEqual([...m.top.map((t) => t.ms)].sort((a, b) => b - a));
  }
  // Muon orthogonalizes with matrix products; AdamW's update is elementwise.
  expect(out.trainer.phases.optimizer!.matmul).toBeGreaterThan(0);
  expect(out.reference.phases.optimizer!.matmul).toBe(0);
}, 240_000);

test("the step profile refuses a config it cannot build, naming what is wrong, before any work", () => {
  const partial = profile({ DEPTH: 1 });
  expect(partial.status).toBe(2);
  expect(partial.stderr).toMatch(/--config lacks ADAM_BETA1, .*ASPECT_RATIO, .*SEQ_LEN/);
  const garbage = spawnSync(
    "/usr/bin/python3",
    [path.join(repo, "bench/trainer_profile.py"), "--config", "{oops", "--reference", "x"],
    {
      cwd: repo,
      encoding: "utf8",
      env: trainerEnv(process.env as Record<string, string>),
    },
  );
  expect(garbage.status).toBe(2);
  expect(garbage.stderr).toMatch(/--config is not JSON/);
});
