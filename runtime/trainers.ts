// The trainer a run uses, from its config: the built-in Python trainer, a user's Karpathy-style
// train.py, the synthetic objective (mechanism development, tests, benchmarks), or the surrogate
// of recorded training (runtime/surrogate/; studies and benchmarks).
import { appendFileSync, mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import type { ParamSpec } from "../mechanism-api/index.d.ts";
import { ExternalTrainer } from "../trainer/external.ts";
import { outcome, TorchTrainer } from "../trainer/torch-trainer.ts";
import type { Trainer, TrialOutcome, TrialRequest } from "../trainer/types.ts";
import type { ResolvedRunConfig } from "./config.ts";
import { GitBranch } from "./git-branch.ts";
import { DEFAULT_SURROGATE_FILE } from "./surrogate/data.ts";
import { surrogateTrainer } from "./surrogate/trainer.ts";
import { syntheticObjective } from "./synthetic-objective.ts";

/** Scores configs with the synthetic objective after `delayMs`; seeded noise per (seed, config). */
export class SyntheticTrainer implements Trainer {
  private readonly params: readonly ParamSpec[];
  private readonly delayMs: number;
  private readonly noise: number;

  constructor(params: readonly ParamSpec[], delayMs: number, noise: number) {
    this.params = params;
    this.delayMs = delayMs;
    this.noise = noise;
  }

  async run(request: TrialRequest): Promise<TrialOutcome> {
    const started = Date.now();
    mkdirSync(request.workDir, { recursive: true });
    const logPath = path.join(request.workDir, "trial.log");
    if (this.delayMs > 0) {
      const steps = 10;
      for (let i = 1; i <= steps; i++) {
        if (request.signal?.aborted) break;
        await new Promise((resolve) => setTimeout(resolve, this.delayMs / steps));
        // The log grows while it trains, as a real trainer's does: a killed run's last sign of life.
        appendFileSync(logPath, `step ${i}/${steps}\n`);
        request.onProgress?.({
          step: i,
          loss: 3 - i * 0.1,
          elapsed: 0,
          tokensPerSecond: 0,
          progress: i / steps,
        });
      }
    }
    const durationMs = Date.now() - started;
    if (request.signal?.aborted) return outcome("crashed", "aborted", logPath, started);
    const key = JSON.stringify(Object.entries(request.config).sort());
    const r = syntheticObjective(this.params, request.config, {
      noiseSigma: this.noise,
      noiseSeed: request.seed,
      draw: hashString(key),
    });
    writeFileSync(logPath, `synthetic objective: ${r.status} ${r.valBpb ?? ""} ${r.message}\n`);
    return {
      status: r.status,
      valBpb: r.valBpb,
      result: null,
      message: r.message,
      exitCode: null,
      durationMs,
      logPath,
    };
  }
}

function hashString(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619) >>> 0;
  return h;
}

/** Where the trainer's run lives: a user's train.py under git puts its worktree in the run folder. */
export interface TrainerContext {
  readonly runDir?: string;
  /** A resumed run continues its git branch; a new one creates it (and refuses an existing one). */
  readonly resume?: boolean;
}

export function createTrainer(
  config: ResolvedRunConfig,
  params: readonly ParamSpec[],
  context: TrainerContext = {},
): Trainer {
  const t = config.trainer;
  switch (t.kind) {
    case "synthetic":
      return new SyntheticTrainer(params, t.delayMs, t.noise);
    case "surrogate":
      return surrogateTrainer(t.file ?? DEFAULT_SURROGATE_FILE, {
        ...(t.noise !== undefined ? { noise: t.noise } : {}),
        delayMs: t.delayMs ?? 0,
      });
    case "python":
      return new TorchTrainer({ envAllow: t.env ?? [], secretEnv: [config.llm.apiKeyEnv] });
    case "external":
      return externalTrainer(config, t, params, context);
  }
}

type ExternalConfig = Extract<ResolvedRunConfig["trainer"], { kind: "external" }>;

/**
 * A user's train.py: the adapter writes the constants whose value differs from the script's and
 * checks the search space's ranges and constraints first; with git, each trial is a commit on the
 * run's branch and the loop's verdict moves the branch.
 */
function externalTrainer(
  config: ResolvedRunConfig,
  t: ExternalConfig,
  params: readonly ParamSpec[],
  context: TrainerContext,
): Trainer {
  const git =
    t.git && context.runDir !== undefined
      ? new GitBranch({
          script: t.script,
          runDir: context.runDir,
          runName: config.name,
          resume: context.resume ?? false,
        })
      : null;
  const inner = new ExternalTrainer({
    script: t.script,
    ...(t.command ? { command: t.command } : {}),
    envAllow: t.env ?? [],
    secretEnv: [config.llm.apiKeyEnv],
    params,
    // The first baseline (the run seed) runs the script's own SEED as written.
    baseSeed: config.seed,
    ...(t.timeoutFactor !== undefined ? { timeoutFactor: t.timeoutFactor } : {}),
    ...(t.graceSeconds !== undefined ? { graceSeconds: t.graceSeconds } : {}),
    ...(git ? { recorder: (content: Buffer, message: string) => git.commit(content, message) } : {}),
  });
  if (!git) return inner;
  return {
    run: (request) => inner.run(request),
    begin: (incumbent) => git.open(incumbent),
    // Baselines are the script as on disk: the branch starts there.
    judged: (trial) => git.judged(trial.commit, trial.kept || trial.kind === "baseline"),
  };
}

/** The trainer request for one trial of a run: what the loop hands the trainer, and what `train --dry-run` shows. */
export function trialRequest(
  run: ResolvedRunConfig,
  trial: Pick<TrialRequest, "config" | "seed" | "workDir">,
): TrialRequest {
  return {
    config: trial.config,
    budgetSeconds: run.budgetSeconds,
    ...(run.maxSteps !== null ? { maxSteps: run.maxSteps } : {}),
    seed: trial.seed,
    device: run.device,
    ...(run.dataDir !== null ? { dataDir: run.dataDir } : {}),
    workDir: trial.workDir,
  };
}
