// `bilevel study`: groups × repeats of ordinary runs in one folder, resumable as a whole, then
// the statistics table (runtime/study/). docs/studies.md explains the groups and the numbers.
import { existsSync, mkdirSync, readdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { type Command, InvalidArgumentError } from "commander";
import { configDiff } from "../config.ts";
import { UserError } from "../errors.ts";
import { defaultRunDir } from "../paths.ts";
import { quietOutput, STOP_SIGNAL_NAMES, type StopSignal, signalExit } from "../stop-signals.ts";
import { isStudy, readStudyJson, resultsPath, type StudyFile, writeStudyJson } from "../study/layout.ts";
import { loadStudy } from "../study/results.ts";
import { type FailedRun, runStudy } from "../study/runner.ts";
import {
  resolveStudy,
  type StudyFlags,
  type StudyRunSpec,
  type StudySpec,
  studyRuns,
  studyTitle,
  withRepeats,
} from "../study/spec.ts";
import { formatStudy } from "../study/table.ts";
import { surrogateTrainer } from "../surrogate/trainer.ts";
import { jsonForTerminal } from "../terminal-text.ts";
import { positiveInt, positiveNumber } from "./run.ts";

interface StudyOptions {
  config?: string;
  groups?: string[];
  repeats?: number;
  iterations?: number;
  budget?: number;
  objective?: string;
  out?: string;
  resume?: string;
  jobs: number;
  offline?: boolean;
  target?: number;
  json?: boolean;
}

function groupList(value: string): string[] {
  const names = value.split(",").map((s) => s.trim());
  if (names.some((n) => !/^[A-Za-z][A-Za-z0-9_]{0,31}$/.test(n)) || new Set(names).size !== names.length) {
    throw new InvalidArgumentError(
      `expected distinct group names separated by commas (e.g. A,B,C,D,R), got "${value}"`,
    );
  }
  return names;
}

function targetValue(value: string): number {
  const n = Number(value);
  if (value.trim() === "" || !Number.isFinite(n))
    throw new InvalidArgumentError(`expected a val_bpb, got "${value}"`);
  return n;
}

export function registerStudyCommand(program: Command): void {
  program
    .command("study")
    .description(
      "run groups × repeats of ordinary runs (A: Level 1, B: +1.5, C: +1.5+2, D: +2, R: Level 1 with restarts) and print statistics of the improvement per group",
    )
    .option(
      "--config <file>",
      "study config (JSON: groups, customGroups, run: the base run config; docs/studies.md)",
    )
    .option("--groups <list>", "groups to run, comma-separated (default A,B,C,D,R)", groupList)
    .option("--repeats <n>", "runs per group (repeat r uses the same seeds in every group)", positiveInt)
    .option("--iterations <n>", "Level 1 iterations per run", positiveInt)
    .option("--budget <seconds>", "training time budget per trial", positiveNumber)
    .option(
      "--objective <objective>",
      "trainer (the run config's) or surrogate[:FILE] (default data/surrogate/cpu.jsonl)",
    )
    .option(
      "--out <dir>",
      "study folder (default ./runs/NAME-TIMESTAMP); the same command on it again continues it",
    )
    .option(
      "--resume <dir>",
      "continue the study in this folder with its stored settings (with --repeats N: add repeats up to N)",
    )
    .option(
      "--jobs <n>",
      "runs at once (CPU runs pinned to a core each, CUDA runs to a device each)",
      positiveInt,
      1,
    )
    .option("--offline", "every run offline: offline proposer, rule-based Level 1.5, library Level 2")
    .option(
      "--target <val_bpb>",
      "target for 'trials to reach a target' (default: the median best of all runs)",
      targetValue,
    )
    .option("--json", "print the results (groups, runs, curves, statistics) as JSON instead of the tables")
    .action(async (options: StudyOptions) => {
      process.exitCode = await study(options);
    });
}

function flagsOf(o: StudyOptions): StudyFlags {
  return {
    ...(o.groups !== undefined ? { groups: o.groups } : {}),
    ...(o.repeats !== undefined ? { repeats: o.repeats } : {}),
    ...(o.iterations !== undefined ? { iterations: o.iterations } : {}),
    ...(o.budget !== undefined ? { budget: o.budget } : {}),
    ...(o.objective !== undefined ? { objective: o.objective } : {}),
    ...(o.offline !== undefined ? { offline: o.offline } : {}),
  };
}

/** "spec.repeats (3 there, 5 here)": a differing field with both values when they are short. */
function withValues(field: string, stored: unknown, wanted: unknown): string {
  const at = (value: unknown): string | undefined => {
    for (const key of field.split(".")) value = (value as Record<string, unknown> | undefined)?.[key];
    return JSON.stringify(value);
  };
  const [there, here] = [at(stored), at(wanted)];
  const short = (text: string | undefined) => text === undefined || text.length <= 40;
  if (!short(there) || !short(here) || (there === undefined && here === undefined)) return field;
  return `${field} (${there ?? "unset"} there, ${here ?? "unset"} here)`;
}

/** The study to run and its folder: a stored one (resume), or a new one checked in full before anything exists. */
function prepare(options: StudyOptions): Prepared {
  if (options.resume !== undefined) {
    const { repeats: _repeats, ...others } = flagsOf(options);
    const fixed = Object.keys(others).concat(options.config ? ["config"] : [], options.out ? ["out"] : []);
    if (fixed.length > 0) {
      throw new UserError(
        `--resume keeps the study's stored settings; drop --${fixed.join(", --")} (only --repeats to add repeats, --jobs, --target and --json apply)`,
        2,
      );
    }
    const dir = path.resolve(options.resume);
    if (!isStudy(dir)) throw new UserError(`--resume ${dir}: no study.json there`, 2);
    const stored = readStudyJson(dir);
    const repeats = options.repeats ?? stored.spec.repeats;
    if (repeats < stored.spec.repeats) {
      throw new UserError(
        `--repeats ${repeats}: the study in ${dir} has ${stored.spec.repeats} repeats; it can gain repeats, not lose them`,
        2,
      );
    }
    return extended(dir, stored, repeats);
  }
  const { spec, base, baseDir } = resolveStudy(options.config, flagsOf(options));
  const runs = studyRuns(spec, base, baseDir);
  const dir = path.resolve(options.out ?? defaultRunDir(spec.name));
  if (isStudy(dir)) return sameStudy(dir, spec, runs);
  if (existsSync(dir) && readdirSync(dir).length > 0)
    throw new UserError(`${dir} exists and is not a study folder: choose another --out`, 2);
  return { dir, file: { spec, runs, createdAt: new Date().toISOString() }, addedRepeats: 0 };
}

/**
 * The study already in `dir` when the command names it again: continued as it is, or with more
 * repeats; anything else differing is refused, naming what.
 */
function sameStudy(dir: string, spec: StudySpec, runs: StudyRunSpec[]): Prepared {
  const stored = readStudyJson(dir);
  // The same study with more repeats: the stored one extended, its runs kept.
  if (spec.repeats > stored.spec.repeats) {
    const more = withRepeats(stored.spec, stored.runs, spec.repeats);
    if (configDiff(more, { spec, runs }).length === 0) return extended(dir, stored, spec.repeats);
  }
  // The same study with fewer repeats: as --resume --repeats says.
  if (spec.repeats < stored.spec.repeats) {
    const asStored = withRepeats(spec, runs, stored.spec.repeats);
    if (configDiff(asStored, { spec: stored.spec, runs: stored.runs }).length === 0) {
      throw new UserError(
        `${dir} holds this study with ${stored.spec.repeats} repeats; it can gain repeats, not lose them (drop --repeats, or choose another --out)`,
        2,
      );
    }
  }
  const before = { spec: stored.spec, runs: stored.runs };
  const differs = configDiff(before, { spec, runs });
  if (differs.length > 0) {
    // The runs follow from the spec: named only when nothing in the spec differs.
    const named = differs.length > 1 ? differs.filter((field) => field !== "runs") : differs;
    const shown = named.slice(0, 5).map((field) => withValues(field, before, { spec, runs }));
    throw new UserError(
      `${dir} holds another study (differs in ${shown.join(", ")}): continue it with --resume ${dir}, or choose another --out`,
      2,
    );
  }
  return { dir, file: stored, addedRepeats: 0 };
}

interface Prepared {
  readonly dir: string;
  readonly file: StudyFile;
  /** Repeats added to a stored study (its study.json is then written again). */
  readonly addedRepeats: number;
}

function extended(dir: string, stored: StudyFile, repeats: number): Prepared {
  const { spec, runs } = withRepeats(stored.spec, stored.runs, repeats);
  return { dir, file: { ...stored, spec, runs }, addedRepeats: repeats - stored.spec.repeats };
}

/**
 * Which runs did not finish and why. Running the command again continues them, but a run that
 * failed the same way on its last attempts (a starting config that does not train, a refused key)
 * will fail again until what its run.log says is fixed: say so rather than only "run it again".
 */
export function failureSummary(failed: readonly FailedRun[]): string {
  const lines = failed.map((f) => {
    const repeated = f.sameInARow > 1 ? `, the same on its last ${f.sameInARow} attempts` : "";
    return `  ${f.id}: ${f.ended}${repeated}${f.reason ? ` — ${f.reason}` : ""}`;
  });
  const stuck = failed.filter((f) => f.sameInARow > 1).map((f) => f.id);
  const advice =
    stuck.length > 0
      ? `Running the same command again continues them, but ${stuck.join(", ")} failed the same way more than once: fix what ${stuck.map((id) => `runs/${id}/run.log`).join(", ")} says first.`
      : "Run the same command again to continue them.";
  return `${failed.length} run(s) did not finish:\n${lines.join("\n")}\n${advice}`;
}

async function study(options: StudyOptions): Promise<number> {
  const { dir, file, addedRepeats } = prepare(options);
  // Fit (and cache) the surrogate once here, instead of in every run process at once.
  if (file.spec.objective.startsWith("surrogate:"))
    surrogateTrainer(file.spec.objective.slice("surrogate:".length));
  mkdirSync(dir, { recursive: true });
  if (!isStudy(dir) || addedRepeats > 0) writeStudyJson(dir, file);
  const log = (line: string) => process.stderr.write(`${line}\n`);
  if (addedRepeats > 0)
    log(
      `${studyTitle(file.spec.name)}: ${addedRepeats} repeat(s) added (now ${file.spec.repeats}): ${addedRepeats * file.spec.groups.length} new runs; the runs so far are kept`,
    );
  log(`${studyTitle(file.spec.name)}: ${file.runs.length} runs in ${dir} (${options.jobs} at a time)`);
  const controller = new AbortController();
  let stoppedBy: StopSignal | null = null;
  // A hang-up (the terminal closed) stops the study cleanly too, like Ctrl-C; its log then goes nowhere.
  const stop = (signal: StopSignal) => {
    if (controller.signal.aborted) return;
    stoppedBy = signal;
    if (signal === "SIGHUP") quietOutput();
    log(`stopping (${signal}): the runs stop and keep their progress; continue with the same command`);
    controller.abort();
  };
  for (const signal of STOP_SIGNAL_NAMES) process.on(signal, stop);
  let summary: Awaited<ReturnType<typeof runStudy>>;
  try {
    summary = await runStudy(dir, file, { jobs: options.jobs, log, signal: controller.signal });
  } finally {
    for (const signal of STOP_SIGNAL_NAMES) process.off(signal, stop);
  }
  const results = loadStudy(dir, options.target !== undefined ? { target: options.target } : {});
  writeFileSync(resultsPath(dir), `${JSON.stringify(results, null, 2)}\n`);
  process.stdout.write(options.json ? `${jsonForTerminal(results)}\n` : formatStudy(results));
  log(`study folder: ${dir} (results.json; each run under runs/)`);
  if (controller.signal.aborted) return signalExit(stoppedBy ?? "SIGINT");
  if (summary.failed.length > 0) {
    log(failureSummary(summary.failed));
    return 1;
  }
  return 0;
}
