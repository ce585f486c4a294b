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
  seed: string;
  device: Device;
  data?: string;
  json?: boolean;
  workDir?: string;
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
    .description("run one training trial of the GPT trainer and print val_bpb")
    .option(
      "--set <KEY=VALUE>",
      "override a hyperparameter (repeatable)",
      (v: string, acc: string[]) => [...acc, v],
      [],
    )
    .option("--budget <seconds>", "training time budget in seconds (warm-up steps excluded)", "60")
    .option("--max-steps <n>", "train exactly n steps instead (deterministic)")
    .option("--seed <n>", "seed of the init and the batch sampler", "0")
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

async function train(opts: TrainOptions): Promise<number> {
  const errors: string[] = [];
  const config: Record<string, ParamValue> = {};
  for (const item of opts.set) {
    const parsed = parseAssignment(item);
    errors.push(...parsed.errors);
    for (const [k, v] of parsed.entries) config[k] = v;
  }
  const budget = numberOption("--budget", opts.budget ?? "60", errors, false, 0);
  const maxSteps =
    opts.maxSteps === undefined ? undefined : numberOption("--max-steps", opts.maxSteps, errors, true, 1);
  const seed = numberOption("--seed", opts.seed, errors, true, 0);
  if (opts.data !== undefined) {
    let isDir = false;
    try {
      isDir = statSync(opts.data).isDirectory();
    } catch {
      // reported below
    }
    if (!isDir) errors.push(`--data ${JSON.stringify(opts.data)} is not a folder`);
  }
  if (errors.length) {
    process.stderr.write(`bilevel train: ${errors.join("\n  ")}\n`);
    return 2;
  }
  const workDir = path.resolve(opts.workDir ?? defaultTrainDir());
  if (opts.dryRun) {
    const input = { config, budgetSeconds: budget, seed, device: opts.device, workDir };
    return runDryRun(
      {
        ...input,
        ...(maxSteps !== undefined ? { maxSteps } : {}),
        ...(opts.data ? { dataDir: opts.data } : {}),
      },
      Boolean(opts.json),
    );
  }
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
  else if (!opts.json) process.stderr.write(`training (log: ${path.join(workDir, "trainer.log")})\n`);
  const abort = new AbortController();
  const onSignal = () => abort.abort();
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  const outcome = await new TorchTrainer().run({
    config,
    budgetSeconds: budget,
    ...(maxSteps !== undefined ? { maxSteps } : {}),
    seed,
    device: opts.device,
    ...(opts.data !== undefined ? { dataDir: opts.data } : {}),
    workDir,
    signal: abort.signal,
    onProgress: (p) => {
      if (showBar) {
        bar.update(Math.round(p.progress * 100), {
          step: p.step,
          loss: p.loss.toFixed(3),
          tps: Math.round(p.tokensPerSecond),
        });
      }
    },
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
