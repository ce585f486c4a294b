// `bilevel mechanism test FILE.ts`: the regression harness on the command line. Exit 0: ran clean
// (and matches the baseline); 1: the mechanism did not compile, faulted, or regressed against the
// baseline; 2: a usage error (bad flags, unreadable file, corrupt baseline). Foreign text (the
// mechanism's name, fault messages, guide texts, compile errors) is printed through safeText.
import { createHash } from "node:crypto";
import { closeSync, openSync, readFileSync, statSync, writeFileSync, writeSync } from "node:fs";
import path from "node:path";
import { type Command, CommanderError, Option } from "commander";
import type { ParamSpec } from "../../mechanism-api/index.d.ts";
import { Sandbox } from "../../sandbox/index.ts";
import { loadSearchSpace } from "../../trainer/search-space.ts";
import { type ResolvedRunConfig, sandboxPolicy } from "../config.ts";
import { UserError } from "../errors.ts";
import {
  DEFAULT_SETTINGS,
  type HarnessReport,
  type HarnessSettings,
  type HarnessSummary,
  HOOKS,
  runHarness,
  settingsFromConfig,
  type TraceSink,
} from "../harness.ts";
import { type Comparison, compareToBaseline, parseBaseline } from "../harness-baseline.ts";
import { FILTER_CHAIN_RULE } from "../level1/filter-chain.ts";
import { formatEvents } from "../mechanism-trace.ts";
import type { SandboxLike } from "../mechanisms.ts";
import { DEFAULT_SURROGATE_FILE, parseSurrogateData } from "../surrogate/data.ts";
import { measuredNoise } from "../surrogate/model.ts";
import { jsonForTerminal, safeText } from "../terminal-text.ts";
import { readSourceToJudge } from "./mechanism.ts";
import { mechanismRunConfig } from "./mechanism-config.ts";

export interface MechanismTestOptions {
  readonly seeds?: string;
  readonly iterations?: string;
  readonly noise?: string;
  readonly tolerance?: string;
  readonly baseline?: string;
  readonly saveBaseline?: string;
  readonly control?: boolean;
  readonly json?: boolean;
  readonly acceptance?: "noise-aware" | "strict";
  readonly config?: string;
  readonly objective?: string;
  /** Per iteration, each hook's input, result, ctx.log lines and full guide text, on stderr. */
  readonly verbose?: boolean;
  /** The same as JSON lines (one event each) in this file. */
  readonly trace?: string;
}

export interface TestIo {
  stdout(text: string): void;
  stderr(text: string): void;
}

/** What the command needs of a sandbox; tests may pass their own started one. */
export interface TestSandbox extends SandboxLike {
  close(): Promise<void>;
}

export interface MechanismTestDeps {
  readonly startSandbox?: (config: ResolvedRunConfig) => Promise<TestSandbox>;
  readonly params?: readonly ParamSpec[];
}

export const DEFAULT_SEEDS = 3;
export const DEFAULT_TOLERANCE = 0.005;
const MAX_SEEDS = 100;
const MAX_ITERATIONS = 1000;

/** Bad flags or files: exit 2. */
class UsageError extends UserError {
  constructor(message: string) {
    super(message, 2);
  }
}

function parseCount(flag: string, text: string, max: number): number {
  if (!/^\d+$/.test(text.trim())) throw new UsageError(`${flag} takes a whole number, got "${text}"`);
  const n = Number(text);
  if (n < 1 || n > max) throw new UsageError(`${flag} must be between 1 and ${max}, got ${n}`);
  return n;
}

function parseNumber(flag: string, text: string, max: number): number {
  const n = text.trim() === "" ? Number.NaN : Number(text);
  if (!Number.isFinite(n) || n < 0 || n > max)
    throw new UsageError(`${flag} takes a number in [0, ${max}], got "${text}"`);
  return n;
}

function readText(what: string, file: string): string {
  let isFile = false;
  try {
    isFile = statSync(file).isFile();
  } catch {
    throw new UsageError(`cannot read ${what} ${file}: no such file`);
  }
  if (!isFile) throw new UsageError(`cannot read ${what} ${file}: not a file`);
  try {
    return readFileSync(file, "utf8");
  } catch (error) {
    throw new UsageError(
      `cannot read ${what} ${file}: ${error instanceof Error ? error.message : String(error)}`,
    );
  }
}

