// `bilevel mechanism …`: the command group, and `check FILE.ts [--json]` — compile, lint, load and
// dry-run every declared hook on the built-in synthetic trace. Exit 0: valid; 1: rejected (stage,
// category and, for code errors, line:column); 2: usage error (missing or unreadable file).
// Everything runs in the sandbox child, so no file content can hang or crash this process.
// Foreign text (the file name, the mechanism's name and error messages) goes through safeText.
import { readFileSync } from "node:fs";
import path from "node:path";
import { type Command, CommanderError } from "commander";
import { Sandbox, syntheticTrace } from "../../sandbox/index.ts";
import type { SandboxError, ValidationReport } from "../../sandbox/types.ts";
import { loadRunConfig, type ResolvedRunConfig, resolveRunConfig, sandboxPolicy } from "../config.ts";
import { UserError } from "../errors.ts";
import { readMechanismFile } from "../mechanism-file.ts";
import { REPO_ROOT } from "../paths.ts";

/**
 * The config `mechanism check` and `mechanism test` apply: --config's, else a run's defaults, so a
 * mechanism that passes them meets the same sandbox limits in a run. The device is not asked
 * ("auto" counts as cpu): mechanisms see the search space, not the hardware.
 */
export function mechanismRunConfig(file?: string): ResolvedRunConfig {
  const options = { probeCuda: () => false };
  return file === undefined
    ? resolveRunConfig({}, { baseDir: REPO_ROOT, label: "defaults" }, options)
    : loadRunConfig(file, options);
}

import { jsonForTerminal, safeText } from "../terminal-text.ts";

export interface CheckIo {
  stdout(text: string): void;
  stderr(text: string): void;
}

export function formatError(file: string, error: SandboxError): string {
  const at = error.line !== undefined ? `:${error.line}:${error.column ?? 1}` : "";
  return `${safeText(file)}${at}: ${error.stage}/${error.code}: ${safeText(error.message, { maxLength: 2000 })}`;
}

/** Files larger than this are not read at all (a usage error); up to it the sandbox judges them. */
const MAX_FILE_BYTES = 16 * 1024 * 1024;

/**
 * The file's text for the sandbox to judge (`mechanism check` and `mechanism test`). A wrong path
 * is a usage error; a file too large or not text is still handed to the sandbox, which rejects it
 * as a mechanism (exit 1) with its own message.
 */
export function readSourceToJudge(file: string): { source: string } | { usage: string } {
  const read = readMechanismFile(file);
  if (read.ok) return { source: read.source };
  if (read.problem === "missing" || read.problem === "not-file") return { usage: read.message };
  if ((read.size ?? 0) > MAX_FILE_BYTES) {
    return { usage: `${file} is ${read.size} bytes; mechanisms are small TypeScript files` };
  }
  return { source: readFileSync(file, "latin1") };
}

/** Run the check; returns the exit code. `sandbox` lets tests share a started one. */
export async function mechanismCheck(
  file: string,
  options: { json?: boolean; config?: string },
  io: CheckIo,
  sandbox?: Sandbox,
): Promise<number> {
  const read = readSourceToJudge(file);
  if ("usage" in read) {
    io.stderr(`bilevel mechanism check: ${safeText(read.usage)}\n`);
    return 2;
  }
  let config: ResolvedRunConfig;
  try {
    config = mechanismRunConfig(options.config);
  } catch (error) {
    if (!(error instanceof UserError)) throw error;
    io.stderr(`bilevel mechanism check: ${safeText(error.message)}\n`);
    return 2;
  }
  const own = sandbox === undefined;
  let box: Sandbox;
  try {
    box = sandbox ?? (await Sandbox.start(sandboxPolicy(config.policy)));
  } catch (e) {
    io.stderr(
      `bilevel mechanism check: the sandbox could not start: ${safeText(e instanceof Error ? e.message : String(e))}\n`,
    );
    return 1;
  }
  let report: ValidationReport;
  try {
    report = await box.validate(read.source, syntheticTrace(config.searchSpace), path.basename(file));
  } finally {
    if (own) await box.close();
  }
  if (options.json) {
    const { compiled: _compiled, ...rest } = report;
    io.stdout(`${jsonForTerminal({ file, ...rest })}\n`);
  } else if (report.ok) {
    const m = report.manifest!;
    const hooks = report.stages.filter(
      (s) => s.stage !== "compile" && s.stage !== "lint" && s.stage !== "load",
    );
    io.stdout(
      safeText(
        `${file}: ok — ${m.name} v${m.version}; hooks ${m.hooks.join(", ")}; ` +
          `capabilities ${m.capabilities.length > 0 ? m.capabilities.join(", ") : "none"}`,
      ) +
        "\n" +
        report.stages.map((s) => `  ${s.stage.padEnd(8)} ok  ${s.durationMs.toFixed(1)} ms`).join("\n") +
        `\n  dry-ran ${hooks.length} hook${hooks.length === 1 ? "" : "s"} on the synthetic trace\n`,
    );
  } else {
    io.stderr(
      `${formatError(file, report.error!)}\nrejected at ${report.error!.stage} (${report.error!.code})\n`,
    );
  }
  return report.ok ? 0 : 1;
}

/** Register the `mechanism` group with `check`; returns the group so others can add subcommands. */
export function registerMechanismCommands(program: Command): Command {
  const group = program.command("mechanism").description("check and test search mechanisms (sandbox)");
  group
    .command("check")
    .description(
      "compile, lint, load and dry-run every declared hook of a mechanism on a synthetic trace " +
        "(exit 0 valid, 1 rejected, 2 usage error)",
    )
    .argument("<file>", "the mechanism's TypeScript source")
    .option("--json", "print the validation report as JSON")
    .option(
      "--config <file>",
      "a run config whose policy (sandbox limits) applies; default: a run's defaults",
    )
    .exitOverride((error) => {
      if (error.exitCode !== 0) throw new CommanderError(2, error.code, error.message);
      throw error;
    })
    .action(async (file: string, options: { json?: boolean; config?: string }) => {
      process.exitCode = await mechanismCheck(file, options, {
        stdout: (t) => process.stdout.write(t),
        stderr: (t) => process.stderr.write(t),
      });
    });
  return group;
}
