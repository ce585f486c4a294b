#!/usr/bin/env node
// The bilevel command line. Each command group lives in runtime/commands/.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { constants } from "node:os";
import path from "node:path";
import { Command, CommanderError } from "commander";
import { registerApproveCommand } from "./commands/approve.ts";
import { registerDataCommand } from "./commands/data.ts";
import { registerLlmCommands } from "./commands/llm.ts";
import { registerMechanismCommands } from "./commands/mechanism.ts";
import { registerMechanismTestCommand } from "./commands/mechanism-test.ts";
import { registerReportCommands } from "./commands/report.ts";
import { registerRunCommands } from "./commands/run.ts";
import { registerStudyCommand } from "./commands/study.ts";
import { registerSurrogateCommands } from "./commands/surrogate.ts";
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
    .description(
      "run every check: format, lint, types, python checks, jest (through the launcher ./bilevel; " +
        "arguments go to jest)",
    )
    .argument("[jest-args...]")
    .helpOption(false)
    .allowUnknownOption()
    .action((_args: string[], _options: unknown, command: Command) => {
      // main() passes `bilevel test ...` on before parsing; this serves other callers of the program.
      process.exitCode = runLauncherTest(command.args);
    });
  registerRunCommands(program);
  registerLlmCommands(program);
  registerTrainCommand(program);
  registerReportCommands(program);
  registerDataCommand(program);
  registerMechanismCommands(program);
  const mechanism = program.commands.find((c) => c.name() === "mechanism");
  if (!mechanism) throw new Error("the mechanism command group is missing");
  registerMechanismTestCommand(mechanism);
  registerApproveCommand(mechanism);
  registerStudyCommand(program);
  registerSurrogateCommands(program);
  return program;
}

/** The launcher at the repository root: it sets the machine up, then runs the checks. */
export const LAUNCHER = path.resolve(import.meta.dirname, "..", "bilevel");

/**
 * `bilevel test ARGS...` through the package's bin entry does what `./bilevel test ARGS...` does:
 * it runs the launcher (stdio inherited, this Node first on PATH) and returns its exit status.
 */
function runLauncherTest(args: readonly string[]): number {
  if (!existsSync(LAUNCHER)) {
    process.stderr.write(
      `bilevel test runs the project's checks through the launcher, which is missing: ${LAUNCHER}\n`,
    );
    return 2;
  }
  const result = spawnSync(LAUNCHER, ["test", ...args], {
    stdio: "inherit",
    env: {
      ...process.env,
      PATH: [path.dirname(process.execPath), process.env.PATH ?? ""].join(path.delimiter),
    },
  });
  if (result.error) {
    process.stderr.write(`bilevel test: could not run ${LAUNCHER}: ${result.error.message}\n`);
    return 2;
  }
  if (result.signal) return 128 + (constants.signals[result.signal] ?? 0);
  return result.status ?? 1;
}

async function main(argv: readonly string[]): Promise<number> {
  // Everything after `test` goes to the launcher exactly as given (commander would drop a "--").
  if (argv[2] === "test") return runLauncherTest(argv.slice(3));
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