/**
 * Settings from the flags and the run config (--config's, or a run's defaults), defaulting to the
 * baseline's; a flag or a --config setting that contradicts the baseline is a usage error.
 */
function resolveSettings(
  options: MechanismTestOptions,
  baseline: HarnessSummary | null,
  config: ResolvedRunConfig,
): HarnessSettings {
  const seedsCount =
    options.seeds === undefined ? undefined : parseCount("--seeds", options.seeds, MAX_SEEDS);
  const iterations =
    options.iterations === undefined
      ? undefined
      : parseCount("--iterations", options.iterations, MAX_ITERATIONS);
  const noise = options.noise === undefined ? undefined : parseNumber("--noise", options.noise, 1);
  const acceptance = options.acceptance;
  if (baseline) {
    const b = baseline.settings;
    const mismatch = (flag: string, given: string, recorded: string) =>
      new UsageError(
        `${flag} ${given} does not match the baseline (recorded with ${recorded}); drop ${flag}, or record a new baseline with --save-baseline`,
      );
    if (seedsCount !== undefined && seedsCount !== b.seeds.length) {
      throw mismatch("--seeds", String(seedsCount), `${b.seeds.length} seeds`);
    }
    if (iterations !== undefined && iterations !== b.iterations) {
      throw mismatch("--iterations", String(iterations), `${b.iterations} iterations`);
    }
    if (noise !== undefined && noise !== b.noiseSigma)
      throw mismatch("--noise", String(noise), `noise ${b.noiseSigma}`);
    if (acceptance !== undefined && acceptance !== b.acceptance)
      throw mismatch("--acceptance", acceptance, `acceptance ${b.acceptance}`);
    if (options.config !== undefined) {
      const fromConfig: Record<string, unknown> = settingsFromConfig(config);
      for (const [key, value] of Object.entries(fromConfig)) {
        const recorded = (b as unknown as Record<string, unknown>)[key];
        // --acceptance, when given, was checked above and wins over the config's mode.
        if ((key !== "acceptance" || acceptance === undefined) && value !== recorded)
          throw mismatch("--config", `(${key} ${value})`, `${key} ${recorded}`);
      }
    }
    return { ...b, seeds: [...b.seeds] };
  }
  const n = seedsCount ?? DEFAULT_SEEDS;
  const fromConfig = settingsFromConfig(config);
  return {
    ...fromConfig,
    seeds: Array.from({ length: n }, (_, i) => i + 1),
    iterations: iterations ?? DEFAULT_SETTINGS.iterations,
    noiseSigma: noise ?? DEFAULT_SETTINGS.noiseSigma,
    acceptance: acceptance ?? fromConfig.acceptance,
  };
}

/**
 * --objective surrogate[:FILE]: the harness runs on the surrogate of that recording, with its
 * measured σ unless --noise says otherwise. The settings name the recording by file name and
 * hash, so a baseline is only compared on the same data.
 */
function applyObjective(
  options: MechanismTestOptions,
  settings: HarnessSettings,
  config: ResolvedRunConfig,
  fromBaseline: boolean,
): { settings: HarnessSettings; config: ResolvedRunConfig } {
  const given = options.objective;
  if (given === undefined || given === "synthetic") {
    if (settings.objective !== undefined)
      throw new UsageError(
        `the baseline was recorded on ${settings.objective}: pass --objective surrogate:FILE`,
      );
    return { settings, config };
  }
  const m = /^surrogate(?::(.+))?$/.exec(given);
  if (!m) throw new UsageError(`--objective takes synthetic or surrogate[:FILE], got "${given}"`);
  const file = m[1] === undefined ? DEFAULT_SURROGATE_FILE : path.resolve(m[1]);
  const text = readText("surrogate data", file);
  const data = parseSurrogateData(text, file);
  const label = `surrogate:${path.basename(file)}@${createHash("sha256").update(text).digest("hex").slice(0, 12)}`;
  if (fromBaseline && settings.objective !== label) {
    throw new UsageError(
      `--objective ${label} does not match the baseline (recorded with ${settings.objective ?? "the synthetic objective"})`,
    );
  }
  const own = fromBaseline || options.noise !== undefined;
  const noiseSigma = own ? settings.noiseSigma : Number(measuredNoise(data).sigma.toFixed(6));
  return {
    settings: { ...settings, objective: label, noiseSigma },
    config: {
      ...config,
      trainer: { kind: "surrogate", file, noise: noiseSigma, delayMs: 0 },
      searchSpace: loadSearchSpace(data.header.device),
    },
  };
}

