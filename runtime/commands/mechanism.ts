// `bilevel mechanism …`: the command group, and `check FILE.ts… [--json]` — compile, lint, load and
// dry-run every declared hook on the built-in synthetic trace, each file in turn through one sandbox
// child. Exit 0: valid; 1: rejected (stage, category and, for code errors, line:column); 2: usage
// error (missing or unreadable file); for several files, the worst of these.
// Everything runs in the sandbox child, so no file content can hang or crash this process.
// Foreign text (the file name, the mechanism's name and error messages) goes through safeText.
import { readFileSync, statSync } from "node:fs";
import path from "node:path";
import { type Command, CommanderError } from "commander";
import type { ParamSpec } from "../../mechanism-api/index.d.ts";
import { DEFAULT_MAX_SOURCE_BYTES, DEFAULT_POLICY, Sandbox, syntheticTrace } from "../../sandbox/index.ts";
import type { DryRunTrace, SandboxError, SandboxPolicy, ValidationReport } from "../../sandbox/types.ts";
import { UserError } from "../errors.ts";
import { readMechanismFile } from "../mechanism-file.ts";
import type { ScenarioResult } from "../mechanism-scenario-run.ts";
import type { Scenario } from "../mechanism-scenarios.ts";
import type { TraceEvent } from "../mechanism-trace.ts";
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

type CheckOptions = { json?: boolean; config?: string; scenario?: readonly string[]; verbose?: boolean };

/** One file's outcome: its exit code (0 valid, 1 rejected, 2 usage) and its report or usage message. */
type FileCheck =
  | {
      readonly file: string;
      readonly exitCode: 0 | 1;
      readonly report: ValidationReport;
      /** --scenario: each scenario's run (none if the file was rejected before). */
      readonly scenarios: readonly ScenarioResult[];
    }
  | { readonly file: string; readonly exitCode: 2; readonly usage: string };

/** What --scenario drives each valid file through, with the search space and history window it runs on. */
interface ScenarioPlan {
  readonly scenarios: readonly Scenario[];
  readonly params: readonly ParamSpec[];
  readonly historyWindow: number;
}

/** Check one file; returns the exit code. `sandbox` lets tests share a started one. */
export async function mechanismCheck(
  file: string,
  options: CheckOptions,
  io: CheckIo,
  sandbox?: Sandbox,
): Promise<number> {
  return mechanismCheckFiles([file], options, io, sandbox);
}

/**
 * Check several files through one sandbox child, in order, with one report each (stdout for a
 * valid file, stderr for a rejected one; --json: the report, or an array of them for several
 * files). The exit code is the worst file's: 2 if any file is a usage error (missing, not a file,
 * too large to read), else 1 if any was rejected, else 0; every file is checked either way. A bad
 * --config is a usage error for all of them (nothing is checked).
 */
export async function mechanismCheckFiles(
  files: readonly string[],
  options: CheckOptions,
  io: CheckIo,
  sandbox?: Sandbox,
): Promise<number> {
  if (options.verbose && !(options.scenario && options.scenario.length > 0 && !options.json)) {
    io.stderr(
      `bilevel mechanism check: --verbose prints the hook calls of --scenario runs as text: add --scenario NAME|FILE|all${options.json ? ", without --json" : ""}\n`,
    );
    return 2;
  }
  const reads = files.map((file) => ({ file, read: readSourceToJudge(file) }));
  // Without --config the policy is a run's default: the child starts while the config code loads
  // (it is checked against the config's policy below). None if no file gets past the host.
  const early =
    sandbox === undefined && options.config === undefined && reads.some(({ read }) => reachesSandbox(read))
      ? startSandbox(DEFAULT_POLICY, true).then((box) => {
          // Both processes start now; the first compile goes to the compiler while the child starts.
          box.prestart();
          return box;
        })
      : null;
  let policy: SandboxPolicy;
  let trace: DryRunTrace;
  let plan: ScenarioPlan | null = null;
  try {
    const { mechanismRunConfig, sandboxPolicy } = await import("./mechanism-config.ts");
    const config = mechanismRunConfig(options.config);
    policy = sandboxPolicy(config.policy);
    trace = syntheticTrace(config.searchSpace);
    if (options.scenario !== undefined && options.scenario.length > 0) {
      const { resolveScenarios } = await import("../mechanism-scenarios.ts");
      const params = config.searchSpace;
      const historyWindow = config.proposer.historyWindow;
      plan = {
        scenarios: resolveScenarios(options.scenario, params, historyWindow, isFile),
        params,
        historyWindow,
      };
    }
  } catch (error) {
    await (await early)?.close();
    if (!(error instanceof UserError)) throw error;
    io.stderr(`bilevel mechanism check: ${safeText(error.message)}\n`);
    return 2;
  }
  // Otherwise the child starts with the first file that reaches the sandbox (none for files that
  // fail before it).
  const box = sandbox ?? (await adopt(early, policy)) ?? (await startSandbox(policy, true));
  const results: FileCheck[] = [];
  try {
    for (const { file, read } of reads) {
      // --verbose: each scenario's hook calls as `mechanism test --verbose` prints them, on stderr.
      const onTrace = options.verbose
        ? (scenario: Scenario, text: string) =>
            io.stderr(`${safeText(`${file}: scenario ${scenario.name} (${scenario.description})`)}\n${text}`)
        : undefined;
      const result = await checkFile(file, read, box, trace, plan, onTrace);
      results.push(result);
      if (!options.json) printText(result, io);
    }
  } finally {
    if (sandbox === undefined) await box.close();
  }
  if (options.json) printJson(results, files.length > 1, io);
  else if (results.length > 1) io.stdout(tally(results));
  return Math.max(...results.map((r) => r.exitCode));
}

