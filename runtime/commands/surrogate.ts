// `bilevel surrogate record | eval`: measure the trainer over a design into a data file, and
// report how well the surrogate fitted to such a file predicts held-out trials.
import path from "node:path";
import { type Command, Option } from "commander";
import { recordSurrogate } from "../surrogate/record.ts";
import { positiveInt, positiveNumber } from "./run.ts";

interface RecordFlags {
  device: "cpu" | "cuda";
  budget: number;
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
    .option("--budget <seconds>", "training time budget per trial", positiveNumber, 4)
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
}