interface TestInput {
  readonly source: string;
  readonly baseline: HarnessSummary | null;
  readonly settings: HarnessSettings;
  readonly tolerance: number;
  readonly config: ResolvedRunConfig;
}

/** Everything the flags and files say, checked; a UserError (exit 2) for bad input. */
function readTestInput(file: string, options: MechanismTestOptions): TestInput {
  const base = mechanismRunConfig(options.config);
  const tolerance =
    options.tolerance === undefined ? DEFAULT_TOLERANCE : parseNumber("--tolerance", options.tolerance, 10);
  let baseline: HarnessSummary | null = null;
  if (options.baseline !== undefined) {
    const parsed = parseBaseline(readText("baseline", options.baseline));
    if (!parsed.ok) throw new UsageError(`baseline ${options.baseline} is unusable: ${parsed.error}`);
    baseline = parsed.summary;
  }
  const objective = applyObjective(
    options,
    resolveSettings(options, baseline, base),
    base,
    baseline !== null,
  );
  const read = readSourceToJudge(file);
  if ("usage" in read) throw new UsageError(read.usage);
  return { source: read.source, baseline, tolerance, ...objective };
}

/** Run the command; returns the exit code. Never throws. */
export async function mechanismTest(
  file: string,
  options: MechanismTestOptions,
  io: TestIo,
  deps: MechanismTestDeps = {},
): Promise<number> {
  let input: TestInput;
  try {
    input = readTestInput(file, options);
  } catch (error) {
    if (error instanceof UserError) {
      io.stderr(`bilevel mechanism test: ${safeText(error.message)}\n`);
      return 2;
    }
    throw error;
  }
  const { source, baseline, settings, tolerance, config } = input;
  let traceFd: number | null = null;
  if (options.trace !== undefined) {
    try {
      traceFd = openSync(options.trace, "w");
    } catch (error) {
      io.stderr(
        `bilevel mechanism test: cannot write --trace ${safeText(options.trace)}: ${safeText((error as Error).message)}\n`,
      );
      return 2;
    }
  }
  const onTrace = traceSink(options, traceFd, io);

  let sandbox: TestSandbox | null = null;
  try {
    const start =
      deps.startSandbox ??
      ((c: ResolvedRunConfig) => Sandbox.start(sandboxPolicy(c.policy), { chainRule: FILTER_CHAIN_RULE }));
    const box: TestSandbox = await start(config);
    sandbox = box;
    const params = deps.params ?? config.searchSpace;
    const compiled = await box.compile(source, file);
    if (!compiled.ok) {
      const lines = compiled.errors.map(
        (e) =>
          `  ${e.stage}/${e.code}${e.line !== undefined ? ` at ${e.line}:${e.column ?? 0}` : ""}: ${safeText(e.message, { maxLength: 2000 })}`,
      );
      if (options.json) io.stdout(`${jsonForTerminal({ ok: false, errors: compiled.errors })}\n`);
      else io.stderr(`${safeText(file)} was rejected before it could run:\n${lines.join("\n")}\n`);
      return 1;
    }
    const mechanism = { fileName: path.basename(file), source, compiled: compiled.mechanism };
    const report = await runHarness(box, mechanism, params, settings, config, onTrace);
    const control = options.control ? await runHarness(box, null, params, settings, config) : null;
    const comparison = baseline ? compareToBaseline(report.summary, baseline, tolerance) : null;
    let saved: string | null = null;
    if (options.saveBaseline !== undefined) {
      writeFileSync(options.saveBaseline, `${JSON.stringify(report.summary, null, 2)}\n`);
      saved = options.saveBaseline;
    }
    const faults = report.summary.totals.faults;
    const failed = comparison ? comparison.regressions.length > 0 : faults > 0;
    if (options.json) {
      io.stdout(
        `${jsonForTerminal({
          ok: !failed,
          summary: report.summary,
          ...(control ? { control: control.summary } : {}),
          ...(comparison ? { comparison } : {}),
          ...(saved ? { savedBaseline: saved } : {}),
          timing: report.timing,
        })}\n`,
      );
    } else {
      io.stdout(formatReport(report, control, comparison, tolerance, saved));
    }
    return failed ? 1 : 0;
  } catch (error) {
    io.stderr(
      `bilevel mechanism test: ${safeText(error instanceof Error ? error.message : String(error))}\n`,
    );
    return error instanceof UserError ? error.exitCode : 1;
  } finally {
    await sandbox?.close();
    if (traceFd !== null) closeSync(traceFd);
  }
}

