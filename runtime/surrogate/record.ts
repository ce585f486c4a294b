// `bilevel surrogate record`: runs the project's trainer over the design (runtime/surrogate/
// design.ts) and appends one JSON line per trial to the data file. Resumable: a file with the
// same header is continued, its recorded trials are not run again.
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import type { ParamSpec } from "../../mechanism-api/index.d.ts";
import { findPython } from "../../trainer/python.ts";
import { loadSearchSpace } from "../../trainer/search-space.ts";
import { TorchTrainer } from "../../trainer/torch-trainer.ts";
import type { Trainer } from "../../trainer/types.ts";
import { UserError } from "../errors.ts";
import { runPool, slotLaunch } from "../study/slots.ts";
import {
  readSurrogateData,
  recordConfig,
  recordLine,
  SURROGATE_FORMAT,
  SURROGATE_VERSION,
  type SurrogateHeader,
  type SurrogateRecord,
} from "./data.ts";
import {
  configValues,
  type DesignPoint,
  localPoints,
  planDesign,
  repeatPoints,
  type Scored,
  spaceFillingPoints,
} from "./design.ts";

export interface RecordOptions {
  readonly out: string;
  readonly device: "cpu" | "cuda";
  readonly budgetSeconds: number;
  /** Train exactly this many steps (load on a shared machine does not change the result); the budget then only sets the timeout. */
  readonly maxSteps: number | null;
  readonly trials: number;
  readonly repeats: number;
  readonly jobs: number;
  readonly seed: number;
  /** Address-space limit per trial (prlimit --as); null for none. Defines what "oom" means here. */
  readonly memoryBytes: number | null;
  /** Seconds after budget × 1.5 before a trial is killed as a timeout. */
  readonly graceSeconds: number;
  /** For tests: the trainer of a job slot instead of the project's Python trainer. */
  readonly trainerFor?: (slot: number) => Trainer;
  readonly log?: (line: string) => void;
}

function header(options: RecordOptions, params: readonly ParamSpec[]): SurrogateHeader {
  return {
    format: SURROGATE_FORMAT,
    version: SURROGATE_VERSION,
    device: options.device,
    budgetSeconds: options.budgetSeconds,
    maxSteps: options.maxSteps,
    params: params.map((p) => p.name),
    design: { trials: options.trials, repeats: options.repeats, seed: options.seed },
    limits: {
      memoryBytes: options.memoryBytes,
      timeoutSeconds: options.budgetSeconds * 1.5 + options.graceSeconds,
    },
    note: "Recorded by `bilevel surrogate record` (python -m trainer; one JSON line per trial, x in params order).",
  };
}

/** The records already in `out` when its header matches `wanted`; a different design is refused. */
function existingRecords(out: string, wanted: SurrogateHeader): SurrogateRecord[] {
  if (!existsSync(out)) {
    mkdirSync(path.dirname(path.resolve(out)), { recursive: true });
    writeFileSync(out, `${JSON.stringify(wanted)}\n`);
    return [];
  }
  const data = readSurrogateData(out);
  const same = (({ note: _a, ...h }: SurrogateHeader) => JSON.stringify(h))(data.header);
  const want = (({ note: _a, ...h }: SurrogateHeader) => JSON.stringify(h))(wanted);
  if (same !== want) {
    throw new UserError(
      `${out} holds a recording with other settings; choose another --out to start a new one`,
      2,
    );
  }
  return [...data.records];
}

/** The project's Python trainer for a slot: pinned (taskset / CUDA_VISIBLE_DEVICES), memory-capped. */
function torchTrainerFor(options: RecordOptions): (slot: number) => Trainer {
  const found = findPython("torch");
  if (!found.ok) throw new UserError(found.error, 2);
  return (slot) => {
    const launch = slotLaunch(slot, options.jobs, options.device);
    const cap = options.memoryBytes === null ? [] : ["prlimit", `--as=${options.memoryBytes}`];
    const words = [...launch.prefix, ...cap, found.python];
    return new TorchTrainer({
      python: words[0] as string,
      entry: [...words.slice(1), "-m", "trainer"],
      env: launch.env,
      graceSeconds: options.graceSeconds,
    });
  };
}

export async function recordSurrogate(options: RecordOptions): Promise<SurrogateRecord[]> {
  const params = loadSearchSpace(options.device);
  const head = header(options, params);
  const records = existingRecords(options.out, head);
  const trainerFor = options.trainerFor ?? torchTrainerFor(options);
  const trainers = new Map<number, Trainer>();
  const scratch = mkdtempSync(path.join(tmpdir(), "bilevel-surrogate-"));
  const done = new Map(records.map((r) => [r.i, r]));
  const log = options.log ?? (() => {});
  const runPhase = async (points: readonly DesignPoint[]) => {
    const todo = points.filter((p) => !done.has(p.i));
    await runPool(todo, options.jobs, async (point, slot) => {
      const trainer = trainers.get(slot) ?? trainerFor(slot);
      trainers.set(slot, trainer);
      const workDir = path.join(scratch, `trial-${point.i}`);
      const outcome = await trainer.run({
        config: point.config,
        budgetSeconds: options.budgetSeconds,
        ...(options.maxSteps !== null ? { maxSteps: options.maxSteps } : {}),
        seed: point.seed,
        device: options.device,
        workDir,
      });
      rmSync(workDir, { recursive: true, force: true });
      // Design points always pass the search space's check: a refusal means the trainer's
      // environment broke (e.g. its corpus vanished), not the config. Stop instead of recording it.
      if (outcome.status === "invalid-config") {
        throw new UserError(
          `the trainer refused design point #${point.i}, which the search space accepts: ${outcome.message}`,
          1,
        );
      }
      const record: SurrogateRecord = {
        i: point.i,
        phase: point.phase,
        seed: point.seed,
        x: configValues(head.params, point.config),
        status: outcome.status,
        valBpb: outcome.valBpb,
        seconds: outcome.durationMs / 1000,
      };
      appendFileSync(options.out, `${recordLine(record)}\n`);
      done.set(point.i, record);
      log(
        `${done.size}/${options.trials} #${point.i} ${point.phase}: ${outcome.status} ${outcome.valBpb ?? ""}`,
      );
    });
  };
  try {
    await runDesign(params, options, head, done, runPhase);
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
  return [...done.values()].sort((a, b) => a.i - b.i);
}

/** The phases in order; each later phase is computed from the records before its first index. */
async function runDesign(
  params: readonly ParamSpec[],
  options: RecordOptions,
  head: SurrogateHeader,
  done: Map<number, SurrogateRecord>,
  runPhase: (points: readonly DesignPoint[]) => Promise<void>,
): Promise<void> {
  const plan = planDesign(options.trials, options.repeats);
  const scoredBefore = (first: number): Scored[] =>
    [...done.values()]
      .filter((r) => r.i < first)
      .map((r) => ({ config: recordConfig(head, r), valBpb: r.valBpb }));
  await runPhase(spaceFillingPoints(params, plan, options.seed));
  let first = plan.space + plan.nearDefault;
  for (const n of plan.local) {
    await runPhase(localPoints(params, scoredBefore(first), n, first, options.seed));
    first += n;
  }
  await runPhase(repeatPoints(params, scoredBefore(first), plan, first));
}
