// `bilevel run | demo | status | export | schema | config show`: start or resume a run, look at one,
// export it, or see the resolved config a run would use.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { type Command, InvalidArgumentError, Option } from "commander";
import { formatRange } from "../../trainer/script-space.ts";
import {
  CHANGEABLE_ON_RESUME,
  ConfigError,
  configDiff,
  DEFAULT_RUN_CONFIG,
  type DeepPartial,
  loadRunConfig,
  type ResolvedRunConfig,
  RUN_CONFIG_SCHEMA,
  type RunConfig,
  resolveRunConfig,
} from "../config.ts";
import { RunDisplay } from "../display.ts";
import { UserError } from "../errors.ts";
import { openExisting, unreadable } from "../open-run.ts";
import { defaultRunDir, launcherCommand, REPO_ROOT } from "../paths.ts";
import { buildReport, formatReport } from "../report.ts";
import { runLockHolder } from "../run-lock.ts";
import {
  quietOutput,
  STOP_SIGNAL_NAMES,
  STOP_SIGNALS,
  type StopSignal,
  signalExit,
} from "../stop-signals.ts";
import { RunStore } from "../store.ts";
import { isStudy } from "../study/layout.ts";
import { recordedByStudy, studyParent } from "../study/runner.ts";
import { DEFAULT_SURROGATE_FILE } from "../surrogate/data.ts";
import { dataForStream, jsonForTerminal } from "../terminal-text.ts";
import { executeRun } from "../wiring.ts";

export function positiveInt(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < 1) {
    throw new InvalidArgumentError(`expected a positive integer, got "${value}"`);
  }
  return n;
}

export function positiveNumber(value: string): number {
  const n = Number(value);
  if (value.trim() === "" || !Number.isFinite(n) || n <= 0) {
    throw new InvalidArgumentError(`expected a positive number, got "${value}"`);
  }
  return n;
}

/** The embedded default of `bilevel demo`: offline, CPU, small budget, every level acting. */
export const DEMO_CONFIG = {
  name: "demo",
  seed: 7,
  iterations: 12,
  budgetSeconds: 12,
  device: "cpu",
  trainer: { kind: "python" },
  llm: { baseURL: null },
  acceptance: { mode: "noise-aware", baselineRepeats: 2, k: 1, minSigma: 0.002 },
  level15: { every: 3, maxFreezesPerCycle: 2, minActive: 6, freezeAfterTries: 2 },
  level2: { everyCycles: 1, maxRepairs: 3, retireWindow: 0 },
  policy: { maxActiveMechanisms: 3 },
  activeParams: [
    "MATRIX_LR",
    "EMBEDDING_LR",
    "UNEMBEDDING_LR",
    "WARMDOWN_RATIO",
    "WEIGHT_DECAY",
    "TOTAL_BATCH_SIZE",
    "SEQ_LEN",
    "ADAM_BETA1",
  ],
  mechanisms: ["examples/mechanisms/tabu-search.ts"],
} as const;

interface RunOptions {
  config?: string;
  out?: string;
  iterations?: number;
  budget?: number;
  parallel?: number;
  device?: "auto" | "cpu" | "cuda";
  offline?: boolean;
  resume?: string;
  json?: boolean;
  objective?: string;
}

function deviceOption(): Option {
  return new Option(
    "--device <device>",
    "where trials run (auto: cuda when the trainer's Python sees a GPU)",
  ).choices(["auto", "cpu", "cuda"]);
}

/** The resolved config for people: every setting, then the search space as a table. */
export function formatConfig(config: ResolvedRunConfig): string {
  const { searchSpace, startConfig, program, ...settings } = config;
  const lines = Object.entries(settings).map(([key, value]) => `${key}: ${JSON.stringify(value)}`);
  if (program)
    lines.push(
      `program: ${program.file} (${program.text.length} characters: the research brief the LLM gets)`,
    );
  const external = config.trainer.kind === "external";
  lines.push(
    "",
    `search space (${external ? "the script's constants" : "device defaults"}; * = active at the start):`,
  );
  for (const p of searchSpace) {
    const active = config.activeParams === null || config.activeParams.includes(p.name);
    lines.push(
      `  ${active ? "*" : " "} ${p.name.padEnd(18)} start ${JSON.stringify(startConfig[p.name]).padEnd(10)} ${formatRange(p)}`,
    );
  }
  const fixed = Object.keys(startConfig).length - searchSpace.length;
  if (external && fixed > 0) lines.push(`  (and ${fixed} other constant(s) of the script, run as written)`);
  return `${lines.join("\n")}\n`;
}

