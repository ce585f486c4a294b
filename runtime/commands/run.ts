// `bilevel run | demo | status | export`: start or resume a run, look at one, export it.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { type Command, InvalidArgumentError, Option } from "commander";
import {
  ConfigError,
  DEFAULT_RUN_CONFIG,
  loadRunConfig,
  RUN_CONFIG_SCHEMA,
  type RunConfig,
  resolveRunConfig,
} from "../config.ts";
import { buildReport, formatReport } from "../report.ts";
import { RunStore } from "../store.ts";
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
  offline?: boolean;
  resume?: string;
  json?: boolean;
}

function fail(message: string, code = 2): never {
  process.stderr.write(`bilevel: ${message}\n`);
  process.exit(code);
}

function defaultOut(name: string): string {
  const stamp = new Date().toISOString().replace(/[-:]/g, "").replace(/\..*/, "").replace("T", "-");
  return path.join("runs", `${name}-${stamp}`);
}

async function startRun(base: unknown, options: RunOptions): Promise<void> {
  let config: RunConfig;
  let dir: string;
  try {
    if (options.resume) {
      dir = options.resume;
      if (!RunStore.exists(dir)) fail(`--resume ${dir}: no run database (run.db) there`);
      const store = RunStore.open(dir);
      const stored = store.runConfig();
      store.close();
      if (!stored) fail(`--resume ${dir}: the run database has no config (it never started)`);
      config = resolveRunConfig(stored, pick(options));
    } else {
      config = options.config
        ? loadRunConfig(options.config, pick(options))
        : resolveRunConfig(base, pick(options));
      dir = options.out ?? defaultOut(config.name);
      if (RunStore.exists(dir)) fail(`${dir} already holds a run: use --resume ${dir} to continue it`);
    }
  } catch (error) {
    if (error instanceof ConfigError) fail(error.message);
    throw error;
  }
  let summary: Awaited<ReturnType<typeof executeRun>>;
  try {
    summary = await executeRun({ dir, config, offline: options.offline ?? false });
  } catch (error) {
    if (error instanceof ConfigError) fail(error.message);
    throw error;
  }
  process.stderr.write(`\n${formatReport(summary.report)}\n`);
  process.stderr.write(
    `\nresults: ${path.join(dir, "run.db")} (SQLite), ${path.join(dir, "results.tsv")}; trial logs in ${path.join(dir, "trials")}\n` +
      `look again with: ./bilevel status ${dir}   export: ./bilevel export ${dir} --format json\n`,
  );
  if (summary.stopped) process.exitCode = 130;
}

function pick(o: RunOptions): Partial<RunConfig> {
  const out: { iterations?: number; budgetSeconds?: number } = {};
  if (o.iterations !== undefined) out.iterations = o.iterations;
  if (o.budget !== undefined) out.budgetSeconds = o.budget;
  return out as Partial<RunConfig>;
}

function openExisting(dir: string): RunStore {
  if (!RunStore.exists(dir)) fail(`${dir}: no run database (run.db) there`);
  try {
    return RunStore.open(dir, { readOnly: true });
  } catch (error) {
    fail(`${dir}: cannot read the run database: ${(error as Error).message}`, 1);
  }
}

export function registerRunCommands(program: Command): void {
  program
    .command("run")
    .description("start a bilevel run (or resume one with --resume DIR)")
    .option("--config <file>", "run config (JSON; schema: runtime/run-config.schema.json)")
    .option("--out <dir>", "run folder (default runs/NAME-TIMESTAMP)")
    .option("--iterations <n>", "Level 1 iterations", positiveInt)
    .option("--budget <seconds>", "training time budget per trial", positiveNumber)
    .option("--offline", "ignore any LLM endpoint: offline proposer, rule-based Level 1.5, library Level 2")
    .option("--resume <dir>", "continue a run that was stopped or killed")
    .action(async (options: RunOptions) => startRun({}, options));

  program
    .command("demo")
    .description(
      "an offline run on the CPU trainer with a small budget that shows every level acting (about 5 min)",
    )
    .option("--out <dir>", "run folder (default runs/demo-TIMESTAMP)")
    .option("--iterations <n>", "Level 1 iterations", positiveInt)
    .option("--budget <seconds>", "training time budget per trial", positiveNumber)
    .action(async (options: RunOptions) => startRun(DEMO_CONFIG, { ...options, offline: true }));

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
