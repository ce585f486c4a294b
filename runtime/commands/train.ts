// Placeholder until the trainer lands: `bilevel train`.
import type { Command } from "commander";

export function registerTrainCommand(program: Command): void {
  program.command("train").description("run one training trial");
}