/** The config of a new run: a file (paths relative to it), or `base` (paths relative to the repository). */
function newRunConfig(base: unknown, options: RunOptions): ResolvedRunConfig {
  const overrides = pick(options);
  return options.config
    ? loadRunConfig(options.config, { overrides })
    : resolveRunConfig(base, { baseDir: REPO_ROOT, label: "built-in config" }, { overrides });
}

/** What a resume starts from: the stored config, the iterations done, and whether the run finished. */
interface StoredRun {
  readonly config: ResolvedRunConfig;
  readonly done: number;
  readonly finished: boolean;
}

/** The run in `dir` for a resume: refused (before anything costly) when it is missing, unreadable or in use. */
function storedRun(dir: string, options: RunOptions): StoredRun {
  const label = `--resume ${options.resume ?? dir}`;
  if (options.out !== undefined)
    throw new UserError("--out cannot be used with --resume (the run stays in its folder)", 2);
  const store = openExisting(dir, { label });
  let stored: StoredRun | null;
  try {
    const config = store.runConfig();
    stored = config && {
      config,
      done: store.completedIterations(),
      finished: store.getMeta("status") === "finished",
    };
  } catch (error) {
    throw unreadable(dir, label, error);
  } finally {
    store.close();
  }
  const holder = runLockHolder(dir);
  if (holder !== null && holder !== process.pid)
    throw new UserError(
      `${label}: the run is in use by process ${holder} (it is running or being resumed); wait for it to end or stop it first`,
      2,
    );
  if (!stored) throw new UserError(`${label}: the run database has no config (the run never started)`, 2);
  return stored;
}

/** The stored config with the changes a resume allows; any other change is refused, naming the field. */
function resumedConfig(stored: StoredRun, dir: string, options: RunOptions): ResolvedRunConfig {
  const next: ResolvedRunConfig = options.config
    ? loadRunConfig(options.config, { overrides: pick(options) })
    : { ...stored.config, ...pickResolved(options) };
  checkResumable(stored.config, next);
  if (next.iterations < stored.done) {
    throw new UserError(
      `--resume ${dir}: iterations ${next.iterations} is fewer than the ${stored.done} already done`,
      2,
    );
  }
  return next;
}

/** Why a field a resume may not change is fixed (by its top-level section); others: MEASURED. */
const MEASURED = "the baselines (σ) and every trial so far were measured with the stored values";
const WHY_FIXED: Readonly<Record<string, string>> = {
  name: "the name is the run's identity: its records, and the git branch of a train.py under git, carry the stored one",
  executor:
    "the trials so far ran where the stored executor sent them, and its jobs in flight are reattached",
  mechanisms: "the start mechanisms are the stored ones (Level 2 and `mechanism approve` change a run's set)",
  level1: "the search so far was cut into cycles by the stored restart cadence",
};

/** Throws a ConfigError naming every field a resume may not change, with the reason for each. */
export function checkResumable(before: ResolvedRunConfig, after: ResolvedRunConfig): void {
  const byReason = new Map<string, string[]>();
  for (const field of configDiff(before, after)) {
    const section = field.split(".")[0] ?? "";
    if ((CHANGEABLE_ON_RESUME as readonly string[]).includes(section)) continue;
    const why = WHY_FIXED[section] ?? MEASURED;
    byReason.set(why, [...(byReason.get(why) ?? []), field]);
  }
  if (byReason.size === 0) return;
  const lines = [...byReason].map(
    ([why, fields]) => `cannot resume with a different ${fields.join(", ")}: ${why}`,
  );
  throw new ConfigError(
    `${lines.join("\n")}\na resume may change only ${CHANGEABLE_ON_RESUME.join(", ")} (start a new run instead)`,
  );
}