/** The closing line of a several-file check: how many passed, were rejected, or could not be checked. */
function tally(results: readonly FileCheck[]): string {
  const count = (code: number) => results.filter((r) => r.exitCode === code).length;
  return `${results.length} files: ${count(0)} ok, ${count(1)} rejected, ${count(2)} not checked (usage errors)\n`;
}

/** A sandbox for `check`: its compiler process starts with the child (every file it sees is compiled first). */
function startSandbox(policy: SandboxPolicy, lazyStart: boolean): Promise<Sandbox> {
  return Sandbox.start(policy, { lazyStart, preloadCompiler: true });
}

/** The early sandbox if it runs the config's policy; otherwise it is closed (null). */
async function adopt(early: Promise<Sandbox | null> | null, policy: SandboxPolicy): Promise<Sandbox | null> {
  const box = await early;
  if (!box) return null;
  if (canonical(box.policy) === canonical(policy)) return box;
  await box.close();
  return null;
}

function canonical(policy: SandboxPolicy): string {
  return JSON.stringify(Object.entries(policy).sort(([a], [b]) => (a < b ? -1 : 1)));
}

/** Whether the file gets as far as the sandbox child (the host refuses what it cannot read, and oversized sources). */
function reachesSandbox(read: { source: string } | { usage: string }): boolean {
  return "source" in read && Buffer.byteLength(read.source, "utf8") <= DEFAULT_MAX_SOURCE_BYTES;
}

async function checkFile(
  file: string,
  read: { source: string } | { usage: string },
  sandbox: Sandbox,
  trace: DryRunTrace,
  plan: ScenarioPlan | null,
  onTrace?: (scenario: Scenario, text: string) => void,
): Promise<FileCheck> {
  if ("usage" in read) return { file, exitCode: 2, usage: read.usage };
  const report = await sandbox.validate(read.source, trace, path.basename(file));
  const scenarios: ScenarioResult[] = [];
  if (report.ok && report.compiled && plan) {
    const { runScenario } = await import("../mechanism-scenario-run.ts");
    const { formatEvents, recordingSandbox } = await import("../mechanism-trace.ts");
    for (const s of plan.scenarios) {
      const events: TraceEvent[] = [];
      const box = onTrace ? recordingSandbox(sandbox, 0, (e) => events.push(e)) : sandbox;
      scenarios.push(await runScenario(box, report.compiled, s, plan.params, plan.historyWindow));
      onTrace?.(s, formatEvents(events));
    }
  }
  const ok = report.ok && scenarios.every((s) => s.ok);
  return { file, exitCode: ok ? 0 : 1, report, scenarios };
}

function isFile(value: string): boolean {
  try {
    return statSync(value).isFile();
  } catch {
    return false;
  }
}

