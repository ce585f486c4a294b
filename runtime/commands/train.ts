// `bilevel train`: one training trial from the command line.
import { statSync } from "node:fs";
import path from "node:path";
import cliProgress from "cli-progress";
import { type Command, CommanderError, Option } from "commander";
import type { ParamValue } from "../../mechanism-api/index.d.ts";
import { parseAssignment } from "../../trainer/search-space.ts";
import { TorchTrainer } from "../../trainer/torch-trainer.ts";
import type { Device, TrialOutcome } from "../../trainer/types.ts";
import { defaultTrainDir } from "../paths.ts";
import { canStyle } from "../terminal-text.ts";
import { runDryRun } from "./train-dry-run.ts";
import {
  listScript,
  parseScriptAssignment,
  runScriptTrial,
  type ScriptSetup,
  scriptSetup,
} from "./train-script.ts";

/** The command's exit status per outcome (the trainer's own codes, plus 5 for a timeout). */
export const TRAIN_EXIT: Readonly<Record<TrialOutcome["status"], number>> = {
  ok: 0,
  crashed: 1,
  "invalid-config": 2,
  oom: 3,
  diverged: 4,
  timeout: 5,
};

interface TrainOptions {
  set: string[];
  budget?: string;
  maxSteps?: string;
  seed?: string;
  device: Device;
  data?: string;
  json?: boolean;
  workDir?: string;
  script?: string;
  config?: string;
  command?: string;
  list?: boolean;
  dryRun?: boolean;
}

/** Parse a numeric option; `min` is inclusive for integers and exclusive for other numbers. */
function numberOption(name: string, raw: string, errors: string[], integer: boolean, min: number): number {
  const n = Number(raw);
  const tooSmall = integer ? n < min : n <= min;
  if (raw.trim() === "" || !Number.isFinite(n) || (integer && !Number.isInteger(n)) || tooSmall) {
    const what = integer ? `an integer >= ${min}` : `a number > ${min}`;
    errors.push(`${name} must be ${what}, got ${JSON.stringify(raw)}`);
  }
  return n;
}

function summaryBlock(o: TrialOutcome): string {
  const r = o.result;
  if (!r) return `status: ${o.status}\nmessage: ${o.message}\nlog: ${o.logPath}\n`;
  return [
    "---",
    `val_bpb:          ${r.val_bpb.toFixed(6)}`,
    `training_seconds: ${r.training_seconds.toFixed(1)}`,
    `total_seconds:    ${r.total_seconds.toFixed(1)}`,
    `peak_vram_mb:     ${r.peak_memory_mb.toFixed(1)}`,
    `mfu_percent:      ${r.mfu_percent === null ? "n/a" : r.mfu_percent.toFixed(2)}`,
    `total_tokens_M:   ${(r.num_tokens / 1e6).toFixed(1)}`,
    `num_steps:        ${r.num_steps}`,
    `num_params_M:     ${(r.num_params / 1e6).toFixed(1)}`,
    `depth:            ${String(r.config.DEPTH ?? "")}`,
    `tokens_per_sec:   ${r.tokens_per_second.toFixed(0)}`,
    `device:           ${r.device}`,
    `log:              ${o.logPath}`,
    "",
  ].join("\n");
}

export function registerTrainCommand(program: Command): void {
  program
    .command("train")
    .description(
      "run one training trial and print val_bpb: the built-in GPT trainer, or your own train.py (--script)",
    )
    .option(
      "--set <KEY=VALUE>",
      "override a hyperparameter, or a constant of --script (repeatable)",
      (v: string, acc: string[]) => [...acc, v],
      [],
    )
    .option(
      "--script <train.py>",
      "run your own Karpathy-style train.py (its constants are the hyperparameters)",
    )
    .option(
      "--list",
      "with --script or --config: print the script's constants and the search range each would get",
    )
    .option(
      "--config <file>",
      "take the script, its command and declared ranges from this run config (trainer.kind external)",
    )
    .option(
      "--command <cmd>",
      'with --script: the command, e.g. "uv run {script}" ({script}: the trial\'s copy)',
    )
    .option(
      "--budget <seconds>",
      "training time budget in seconds (warm-up steps excluded; default 60, a script's TIME_BUDGET)",
    )
    .option("--max-steps <n>", "train exactly n steps instead (deterministic)")
    .option(
      "--seed <n>",
      "seed of the init and the batch sampler (a script gets it as $BILEVEL_SEED; default 0)",
    )
    .addOption(
      new Option("--device <device>", "where to train").choices(["auto", "cpu", "cuda"]).default("auto"),
    )
    .option("--data <dir>", "a folder of .txt/.jsonl files instead of the default corpus")
    .option("--work-dir <dir>", "where the trial's log goes (default ./runs/train/<time>)")
    .option("--json", "print only the final outcome object (JSON) on stdout")
    .option(
      "--dry-run",
      "resolve and check the trial as a run would (interpreter, data, evaluation size, memory); train nothing",
    )
    .exitOverride((err) => {
      // Bad command-line input is exit 2, like every other invalid input to `train`.
      if (err.exitCode !== 0) throw new CommanderError(2, err.code, err.message);
      throw err;
    })
    .action(async (opts: TrainOptions) => {
      process.exitCode = await train(opts);
    });
}

/** The trial a command line asks for, or the errors in it (exit 2). */
interface TrainInput {
  readonly config: Record<string, ParamValue>;
  readonly setup: ScriptSetup | null;
  readonly budget: number;
  readonly maxSteps: number | undefined;
  readonly seed: number;
}

