// The executor a run's config asks for.
import type { Trainer } from "../../trainer/types.ts";
import type { ResolvedRunConfig } from "../config.ts";
import { LocalExecutor } from "./local.ts";
import { SlurmExecutor } from "./slurm.ts";
import type { Executor } from "./types.ts";

export function createExecutor(config: ResolvedRunConfig, trainer: Trainer): Executor {
  const executor = config.executor ?? { kind: "local" };
  if (executor.kind === "slurm") return new SlurmExecutor(config, executor);
  return new LocalExecutor(trainer, {
    slots: config.parallel ?? 1,
    device: config.device,
    ...(executor.gpus !== undefined ? { gpus: executor.gpus } : {}),
    ...(executor.cores !== undefined ? { cores: executor.cores } : {}),
  });
}
