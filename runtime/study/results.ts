// A study's results as plain data: every run (status, baseline, best, improvement, its curve, LLM
// tokens, time split) and every group (statistics of the improvement, comparisons with A and R,
// trials to reach the target, mean running-best curve with its CI). What `bilevel study` prints
// and what a report renders; recomputed from the run stores each time (nothing cached).
import { median } from "simple-statistics";
import type { TrialStatus } from "../../mechanism-api/index.d.ts";
import { RunStore, type TrialRow } from "../store.ts";
import { type Attempt, type RunState, readAttempts, readStudyJson, runDir, runState } from "./layout.ts";
import type { StudyRunSpec, StudySpec } from "./spec.ts";
import {
  bootstrapMeanCI,
  type Comparison,
  compare,
  type Interval,
  type Summary,
  summarize,
} from "./stats.ts";

export interface CurvePoint {
  readonly trial: number;
  /** 0 for baselines. */
  readonly iteration: number;
  readonly kind: "baseline" | "search";
  readonly seed: number;
  readonly status: TrialStatus;
  readonly valBpb: number | null;
  readonly kept: boolean;
  /** Whether the trial counts for the run's best (search trials and the run seed's baseline). */
  readonly counted: boolean;
  /** Running best val_bpb of the counted trials up to this one (null before any ok one). */
  readonly best: number | null;
}

export interface Tokens {
  readonly exchanges: number;
  /** Sums over the exchanges that reported counts. */
  readonly prompt: number;
  readonly completion: number;
  /** false when some exchange has no token counts (the endpoint did not report them). */
  readonly complete: boolean;
}

export interface TimeSplit {
  /** Seconds of the run's processes (all attempts); null when no attempt was recorded. */
  readonly wall: number | null;
  readonly training: number;
  readonly llm: number;
  /** wall − training − llm: sandbox, mechanisms, store, start-up. */
  readonly overhead: number | null;
}

export interface RunResult {
  readonly id: string;
  readonly group: string;
  readonly repeat: number;
  readonly seed: number;
  readonly dir: string;
  readonly state: RunState;
  readonly iterations: number;
  readonly trials: number;
  /** val_bpb of the run seed's baseline (the mean of the baselines if it failed). */
  readonly baseline: number | null;
  readonly best: number | null;
  /** baseline − best (≥ 0): how much the search improved on the start config. */
  readonly improvement: number | null;
  /** First iteration whose running best is ≤ the study's target (null: never). */
  readonly reachedAt: number | null;
  readonly curve: readonly CurvePoint[];
  readonly tokens: Tokens;
  readonly seconds: TimeSplit;
}

export interface MeanCurvePoint {
  readonly iteration: number;
  readonly n: number;
  readonly mean: number;
  readonly ci: Interval | null;
}

export interface GroupResult {
  readonly name: string;
  readonly description: string;
  readonly runs: readonly string[];
  /** Statistics over the group's finished runs (n = how many). */
  readonly improvement: Summary;
  readonly vsA: Comparison | null;
  readonly vsR: Comparison | null;
  readonly target: { readonly reached: number; readonly n: number; readonly medianIteration: number | null };
  /** Mean over finished runs; tokens null when no run had an LLM exchange with counts (n/a). */
  readonly tokens: { readonly mean: number | null; readonly exchanges: number; readonly complete: boolean };
  /**
   * Means over the finished runs whose wall time is recorded (`runs` of them: a run's process that
   * ended after its study died has no attempt line), all four over the same runs, so that wall =
   * training + LLM + overhead holds for the means too.
   */
  readonly seconds: {
    readonly runs: number;
    readonly wall: number | null;
    readonly training: number | null;
    readonly llm: number | null;
    readonly overhead: number | null;
  };
  readonly meanCurve: readonly MeanCurvePoint[];
}

export interface StudyResults {
  readonly dir: string;
  readonly spec: StudySpec;
  readonly target: {
    readonly value: number | null;
    readonly source: "spec" | "--target" | "median best of all finished runs";
  };
  readonly runs: readonly RunResult[];
  readonly groups: readonly GroupResult[];
}

/** A run's curve, baseline and best, from its trials (`seed`: the run seed). */
export function runCurve(
  trials: readonly TrialRow[],
  seed: number,
): { curve: CurvePoint[]; baseline: number | null; best: number | null } {
  const baselines = trials.filter((t) => t.kind === "baseline" && t.valBpb !== null);
  const same = baselines.find((t) => t.seed === seed);
  const baseline =
    same?.valBpb ??
    (baselines.length ? baselines.reduce((a, t) => a + (t.valBpb as number), 0) / baselines.length : null);
  let best: number | null = null;
  const curve = trials.map((t) => {
    const counted = t.kind === "search" || t.seed === seed;
    if (counted && t.status === "ok" && t.valBpb !== null && (best === null || t.valBpb < best))
      best = t.valBpb;
    return {
      trial: t.id,
      iteration: t.iteration,
      kind: t.kind,
      seed: t.seed,
      status: t.status,
      valBpb: t.valBpb,
      kept: t.kept,
      counted,
      best,
    };
  });
  return { curve, baseline, best };
}

