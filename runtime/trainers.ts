// The trainer a run uses, from its config: the built-in Python trainer, a user's Karpathy-style
// train.py, the synthetic objective (mechanism development, tests, benchmarks), or the surrogate
// of recorded training (runtime/surrogate/; studies and benchmarks).
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import type { ParamSpec } from "../mechanism-api/index.d.ts";
import { ExternalTrainer } from "../trainer/external.ts";
import { TorchTrainer } from "../trainer/torch-trainer.ts";
import type { Trainer, TrialOutcome, TrialRequest } from "../trainer/types.ts";
import type { ResolvedRunConfig } from "./config.ts";
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
    const started = performance.now();
    mkdirSync(request.workDir, { recursive: true });
    const logPath = path.join(request.workDir, "trial.log");
    if (this.delayMs > 0) {
      const steps = 10;
      for (let i = 1; i <= steps; i++) {
        if (request.signal?.aborted) break;
        await new Promise((resolve) => setTimeout(resolve, this.delayMs / steps));
        request.onProgress?.({
          step: i,
          loss: 3 - i * 0.1,
          elapsed: 0,
          tokensPerSecond: 0,
          progress: i / steps,
        });
      }
    }
    const durationMs = performance.now() - started;
    if (request.signal?.aborted) {
      return {
        status: "crashed",
        valBpb: null,
        result: null,
        message: "aborted",
        exitCode: null,
        durationMs,
        logPath,
      };
    }
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

export function createTrainer(config: ResolvedRunConfig, params: readonly ParamSpec[]): Trainer {
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
    case "external": {
      // Only the searched constants are written into the user's script; the rest keep its own values.
      // resolveRunConfig refuses an external trainer without activeParams.
      const searched = config.activeParams ?? [];
      const inner = new ExternalTrainer({
        script: t.script,
        ...(t.command ? { command: t.command } : {}),
        envAllow: t.env ?? [],
        secretEnv: [config.llm.apiKeyEnv],
      });
      return {
        run: (request) =>
          inner.run({
            ...request,
            config: Object.fromEntries(Object.entries(request.config).filter(([k]) => searched.includes(k))),
          }),
      };
    }
  }
}
