// The bilevel program: its commands, each group in runtime/commands/ loaded only when the command
// line names it (a `mechanism check` loads neither the run, the trainer nor the report), and main().
// runtime/cli.ts is the entry that runs it.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { constants } from "node:os";
import path from "node:path";
import type { Command } from "commander";

type Register = (program: Command) => void;

/** The command groups, each the modules that register it. */
const GROUPS: Readonly<Record<string, () => Promise<Register>>> = {
  run: async () => (await import("./commands/run.ts")).registerRunCommands,
  llm: async () => (await import("./commands/llm.ts")).registerLlmCommands,
  train: async () => (await import("./commands/train.ts")).registerTrainCommand,
  report: async () => (await import("./commands/report.ts")).registerReportCommands,
  data: async () => (await import("./commands/data.ts")).registerDataCommand,
  mechanism: () => mechanismGroup(["check", "test", "approve", "new"]),
  study: async () => (await import("./commands/study.ts")).registerStudyCommand,
  surrogate: async () => (await import("./commands/surrogate.ts")).registerSurrogateCommands,
};

/** Each top-level command, and its group (see registerRunCommands and the others). */
export const COMMAND_GROUPS: Readonly<Record<string, keyof typeof GROUPS>> = {
  run: "run",
  demo: "run",
  config: "run",
  status: "run",
  export: "run",
  schema: "run",
  llm: "llm",
  train: "train",
  report: "report",
  serve: "report",
  data: "data",
  mechanism: "mechanism",
  study: "study",
  surrogate: "surrogate",
};

/** The `mechanism` group with the subcommands in `only` (`check` alone loads neither the harness nor the store). */
async function mechanismGroup(only: readonly string[]): Promise<Register> {
  const { registerMechanismCommands } = await import("./commands/mechanism.ts");
  const test = only.includes("test") ? await import("./commands/mechanism-test.ts") : null;
  const approve = only.includes("approve") ? await import("./commands/approve.ts") : null;
  const create = only.includes("new") ? await import("./commands/mechanism-new.ts") : null;
  return (program) => {
    const group = registerMechanismCommands(program);
    test?.registerMechanismTestCommand(group);
    approve?.registerApproveCommand(group);
    create?.registerMechanismNewCommand(group);
  };
}

/** What a command line needs registered: its own group, or every group (help, an unknown command). */
function groupsFor(argv: readonly string[] | undefined): (() => Promise<Register>)[] {
  const [command, sub] = argv?.slice(2) ?? [];
  const group = command === undefined ? undefined : COMMAND_GROUPS[command];
  if (group === undefined) return Object.values(GROUPS);
  if (group === "mechanism" && sub === "check") return [() => mechanismGroup(["check"])];
  return [GROUPS[group]!];
}

/** The program; with `argv`, only what that command line needs is loaded and registered. */
export async function buildProgram(argv?: readonly string[]): Promise<Command> {
  const { Command } = await import("commander");
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
  // Registered in a fixed order, whichever were loaded, so that help lists commands as always.
  // Loaded one after another: module loading is synchronous work anyway, and jest's ESM loader
  // fails ("... that is not linked") when two dynamic imports link a shared module at once.
  for (const load of groupsFor(argv)) (await load())(program);
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

/** Run the command line `argv` (as process.argv); returns the exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  // Everything after `test` goes to the launcher exactly as given (commander would drop a "--").
  if (argv[2] === "test") return runLauncherTest(argv.slice(3));
  const { CommanderError } = await import("commander");
  const program = await buildProgram(argv);
  try {
    await program.parseAsync([...argv]);
    return typeof process.exitCode === "number" ? process.exitCode : 0;
  } catch (error) {
    // Usage errors (bad flags, missing arguments) exit 2; --help and --version exit 0.
    if (error instanceof CommanderError) return error.exitCode === 0 ? 0 : 2;
    const [{ UserError }, { safeText }] = await Promise.all([
      import("./errors.ts"),
      import("./terminal-text.ts"),
    ]);
    // An error may quote a mechanism or a config file's keys: each of its lines is made safe.
    const message = error instanceof Error ? error.message : String(error);
    const lines = message.split("\n").map((line) => safeText(line, { maxLength: 2000 }));
    process.stderr.write(`bilevel: ${lines.join("\n")}\n`);
    if (error instanceof UserError) return error.exitCode;
    return 1;
  }
}