/** A resume of a finished run with nothing added: says so, and how to extend it. */
function alreadyFinished(dir: string, stored: StoredRun, config: ResolvedRunConfig): boolean {
  if (!stored.finished || config.iterations > stored.done) return false;
  process.stderr.write(
    `${dir}: the run is already finished (${stored.done}/${stored.config.iterations} iterations); nothing to do
` +
      `to extend it: ${launcherCommand()} run --resume ${dir} --iterations N (N more than ${stored.done})
`,
  );
  return true;
}

async function startRun(base: unknown, options: RunOptions): Promise<void> {
  let fresh: ResolvedRunConfig | null = null;
  let dir: string;
  if (options.resume) dir = path.resolve(options.resume);
  else {
    fresh = newRunConfig(base, options);
    dir = path.resolve(options.out ?? defaultRunDir(fresh.name));
  }
  if (!(await studyRecorded(dir))) return;
  let config: ResolvedRunConfig;
  if (fresh) {
    refuseHeldFolder(dir);
    config = fresh;
  } else {
    const stored = storedRun(dir, options);
    config = resumedConfig(stored, dir, options);
    if (alreadyFinished(dir, stored, config)) return;
  }
  const summary = await runStoppable(dir, config, options);
  process.stderr.write(`\n${formatReport(summary.report)}\n`);
  process.stderr.write(
    `\nresults: ${path.join(dir, "run.db")} (SQLite), ${path.join(dir, "results.tsv")}; trial logs in ${path.join(dir, "trials")}\n` +
      `look again with: ${launcherCommand()} status ${dir}   export: ${launcherCommand()} export ${dir} --format json\n`,
  );
  // A run its LLM could not serve did not do its work: exit 1, resumable once the cause is fixed.
  if (summary.llmStop?.kind === "failed") {
    throw new UserError(
      `${summary.llmStop.reason}\nthe run can be resumed: ${launcherCommand()} run --resume ${dir}`,
      1,
    );
  }
  // A spent token budget with onBudgetExhausted "stop" is a stop asked for: exit 0, said so above.
  if (summary.stopped && !summary.llmStop) process.exitCode = summary.exitCode;
}

/** A new run's folder must not hold a run or a study; the advice depends on whether that run is live. */
function refuseHeldFolder(dir: string): void {
  if (isStudy(dir))
    throw new UserError(
      `${dir} holds a study (study.json; its runs are under runs/): choose another --out`,
      2,
    );
  if (!RunStore.exists(dir)) return;
  const holder = runLockHolder(dir);
  if (holder !== null)
    throw new UserError(
      `${dir} already holds a run, in use by process ${holder} (running or being resumed): choose another --out`,
      2,
    );
  throw new UserError(`${dir} already holds a run: use --resume ${dir} to continue it`, 2);
}

/**
 * The run under SIGINT / SIGTERM / SIGHUP: the first stops it cleanly, recorded as stopped by that
 * signal (exit 128 + its number); a second Ctrl-C after a Ctrl-C quits at once. Any other signal
 * during the stop does not: a study's Ctrl-C reaches its runs both from the terminal (SIGINT, their
 * process group) and from the study (SIGTERM), and a hang-up likewise.
 */
async function runStoppable(
  dir: string,
  config: ResolvedRunConfig,
  options: RunOptions,
): Promise<Awaited<ReturnType<typeof executeRun>> & { readonly exitCode: number }> {
  const controller = new AbortController();
  const display = new RunDisplay();
  let exitCode = 130; // a stop without a signal: the study that started the run is gone
  let stoppedBy: StopSignal | null = null;
  const stop = (signal: StopSignal) => {
    if (controller.signal.aborted) {
      // Only a repeated Ctrl-C quits at once (signals sent together may arrive in either order).
      if (signal === "SIGINT" && stoppedBy === "SIGINT") process.exit(signalExit(signal));
      return;
    }
    stoppedBy = signal;
    exitCode = signalExit(signal);
    if (signal === "SIGHUP") quietOutput();
    const inFlight = display.trialsInFlight().map((id) => `#${id}`);
    // Said as it is: a stop during an LLM wait or a Level 2 session kills no trial.
    const what =
      inFlight.length === 0
        ? "no trial is running"
        : `the trial${inFlight.length > 1 ? "s" : ""} in flight (${inFlight.join(", ")}) ${inFlight.length > 1 ? "are" : "is"} killed`;
    process.stderr.write(
      `\nstopping (${signal}): ${what}; resume with: ${launcherCommand()} run --resume ${dir} (Ctrl-C again to quit now)\n`,
    );
    controller.abort(`stopped by ${STOP_SIGNALS[signal]}`);
  };
  for (const signal of STOP_SIGNAL_NAMES) process.on(signal, stop);
  const watch = watchStudyParent(controller);
  try {
    const summary = await executeRun({
      dir,
      config,
      offline: options.offline ?? false,
      resume: Boolean(options.resume),
      signal: controller.signal,
      observer: display,
    });
    return { ...summary, exitCode };
  } finally {
    for (const signal of STOP_SIGNAL_NAMES) process.off(signal, stop);
    if (watch) clearInterval(watch);
  }
}