function printJson(results: readonly FileCheck[], array: boolean, io: CheckIo): void {
  const entries = results.map((r) => {
    if (!("report" in r)) {
      io.stderr(`bilevel mechanism check: ${safeText(r.usage)}\n`);
      return { file: r.file, ok: false, usageError: r.usage };
    }
    const { compiled: _compiled, ...rest } = r.report;
    if (r.scenarios.length === 0) return { file: r.file, ...rest };
    return { file: r.file, ...rest, ok: r.exitCode === 0, scenarios: r.scenarios };
  });
  // One file: its report (or nothing, for a usage error), as before multi-file checks existed.
  if (!array) {
    if ("report" in results[0]!) io.stdout(`${jsonForTerminal(entries[0])}\n`);
    return;
  }
  io.stdout(`${jsonForTerminal(entries)}\n`);
}

function printText(result: FileCheck, io: CheckIo): void {
  const { file } = result;
  if (!("report" in result)) {
    io.stderr(`bilevel mechanism check: ${safeText(result.usage)}\n`);
    return;
  }
  const { report } = result;
  if (!report.ok) {
    const errors = report.errors && report.errors.length > 0 ? report.errors : [report.error!];
    const more = errors.length > 1 ? `; ${errors.length} errors` : "";
    io.stderr(
      `${errors.map((e) => formatError(file, e)).join("\n")}\n` +
        `rejected at ${report.error!.stage} (${report.error!.code}${more})\n`,
    );
    return;
  }
  const failed = result.scenarios.find((s) => !s.ok);
  if (failed?.error) {
    io.stderr(
      `${formatError(file, failed.error)}\n` +
        `rejected in scenario ${safeText(failed.name)} (${safeText(failed.description)}), iteration ${failed.iteration}\n`,
    );
    return;
  }
  const m = report.manifest!;
  const hooks = report.stages.filter(
    (s) => s.stage !== "compile" && s.stage !== "lint" && s.stage !== "load",
  );
  // A scenario file's name is foreign text: each line is neutralised on its own.
  const scenarioLines = result.scenarios.map(
    (s) =>
      `${safeText(`  scenario ${s.name.padEnd(17)} ok  ${s.iterations} iteration${s.iterations === 1 ? "" : "s"}, ${s.calls} hook call${s.calls === 1 ? "" : "s"}`)}\n`,
  );
  io.stdout(
    safeText(
      `${file}: ok — ${m.name} v${m.version}; hooks ${m.hooks.join(", ")}; ` +
        `capabilities ${m.capabilities.length > 0 ? m.capabilities.join(", ") : "none"}`,
    ) +
      "\n" +
      report.stages.map((s) => `  ${s.stage.padEnd(8)} ok  ${s.durationMs.toFixed(1)} ms`).join("\n") +
      `\n  dry-ran ${hooks.length} hook${hooks.length === 1 ? "" : "s"} on the synthetic trace\n` +
      scenarioLines.join(""),
  );
}

/** Register the `mechanism` group with `check`; returns the group so others can add subcommands. */
export function registerMechanismCommands(program: Command): Command {
  const group = program.command("mechanism").description("check and test search mechanisms (sandbox)");
  group
    .command("check")
    .description(
      "compile, lint, load and dry-run every declared hook of each mechanism on a synthetic trace, " +
        "through one sandbox child (exit: the worst file's: 0 valid, 1 rejected, 2 usage error)",
    )
    .argument("<files...>", "the mechanisms' TypeScript sources")
    .option("--json", "print the validation report as JSON (an array of reports for several files)")
    .option(
      "--config <file>",
      "a run config whose policy (sandbox limits) applies; default: a run's defaults",
    )
    .option(
      "--scenario <name|file>",
      "also drive every hook through a scenario: a built-in (empty-history, failed-trials, frozen, " +
        "repeated-proposal, restart, full-window), all of them (all), or a scenario file " +
        "(docs/mechanism-tools.md); repeatable",
      (value: string, previous: string[]) => [...previous, value],
      [] as string[],
    )
    .option(
      "--verbose",
      "with --scenario: print each scenario's hook calls (input, result, ctx.log lines, state) on stderr",
    )
    .exitOverride((error) => {
      if (error.exitCode !== 0) throw new CommanderError(2, error.code, error.message);
      throw error;
    })
    .action(async (files: string[], options: CheckOptions) => {
      process.exitCode = await mechanismCheckFiles(files, options, {
        stdout: (t) => process.stdout.write(t),
        stderr: (t) => process.stderr.write(t),
      });
    });
  return group;
}