/** --verbose (text on stderr) and --trace (JSON lines in the file), each seed as it finishes. */
function traceSink(options: MechanismTestOptions, fd: number | null, io: TestIo): TraceSink | undefined {
  if (!options.verbose && fd === null) return undefined;
  return (events) => {
    if (options.verbose) io.stderr(formatEvents(events));
    if (fd !== null) writeSync(fd, events.map((e) => `${JSON.stringify(e)}\n`).join(""));
  };
}

function pad(cells: readonly string[], widths: readonly number[]): string {
  return cells
    .map((c, i) => c.padEnd(widths[i] ?? 0))
    .join("  ")
    .trimEnd();
}

function table(header: readonly string[], rows: readonly (readonly string[])[]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  return [pad(header, widths), ...rows.map((r) => pad(r, widths))];
}

const SEED_COLUMNS = [
  "seed",
  "baseline",
  "best",
  "at",
  "kept",
  "trials",
  "failed",
  "suggested",
  "rejected",
  "modified",
  "ignored",
  "guided",
  "faults",
];

/** One row per seed: scores, trials and what the mechanism did. */
function seedTable(s: HarnessSummary): string[] {
  return table(
    SEED_COLUMNS,
    s.seeds.map((x) => [
      String(x.seed),
      x.baseline.toFixed(4),
      x.best.toFixed(4),
      String(x.bestIteration),
      String(x.kept),
      String(x.trials),
      String(Object.values(x.failures).reduce((a, b) => a + (b ?? 0), 0)),
      String(x.suggested),
      String(x.rejected),
      String(x.modified),
      String(x.invalidSuggestions + x.invalidModifications),
      String(x.guided),
      String(x.faults.length),
    ]),
  );
}

export function formatReport(
  report: HarnessReport,
  control: HarnessReport | null,
  comparison: Comparison | null,
  tolerance: number,
  saved: string | null,
): string {
  const s = report.summary;
  const m = s.mechanism;
  const out: string[] = [];
  out.push(
    m
      ? `mechanism ${m.name} v${m.version} (hooks: ${m.hooks.join(", ") || "none"}; capabilities: ${m.capabilities.join(", ") || "none"})`
      : "no mechanism (control)",
    `${s.settings.seeds.length} seeds × ${s.settings.iterations} iterations of the run's Level 1 loop: offline proposer, ${s.settings.objective ?? "synthetic objective"} (noise σ ${s.settings.noiseSigma}), acceptance ${s.settings.acceptance === "strict" ? "strict (keep any gain)" : "noise-aware (keep a gain larger than k·σ of the baselines)"}`,
    "",
  );
  out.push(...seedTable(s));
  out.push("", `mean best ${s.totals.meanBest.toFixed(4)}`);
  if (control) {
    const c = control.summary.totals.meanBest;
    const d = s.totals.meanBest - c;
    out.push(
      `control (same seeds, no mechanism): mean best ${c.toFixed(4)}; difference ${d >= 0 ? "+" : ""}${d.toFixed(4)}`,
    );
  }
  out.push("");
  const hookRows = HOOKS.filter((h) => m?.hooks.includes(h)).map((h) => {
    const t = report.timing.hooks[h];
    return [
      h,
      String(s.totals.calls[h]),
      t ? t.medianMs.toFixed(2) : "-",
      t ? t.p99Ms.toFixed(2) : "-",
      s.totals.calls[h] === 0 ? "NEVER FIRED" : "",
    ];
  });
  if (hookRows.length > 0) {
    out.push(...table(["hook", "calls", "median ms", "p99 ms", ""], hookRows), "");
  }
  for (const x of s.seeds) {
    for (const f of x.faults)
      out.push(`fault: seed ${x.seed}, iteration ${f.iteration}, ${f.hook}/${f.code}: ${f.message}`);
    if (x.quarantined)
      out.push(`seed ${x.seed}: the mechanism was quarantined after its fault; the seed ran on without it`);
  }
  const ignored = s.seeds.reduce((a, x) => a + x.invalidSuggestions + x.invalidModifications, 0);
  if (ignored > 0)
    out.push(
      `ignored: ${ignored} suggestion(s) or modification(s) broke the space's rules (range, step, active parameters, constraints) and were not used; --verbose or --trace FILE shows each with the reason`,
    );
  const samples = [...new Set(s.seeds.flatMap((x) => x.guideSamples))].slice(0, 3);
  for (const g of samples) out.push(`guide: ${g}`);
  const gap = () => {
    if (out.at(-1) !== "") out.push("");
  };
  if (comparison) {
    gap();
    for (const n of comparison.notes) out.push(`note: ${n}`);
    if (comparison.regressions.length === 0) out.push(`baseline: OK (tolerance ${tolerance})`);
    else {
      out.push(`baseline: REGRESSION (${comparison.regressions.length})`);
      for (const r of comparison.regressions) out.push(`  - ${r}`);
    }
  } else if (s.totals.faults > 0) {
    gap();
    out.push(`FAILED: ${s.totals.faults} fault(s)`);
  }
  if (saved) out.push(`baseline saved to ${saved}`);
  out.push(
    `(latencies are host round trips, ${report.timing.wallMs.toFixed(0)} ms in all; they are never compared)`,
  );
  // Every entry is one line; names, fault messages and guide texts are foreign: neutralise each.
  return `${out.map((l) => safeText(l)).join("\n")}\n`;
}