/**
 * A run started by `bilevel study` goes ahead once the study has recorded it (runtime/study/runner.ts);
 * if the study is gone first, it does nothing (exit 130, like a stop) and its resume starts it.
 */
async function studyRecorded(dir: string): Promise<boolean> {
  const parent = studyParent();
  if (parent === undefined || (await recordedByStudy(dir, parent))) return true;
  process.stderr.write(
    `the study (process ${parent}) that started this run is gone and never recorded it: nothing done (resuming the study runs it)\n`,
  );
  process.exitCode = 130;
  return false;
}

/**
 * A run started by `bilevel study` (BILEVEL_STUDY_PARENT = its pid) stops like on Ctrl-C when that
 * process goes away (it is re-parented), so a killed study leaves no run writing its store.
 */
function watchStudyParent(controller: AbortController): NodeJS.Timeout | undefined {
  const parent = studyParent();
  if (parent === undefined) return undefined;
  const timer = setInterval(() => {
    if (process.ppid !== parent && !controller.signal.aborted)
      controller.abort(`stopped: the study that started it (process ${parent}) is gone`);
  }, 250);
  timer.unref();
  return timer;
}

/** --objective surrogate[:FILE] as a trainer section ("trainer": the config's own). */
export function objectiveTrainer(objective: string | undefined): RunConfig["trainer"] | undefined {
  if (objective === undefined || objective === "trainer") return undefined;
  const m = /^surrogate(?::(.+))?$/.exec(objective);
  if (!m)
    throw new ConfigError(
      `--objective must be trainer or surrogate[:FILE], got ${JSON.stringify(objective)}`,
    );
  return { kind: "surrogate", file: m[1] === undefined ? DEFAULT_SURROGATE_FILE : path.resolve(m[1]) };
}

function pick(o: RunOptions): DeepPartial<RunConfig> {
  const trainer = objectiveTrainer(o.objective);
  return {
    ...(trainer ? { trainer } : {}),
    ...(o.iterations !== undefined ? { iterations: o.iterations } : {}),
    ...(o.budget !== undefined ? { budgetSeconds: o.budget } : {}),
    ...(o.parallel !== undefined ? { parallel: o.parallel } : {}),
    ...(o.device !== undefined ? { device: o.device } : {}),
  };
}

/** The same flags applied to a resolved config (a resume without --config). */
function pickResolved(o: RunOptions): Partial<ResolvedRunConfig> {
  const trainer = objectiveTrainer(o.objective);
  return {
    ...(trainer ? { trainer } : {}),
    ...(o.iterations !== undefined ? { iterations: o.iterations } : {}),
    ...(o.budget !== undefined ? { budgetSeconds: o.budget } : {}),
    ...(o.parallel !== undefined ? { parallel: o.parallel } : {}),
    ...(o.device !== undefined && o.device !== "auto" ? { device: o.device } : {}),
  };
}

export function registerRunCommands(program: Command): void {
  registerRunCommand(program);
  registerDemoCommand(program);
  registerConfigCommand(program);
  registerStatusCommand(program);
  registerExportCommand(program);
  registerSchemaCommand(program);
}

