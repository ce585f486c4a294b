#!/usr/bin/env node
// The bilevel command line. Each command group lives in runtime/commands/.
import { Command, CommanderError } from "commander";
import { registerApproveCommand } from "./commands/approve.ts";
import { registerMechanismCommands } from "./commands/mechanism.ts";
import { registerMechanismTestCommand } from "./commands/mechanism-test.ts";
import { registerRunCommands } from "./commands/run.ts";
import { registerTrainCommand } from "./commands/train.ts";
import { UserError } from "./errors.ts";
import { safeText } from "./terminal-text.ts";

export function buildProgram(): Command {
  const program = new Command("bilevel")
    .description(
      "Bilevel autoresearch: an LLM tunes a GPT pretraining run while an outer loop writes " +
        "new search mechanisms in TypeScript and runs them in an isolated-vm sandbox.",
    )
    .showHelpAfterError("(run with --help for usage)")
    .exitOverride();
  program
    .command("test")
    .description("run every check: format, lint, types, python checks, jest (handled by ./bilevel)");
  registerRunCommands(program);
  registerTrainCommand(program);
  registerMechanismCommands(program);
  const mechanism = program.commands.find((c) => c.name() === "mechanism");
  if (!mechanism) throw new Error("the mechanism command group is missing");
  registerMechanismTestCommand(mechanism);
  registerApproveCommand(mechanism);
  return program;
}

async function main(argv: readonly string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync([...argv]);
    return typeof process.exitCode === "number" ? process.exitCode : 0;
  } catch (error) {
    // Usage errors (bad flags, missing arguments) exit 2; --help and --version exit 0.
    if (error instanceof CommanderError) return error.exitCode === 0 ? 0 : 2;
    // An error may quote a mechanism or a config file's keys: each of its lines is made safe.
    const message = error instanceof Error ? error.message : String(error);
    const lines = message.split("\n").map((line) => safeText(line, { maxLength: 2000 }));
    process.stderr.write(`bilevel: ${lines.join("\n")}\n`);
    if (error instanceof UserError) return error.exitCode;
    return 1;
  }
}

process.exitCode = await main(process.argv);