function readRun(dir: string, run: StudyRunSpec, attempts: readonly Attempt[]): Omit<RunResult, "reachedAt"> {
  const folder = runDir(dir, run.id);
  const state = runState(folder);
  const wall = attempts
    .filter((a) => a.run === run.id)
    .reduce<number | null>((s, a) => (s ?? 0) + a.seconds, null);
  const empty = { curve: [], baseline: null, best: null };
  let trials: TrialRow[] = [];
  let iterations = 0;
  let exchanges: ReturnType<RunStore["exchanges"]> = [];
  if (state !== "not started" && state !== "empty") {
    const store = RunStore.open(folder, { readOnly: true });
    try {
      trials = store.trials();
      iterations = store.completedIterations();
      exchanges = store.exchanges();
    } finally {
      store.close();
    }
  }
  const { curve, baseline, best } = trials.length ? runCurve(trials, run.seed) : empty;
  const withCounts = exchanges.filter((e) => e.promptTokens !== null || e.completionTokens !== null);
  const training = trials.reduce((s, t) => s + t.durationMs, 0) / 1000;
  const llm = exchanges.reduce((s, e) => s + e.latencyMs, 0) / 1000;
  return {
    id: run.id,
    group: run.group,
    repeat: run.repeat,
    seed: run.seed,
    dir: folder,
    state,
    iterations,
    trials: trials.length,
    baseline,
    best,
    improvement: baseline !== null && best !== null ? baseline - best : null,
    curve,
    tokens: {
      exchanges: exchanges.length,
      prompt: withCounts.reduce((s, e) => s + (e.promptTokens ?? 0), 0),
      completion: withCounts.reduce((s, e) => s + (e.completionTokens ?? 0), 0),
      complete: withCounts.length === exchanges.length,
    },
    seconds: { wall, training, llm, overhead: wall === null ? null : wall - training - llm },
  };
}

/** First iteration at which the run's running best is ≤ target. */
function reachedAt(curve: readonly CurvePoint[], target: number | null): number | null {
  if (target === null) return null;
  return curve.find((p) => p.counted && p.best !== null && p.best <= target)?.iteration ?? null;
}

/** Read a study folder: its spec, every run's store, the statistics. `target` overrides the spec's. */
export function loadStudy(dir: string, options: { target?: number } = {}): StudyResults {
  const { spec, runs } = readStudyJson(dir);
  const attempts = readAttempts(dir);
  const partial = runs.map((r) => readRun(dir, r, attempts));
  const finishedBest = partial.flatMap((r) => (r.state === "finished" && r.best !== null ? [r.best] : []));
  const target =
    options.target !== undefined
      ? { value: options.target, source: "--target" as const }
      : spec.target !== null
        ? { value: spec.target, source: "spec" as const }
        : {
            value: finishedBest.length ? median(finishedBest) : null,
            source: "median best of all finished runs" as const,
          };
  const results: RunResult[] = partial.map((r) => ({ ...r, reachedAt: reachedAt(r.curve, target.value) }));
  const groups = spec.groups.map((g) => groupResult(spec, g.name, g.description, results));
  return { dir, spec, target, runs: results, groups };
}

function finishedOf(runs: readonly RunResult[], group: string): RunResult[] {
  return runs.filter((r) => r.group === group && r.state === "finished");
}

function improvements(runs: readonly RunResult[]): number[] {
  return runs.flatMap((r) => (r.improvement === null ? [] : [r.improvement]));
}

function meanOf(values: readonly (number | null)[]): number | null {
  const v = values.filter((x): x is number => x !== null);
  return v.length ? v.reduce((a, b) => a + b, 0) / v.length : null;
}

/** The group's mean time split over its runs with a recorded wall time (GroupResult.seconds). */
function timeSplit(runs: readonly RunResult[]): GroupResult["seconds"] {
  const timed = runs.filter((r) => r.seconds.wall !== null);
  return {
    runs: timed.length,
    wall: meanOf(timed.map((r) => r.seconds.wall)),
    training: meanOf(timed.map((r) => r.seconds.training)),
    llm: meanOf(timed.map((r) => r.seconds.llm)),
    overhead: meanOf(timed.map((r) => r.seconds.overhead)),
  };
}

function groupResult(
  spec: StudySpec,
  name: string,
  description: string,
  all: readonly RunResult[],
): GroupResult {
  const runs = finishedOf(all, name);
  const x = improvements(runs);
  const seed = `${spec.seed}:${name}`;
  const against = (ref: string) =>
    ref !== name && spec.groups.some((g) => g.name === ref)
      ? compare(ref, x, improvements(finishedOf(all, ref)), `${seed}:${ref}`)
      : null;
  const reached = runs.flatMap((r) => (r.reachedAt === null ? [] : [r.reachedAt]));
  const counted = runs.filter((r) => r.tokens.exchanges > 0);
  return {
    name,
    description,
    runs: all.filter((r) => r.group === name).map((r) => r.id),
    improvement: summarize(x, seed),
    vsA: against("A"),
    vsR: against("R"),
    target: {
      reached: reached.length,
      n: runs.length,
      medianIteration: reached.length ? median(reached) : null,
    },
    tokens: {
      mean: counted.length ? meanOf(runs.map((r) => r.tokens.prompt + r.tokens.completion)) : null,
      exchanges: runs.reduce((s, r) => s + r.tokens.exchanges, 0),
      complete: runs.every((r) => r.tokens.complete),
    },
    seconds: timeSplit(runs),
    meanCurve: meanCurve(runs, spec.iterations, seed),
  };
}

/** Per iteration, the mean over runs of the running best (carried forward) with a bootstrap CI. */
function meanCurve(runs: readonly RunResult[], iterations: number, seed: string): MeanCurvePoint[] {
  const points: MeanCurvePoint[] = [];
  for (let it = 0; it <= iterations; it++) {
    const values = runs.flatMap((r) => {
      const last = r.curve.filter((p) => p.counted && p.iteration <= it && p.best !== null).at(-1);
      return last?.best == null ? [] : [last.best];
    });
    if (values.length === 0) continue;
    const mean = values.reduce((a, b) => a + b, 0) / values.length;
    points.push({
      iteration: it,
      n: values.length,
      mean,
      ci: bootstrapMeanCI(values, `${seed}:curve:${it}`, 2000),
    });
  }
  return points;
}