function registerRunCommand(program: Command): void {
  program
    .command("run")
    .description("start a bilevel run (or resume one with --resume DIR)")
    .option("--config <file>", "run config (JSON; paths in it are relative to its folder)")
    .option("--out <dir>", "run folder (default ./runs/NAME-TIMESTAMP)")
    .option("--iterations <n>", "Level 1 iterations", positiveInt)
    .option("--budget <seconds>", "training time budget per trial", positiveNumber)
    .option("--parallel <n>", "trials in flight at once (docs/cluster.md)", positiveInt)
    .addOption(deviceOption())
    .option(
      "--objective <objective>",
      "trainer (the config's) or surrogate[:FILE]: a model of recorded training instead (default data/surrogate/cpu.jsonl)",
    )
    .option("--offline", "ignore any LLM endpoint: offline proposer, rule-based Level 1.5, library Level 2")
    .option(
      "--resume <dir>",
      "continue a run that was stopped or killed (with --config: apply the changes a resume allows)",
    )
    .action(async (options: RunOptions) => startRun({}, options));
}

function registerDemoCommand(program: Command): void {
  program
    .command("demo")
    .description(
      "an offline run on the CPU trainer with a small budget that shows every level acting (about 5 min)",
    )
    .option("--out <dir>", "run folder (default ./runs/demo-TIMESTAMP)")
    .option("--iterations <n>", "Level 1 iterations", positiveInt)
    .option("--budget <seconds>", "training time budget per trial", positiveNumber)
    .action(async (options: RunOptions) => startRun(DEMO_CONFIG, { ...options, offline: true }));
}

function registerConfigCommand(program: Command): void {
  const configGroup = program.command("config").description("the run config");
  configGroup
    .command("show")
    .description(
      "print the fully resolved config a run would use (device defaults, search space, policy, absolute paths) without running anything",
    )
    .option("--config <file>", "run config (JSON); default: the built-in defaults")
    .addOption(deviceOption())
    .option("--json", "print JSON")
    .action((options: RunOptions) => {
      const config = newRunConfig({}, options);
      process.stdout.write(options.json ? `${JSON.stringify(config, null, 2)}\n` : formatConfig(config));
    });
}

function registerStatusCommand(program: Command): void {
  program
    .command("status")
    .description(
      "what a run did: progress, best, search config, and for each mechanism whether and how it fired",
    )
    .argument("<dir>", "run folder")
    .option("--json", "print the report as JSON")
    .action((dir: string, options: { json?: boolean }) => {
      const store = openExisting(dir);
      const report = buildReport(store);
      store.close();
      process.stdout.write(options.json ? `${jsonForTerminal(report)}\n` : `${formatReport(report)}\n`);
    });
}

function registerExportCommand(program: Command): void {
  program
    .command("export")
    .description("export a run's trials (tsv: Karpathy's results.tsv columns; json: everything)")
    .argument("<dir>", "run folder")
    .addOption(new Option("--format <format>", "output format").choices(["tsv", "json"]).default("tsv"))
    .action((dir: string, options: { format: "tsv" | "json" }) => {
      const store = openExisting(dir);
      if (options.format === "json") {
        const dump = {
          config: store.runConfig(),
          report: buildReport(store),
          trials: store.trials(),
          proposals: store.proposals(),
          searchConfigs: store.searchConfigs(),
          mechanisms: store.mechanisms(),
          ledger: store.ledger(),
          events: store.events(),
          llmExchanges: store.exchanges(),
        };
        process.stdout.write(`${jsonForTerminal(dump)}\n`);
      } else {
        const file = path.join(dir, "results.tsv");
        const tsv = existsSync(file) ? readFileSync(file, "utf8") : "";
        process.stdout.write(dataForStream(tsv, Boolean(process.stdout.isTTY)));
      }
      store.close();
    });
}

function registerSchemaCommand(program: Command): void {
  program
    .command("schema")
    .description("write the run config's JSON Schema (and an example config) to a folder")
    .argument("[dir]", "where to write", ".")
    .action((dir: string) => {
      writeFileSync(
        path.join(dir, "run-config.schema.json"),
        `${JSON.stringify(RUN_CONFIG_SCHEMA, null, 2)}\n`,
      );
      writeFileSync(
        path.join(dir, "run-config.example.json"),
        `${JSON.stringify(DEFAULT_RUN_CONFIG, null, 2)}\n`,
      );
      process.stdout.write(`wrote ${path.join(dir, "run-config.schema.json")} and run-config.example.json\n`);
    });
}