/** Add `test` to the `mechanism` command group. */
export function registerMechanismTestCommand(group: Command): void {
  group
    .command("test")
    .description(
      "regression harness: run a mechanism through the run's own Level 1 loop (offline proposer, synthetic objective or --objective surrogate) for N seeds; " +
        "report hook calls, latencies, proposals suggested/rejected/modified and the best objective per seed",
    )
    .argument("<file>", "the mechanism's TypeScript source")
    .addOption(
      new Option(
        "--seeds <n>",
        `number of seeds, 1..${MAX_SEEDS} (default ${DEFAULT_SEEDS}, or the baseline's)`,
      ),
    )
    .addOption(
      new Option(
        "--iterations <n>",
        `iterations per seed, 1..${MAX_ITERATIONS} (default ${DEFAULT_SETTINGS.iterations}, or the baseline's)`,
      ),
    )
    .addOption(
      new Option(
        "--noise <sigma>",
        `objective noise σ (default ${DEFAULT_SETTINGS.noiseSigma}; with a surrogate, the recording's measured σ)`,
      ),
    )
    .option(
      "--objective <objective>",
      "synthetic (default) or surrogate[:FILE], the surrogate of recorded training (default data/surrogate/cpu.jsonl)",
    )
    .addOption(
      new Option(
        "--acceptance <rule>",
        "the run's acceptance rule (default noise-aware, or the baseline's)",
      ).choices(["noise-aware", "strict"]),
    )
    .option(
      "--config <file>",
      "a run config whose policy (sandbox limits, time budget) applies; default: a run's defaults",
    )
    .option("--baseline <file>", "compare with a saved summary; exit 1 on a regression")
    .option("--save-baseline <file>", "save this run's summary as a baseline")
    .addOption(
      new Option(
        "--tolerance <x>",
        `how much worse a seed's best may be than the baseline's (default ${DEFAULT_TOLERANCE})`,
      ),
    )
    .option("--control", "also run the same seeds without the mechanism, for comparison")
    .option("--json", "print JSON: summary (deterministic), control, comparison, timing")
    .option(
      "--verbose",
      "on stderr, per iteration: each hook's input, its result, its ctx.log lines and the full guide text, and the trial",
    )
    .option(
      "--trace <file>",
      "write the same as --verbose as JSON lines, one event each (hook calls and trials)",
    )
    .exitOverride((error) => {
      // Commander's own usage errors (unknown option, missing argument) exit 2 like ours.
      if (error.exitCode !== 0) throw new CommanderError(2, error.code, error.message);
      throw error;
    })
    .action(async (file: string, options: MechanismTestOptions) => {
      process.exitCode = await mechanismTest(file, options, {
        stdout: (t) => process.stdout.write(t),
        stderr: (t) => process.stderr.write(t),
      });
    });
}
