// Placeholder until the loop lands: `bilevel run|demo|status|export`.
import type { Command } from "commander";

export function registerRunCommands(program: Command): void {
  program.command("demo").description("an offline bilevel run on the CPU trainer");
}
