// Placeholder until the sandbox lands: `bilevel mechanism check|test`.
import type { Command } from "commander";

export function registerMechanismCommands(program: Command): void {
  program.command("mechanism").description("check and test search mechanisms (sandbox)");
}