function parseTrainInput(opts: TrainOptions, errors: string[]): TrainInput {
  const config: Record<string, ParamValue> = {};
  const setup = opts.script || opts.config ? scriptSetup(opts, errors) : null;
  for (const item of opts.set) {
    if (setup) {
      // A script's constants, typed by the values the script has.
      const parsed = parseScriptAssignment(setup.info, item);
      if (typeof parsed === "string") errors.push(parsed);
      else config[parsed.name] = parsed.value;
      continue;
    }
    const parsed = parseAssignment(item);
    errors.push(...parsed.errors);
    for (const [k, v] of parsed.entries) config[k] = v;
  }
  const budget = numberOption(
    "--budget",
    opts.budget ?? String(setup?.budgetSeconds ?? 60),
    errors,
    false,
    0,
  );
  const maxSteps =
    opts.maxSteps === undefined ? undefined : numberOption("--max-steps", opts.maxSteps, errors, true, 1);
  const seed = numberOption("--seed", opts.seed ?? "0", errors, true, 0);
  if (opts.data !== undefined) {
    let isDir = false;
    try {
      isDir = statSync(opts.data).isDirectory();
    } catch {
      // reported below
    }
    if (!isDir) errors.push(`--data ${JSON.stringify(opts.data)} is not a folder`);
  }
  return { config, setup, budget, maxSteps, seed };
}

/** --list: the script's constants and the range each would get. */
function listConstants(opts: TrainOptions): number {
  const errors: string[] = [];
  const setup = opts.script || opts.config ? scriptSetup(opts, errors) : null;
  if (setup) process.stdout.write(listScript(setup));
  else if (errors.length === 0) errors.push("--list needs --script (or --config with an external trainer)");
  if (errors.length) process.stderr.write(`bilevel train: ${errors.join("\n  ")}\n`);
  return errors.length ? 2 : 0;
}

/** --dry-run: plan the built-in trainer's trial as a run would, and check it; trains nothing. */
function dryRun(
  opts: TrainOptions,
  input: Pick<ReturnType<typeof parseTrainInput>, "config" | "setup" | "budget" | "maxSteps" | "seed">,
  workDir: string,
): Promise<number> | number {
  if (input.setup) {
    process.stderr.write(
      "bilevel train: --dry-run plans the built-in trainer's run; it does not take --script\n",
    );
    return 2;
  }
  return runDryRun(
    {
      config: input.config,
      budgetSeconds: input.budget,
      seed: input.seed,
      device: opts.device,
      workDir,
      ...(input.maxSteps !== undefined ? { maxSteps: input.maxSteps } : {}),
      ...(opts.data ? { dataDir: opts.data } : {}),
    },
    Boolean(opts.json),
  );
}

async function train(opts: TrainOptions): Promise<number> {
  if (opts.list) return listConstants(opts);
  const errors: string[] = [];
  const { config, setup, budget, maxSteps, seed } = parseTrainInput(opts, errors);
  if (errors.length) {
    process.stderr.write(`bilevel train: ${errors.join("\n  ")}\n`);
    return 2;
  }
  const workDir = path.resolve(opts.workDir ?? defaultTrainDir());
  if (opts.dryRun) return dryRun(opts, { config, setup, budget, maxSteps, seed }, workDir);
  const bar = new cliProgress.SingleBar(
    {
      stream: process.stderr,
      format: "train |{bar}| {percentage}% | step {step} | loss {loss} | {tps} tok/s",
      hideCursor: true,
      clearOnComplete: true,
    },
    cliProgress.Presets.shades_classic,
  );
  const showBar = !opts.json && canStyle(process.stderr);
  if (showBar) bar.start(100, 0, { step: 0, loss: "-", tps: 0 });
  else if (!opts.json)
    process.stderr.write(`training (log: ${path.join(workDir, setup ? "train.log" : "trainer.log")})\n`);
  const abort = new AbortController();
  const onSignal = () => abort.abort();
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  const onProgress = (p: { progress: number; step: number; loss: number; tokensPerSecond: number }) => {
    if (showBar) {
      bar.update(Math.round(p.progress * 100), {
        step: p.step,
        loss: p.loss.toFixed(3),
        tps: Math.round(p.tokensPerSecond),
      });
    }
  };
  const outcome = setup
    ? await runScriptTrial(
        setup,
        config,
        {
          budgetSeconds: budget,
          seed: opts.seed === undefined ? undefined : seed,
          workDir,
          signal: abort.signal,
        },
        onProgress,
      )
    : await new TorchTrainer().run({
        config,
        budgetSeconds: budget,
        ...(maxSteps !== undefined ? { maxSteps } : {}),
        seed,
        device: opts.device,
        ...(opts.data !== undefined ? { dataDir: opts.data } : {}),
        workDir,
        signal: abort.signal,
        onProgress,
      });
  process.off("SIGINT", onSignal);
  process.off("SIGTERM", onSignal);
  if (showBar) bar.stop();
  if (opts.json) process.stdout.write(`${JSON.stringify(outcome)}\n`);
  else {
    process.stdout.write(summaryBlock(outcome));
    if (outcome.status !== "ok")
      process.stderr.write(`bilevel train: ${outcome.status}: ${outcome.message}\n`);
  }
  return TRAIN_EXIT[outcome.status];
}
