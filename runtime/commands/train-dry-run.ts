// `bilevel train --dry-run`: resolve the trial exactly as a run would (resolveRunConfig: device,
// the device's defaults, the evaluation size against the data), find its interpreter with the
// trials' own lookup, and have the trainer plan it (`python -m trainer --dry-run`: data, model
// size, memory estimate against the device's free memory when there is one). Prints what would
// run; exit 0 when nothing would fail, else the failure's class (2 config or data, 3 memory,
// 1 no interpreter). A missing GPU is a note, not a failure: the plan is the point.
import { spawnSync } from "node:child_process";
import type { ParamValue } from "../../mechanism-api/index.d.ts";
import { childEnv } from "../../trainer/child-env.ts";
import { findPython } from "../../trainer/python.ts";
import { trainerEnv, trialArgs } from "../../trainer/torch-trainer.ts";
import type { Device, TrialRequest } from "../../trainer/types.ts";
import { ConfigError, resolveRunConfig } from "../config.ts";
import { trialRequest } from "../trainers.ts";

export interface DryRunInput {
  readonly config: Record<string, ParamValue>;
  readonly budgetSeconds: number;
  readonly maxSteps?: number;
  readonly seed: number;
  readonly device: Device;
  readonly dataDir?: string;
  readonly workDir: string;
}

type Plan = Record<string, unknown>;

interface DryRunReport {
  device: "cpu" | "cuda";
  python: string;
  notes: string[];
  command: string[];
  plan: Plan | null;
  error: string | null;
  exitCode: number;
}

function quote(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", "'\\''")}'`;
}

/** The trainer's interpreter for the device, or (no CUDA one here) a CPU one to plan with. */
function interpreter(device: "cpu" | "cuda", notes: string[]): string | null {
  const found = findPython("torch", process.env, device);
  if (found.ok) {
    notes.push(
      `python: ${found.python} (torch ${found.torch}, ${found.cuda ? "sees a CUDA device" : "CPU only"})`,
    );
    return found.python;
  }
  if (device !== "cuda") return null;
  notes.push(`no CUDA here: ${found.error}; a real CUDA trial would be refused (invalid-config)`);
  const cpu = findPython("torch", process.env, "cpu");
  if (!cpu.ok) return null;
  notes.push(`planning with ${cpu.python} (torch ${cpu.torch}) instead`);
  return cpu.python;
}

function plan(
  python: string,
  request: TrialRequest,
): { plan: Plan | null; error: string | null; code: number } {
  const r = spawnSync(python, [...trialArgs(request), "--dry-run"], {
    cwd: process.cwd(),
    encoding: "utf8",
    timeout: 900_000,
    maxBuffer: 16 * 1024 * 1024,
    env: trainerEnv(childEnv(process.env)),
  });
  let found: Plan | null = null;
  let error: string | null = null;
  for (const line of (r.stdout ?? "").split("\n")) {
    if (!line.startsWith("{")) continue;
    const rec = JSON.parse(line) as Plan & { event?: string; message?: string };
    if (rec.event === "plan") found = rec;
    if (rec.event === "error") error = rec.message ?? null;
  }
  const code = r.status ?? 1;
  if (code !== 0 && error === null) error = (r.stderr ?? "").trim().split("\n").at(-1) || `exit ${code}`;
  return { plan: found, error, code };
}

/** Resolve, look up and plan; the report says what would run and what would fail. */
export function dryRun(input: DryRunInput): DryRunReport {
  const resolved = resolveRunConfig(
    {
      device: input.device,
      dataDir: input.dataDir ?? null,
      startConfig: input.config,
      budgetSeconds: input.budgetSeconds,
      maxSteps: input.maxSteps ?? null,
      seed: input.seed,
    },
    { baseDir: process.cwd(), label: "bilevel train --dry-run" },
  );
  const request = trialRequest(resolved, {
    config: resolved.startConfig,
    seed: resolved.seed,
    workDir: input.workDir,
  });
  const notes: string[] = [];
  const python = interpreter(resolved.device, notes);
  const command = [python ?? "python3", ...trialArgs(request)];
  if (python === null) {
    const error = findPython("torch", process.env, "cpu");
    const why = error.ok ? "no interpreter" : error.error;
    return { device: resolved.device, python: "", notes, command, plan: null, error: why, exitCode: 1 };
  }
  const p = plan(python, request);
  return { device: resolved.device, python, notes, command, plan: p.plan, error: p.error, exitCode: p.code };
}

function mib(x: unknown): string {
  return typeof x === "number" ? `${(x / 1024).toFixed(2)} GiB` : "unknown (no such device here)";
}

/** The report as text: what would run, and why it would not. */
export function formatDryRun(r: DryRunReport): string {
  const p = r.plan ?? {};
  const config = (p.config ?? {}) as Record<string, unknown>;
  const lines = [
    `device:       ${r.device}`,
    ...r.notes.map((n) => `note:         ${n}`),
    `command:      ${r.command.map(quote).join(" ")}`,
  ];
  if (r.plan) {
    lines.push(
      `config:       ${Object.entries(config)
        .map(([k, v]) => `${k}=${String(v)}`)
        .join(" ")}`,
      `data:         ${String(p.data)} (train ${String(p.train_tokens)} tokens, validation ${String(p.val_tokens)})`,
      `evaluation:   ${String(p.eval_bytes)} bytes (the validation split has ${String(p.val_tokens)})`,
      `model:        ${String(p.num_params)} parameters, d_model ${String(p.d_model)}, ${String(p.flops_per_token)} FLOPs/token`,
      `step:         ${String(p.tokens_per_step)} tokens, gradient accumulation ${String(p.grad_accum_steps)}, ${String(p.dtype)}, compile ${String(p.compile)}`,
      `memory:       parameters + gradients + optimizer ${mib(p.memory_needed_mb)}; free ${mib(p.memory_free_mb)}`,
    );
    if (typeof p.data_passes === "number") lines.push(`data passes:  ${p.data_passes.toFixed(2)}`);
  }
  lines.push(
    r.exitCode === 0
      ? "verdict:      would run"
      : `verdict:      would fail (exit ${r.exitCode}): ${r.error}`,
  );
  return `${lines.join("\n")}\n`;
}

/** For the train command: the exit code; a bad config is a ConfigError's message and 2. */
export function runDryRun(input: DryRunInput, json: boolean): number {
  let report: DryRunReport;
  try {
    report = dryRun(input);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(`bilevel train --dry-run: ${error.message}\n`);
    return 2;
  }
  process.stdout.write(json ? `${JSON.stringify(report)}\n` : formatDryRun(report));
  return report.exitCode;
}
