// `bilevel surrogate record | eval`: measure the trainer over a design into a data file, and
// report how well the surrogate fitted to such a file predicts held-out trials.
import path from "node:path";
import { type Command, Option } from "commander";
import { readSurrogateData } from "../surrogate/data.ts";
import { evaluateSurrogate, type SurrogateEval } from "../surrogate/eval.ts";
import { recordSurrogate } from "../surrogate/record.ts";
import { positiveInt, positiveNumber } from "./run.ts";

interface RecordFlags {
  device: "cpu" | "cuda";
  budget: number;
  maxSteps?: number;
  trials: number;
  repeats: number;
  jobs: number;
  seed: number;
  memory: number;
  grace: number;
  out: string;
}

function nonNegativeInt(value: string): number {
  return value === "0" ? 0 : positiveInt(value);
}

export function registerSurrogateCommands(program: Command): void {
  const group = program
    .command("surrogate")
    .description("a surrogate of real training (a model fitted to measured trials) for fast studies");
  group
    .command("record")
    .description(
      "run the trainer over a space-filling design, local moves around good regions and repeated points; one JSON line per trial (resumable)",
    )
    .addOption(new Option("--device <device>", "where trials run").choices(["cpu", "cuda"]).default("cpu"))
    .option(
      "--budget <seconds>",
      "training time budget per trial (with --max-steps: sets only the timeout)",
      positiveNumber,
      4,
    )
    .option(
      "--max-steps <n>",
      "train exactly n steps instead of for the budget (a result that load on the machine does not change)",
      positiveInt,
    )
    .option("--trials <n>", "trials in all, repeats included", positiveInt, 300)
    .option("--repeats <n>", "seeds per repeated point (noise measurement)", positiveInt, 4)
    .option("--jobs <n>", "trials at once (CPU: one core each; CUDA: one device each)", positiveInt, 1)
    .option("--seed <n>", "the design's seed", nonNegativeInt, 0)
    .option("--memory <GiB>", "address-space limit per trial (prlimit; 0 = none)", Number, 4)
    .option(
      "--grace <seconds>",
      "a trial is killed as a timeout after budget × 1.5 + this",
      positiveNumber,
      20,
    )
    .requiredOption(
      "--out <file>",
      "the data file (JSON lines; an existing one with the same settings is continued)",
    )
    .action(async (flags: RecordFlags) => {
      const records = await recordSurrogate({
        out: flags.out,
        device: flags.device,
        budgetSeconds: flags.budget,
        maxSteps: flags.maxSteps ?? null,
        trials: flags.trials,
        repeats: flags.repeats,
        jobs: flags.jobs,
        seed: flags.seed,
        memoryBytes: flags.memory > 0 ? Math.round(flags.memory * 2 ** 30) : null,
        graceSeconds: flags.grace,
        log: (line) => process.stderr.write(`${line}\n`),
      });
      const ok = records.filter((r) => r.status === "ok").length;
      process.stdout.write(`${records.length} trials (${ok} ok) in ${path.resolve(flags.out)}\n`);
    });
  group
    .command("eval")
    .description(
      "held-out quality of the surrogate fitted to FILE: rank correlation and RMSE next to the noise σ",
    )
    .argument("<file>", "a recording (JSON lines)")
    .option("--folds <n>", "cross-validation folds (by config: repeats stay together)", positiveInt, 5)
    .option("--seed <n>", "seed of the fold assignment", nonNegativeInt, 0)
    .option("--json", "print JSON")
    .action((file: string, flags: { folds: number; seed: number; json?: boolean }) => {
      const data = readSurrogateData(file);
      const result = evaluateSurrogate(data, flags.folds, flags.seed);
      const h = data.header;
      const budget = h.maxSteps === null ? `budget ${h.budgetSeconds} s` : `${h.maxSteps} steps`;
      const head = `surrogate ${file}: ${result.records} trials on ${h.device}, ${budget} each`;
      process.stdout.write(
        flags.json ? `${JSON.stringify(result, null, 2)}\n` : `${head}\n${formatEval(result)}`,
      );
    });
}

const num = (v: number | null, digits = 4) => (v === null ? "n/a" : v.toFixed(digits));

export function formatEval(r: SurrogateEval): string {
  return [
    `held-out, ${r.folds}-fold by config (repeats of a config stay in one fold):`,
    `  val_bpb: Spearman rank correlation ${num(r.spearman, 3)}, RMSE ${num(r.rmse)} over ${r.okTrials} ok trials`,
    `  spread of the measured val_bpb (RMSE of predicting their mean) ${num(r.spread)}`,
    `  measured noise σ ${num(r.noise.sigma)} (pooled over ${r.noise.points} configs run ${r.noise.trials} times in all)`,
    `  status (ok or failure class): ${(100 * r.statusAccuracy).toFixed(1)}% right (always the commonest: ${(100 * r.majorityAccuracy).toFixed(1)}%)`,
    "",
  ].join("\n");
}
