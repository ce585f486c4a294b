// A Trainer backed by the surrogate model: the predicted status and mean val_bpb of a config plus
// seeded noise of the measured σ. The same (seed, config) always gives the same value, as a rerun
// of a seeded trial would; another seed gives another draw, which is what the loop's baselines
// measure σ from.
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { outcome } from "../../trainer/torch-trainer.ts";
import type { Trainer, TrialOutcome, TrialRequest } from "../../trainer/types.ts";
import { spaceKey } from "../param-scale.ts";
import { createRng } from "../rng.ts";
import { readSurrogateFile } from "./data.ts";
import { loadModel, type SurrogateModel } from "./model.ts";

export interface SurrogateTrainerOptions {
  /** σ of the added noise; default: the model's measured σ. */
  readonly noise?: number;
  /** Simulated trial time (ms), spent before the result; 0 answers at once. */
  readonly delayMs?: number;
}

export class SurrogateTrainer implements Trainer {
  readonly model: SurrogateModel;
  private readonly sigma: number;
  private readonly delayMs: number;

  constructor(model: SurrogateModel, options: SurrogateTrainerOptions = {}) {
    this.model = model;
    this.sigma = options.noise ?? model.sigma;
    this.delayMs = options.delayMs ?? 0;
  }

  /** The noisy score of `config` for `seed` (null when the predicted status is a failure). */
  score(
    config: TrialRequest["config"],
    seed: number,
  ): { status: TrialOutcome["status"]; valBpb: number | null } {
    const p = this.model.predict(config);
    if (p.valBpb === null) return { status: p.status, valBpb: null };
    const rng = createRng("surrogate-noise", seed, spaceKey(this.model.params, config));
    return { status: "ok", valBpb: p.valBpb + this.sigma * rng.normal() };
  }

  async run(request: TrialRequest): Promise<TrialOutcome> {
    const started = Date.now();
    mkdirSync(request.workDir, { recursive: true });
    const logPath = path.join(request.workDir, "trial.log");
    if (this.delayMs > 0 && !request.signal?.aborted) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, this.delayMs);
        request.signal?.addEventListener("abort", () => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    const durationMs = Date.now() - started;
    if (request.signal?.aborted) return outcome("crashed", "aborted", logPath, started);
    const r = this.score(request.config, request.seed);
    const message = r.status === "ok" ? "ok (surrogate)" : `${r.status} (predicted by the surrogate)`;
    writeFileSync(logPath, `surrogate: ${r.status} ${r.valBpb ?? ""}\n`);
    return { status: r.status, valBpb: r.valBpb, result: null, message, exitCode: null, durationMs, logPath };
  }
}

/** The surrogate trainer of a recording (fitted once per file content; see loadModel). */
export function surrogateTrainer(file: string, options: SurrogateTrainerOptions = {}): SurrogateTrainer {
  const { text, data } = readSurrogateFile(file);
  return new SurrogateTrainer(loadModel(data, text), options);
}
