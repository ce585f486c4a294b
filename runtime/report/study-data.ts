// The shape of a study's page (`bilevel report` on a folder holding study.json). The study module
// (`bilevel study`) owns the statistics and provides a loader returning StudyData; this file defines
// the contract, the helpers a loader may use (running minimum of a run), and a plain fallback loader
// for a study.json that lists its groups and runs (see loadStudyData), which computes descriptive
// statistics only and leaves the tests against A and R to the study module.
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { UserError } from "../errors.ts";
import { RunStore, type TrialRow } from "../store.ts";
import { runHistory } from "./history.ts";
import { median, timeSplit } from "./run-data.ts";

/** The marker of a study folder. */
export const STUDY_FILE = "study.json";

export function isStudyFolder(dir: string): boolean {
  return existsSync(path.join(dir, STUDY_FILE));
}

/** A sample's description: n stated, mean ± sd, median, and a 95% CI of the mean (its method named). */
export interface Summary {
  readonly n: number;
  readonly mean: number;
  readonly sd: number | null;
  readonly median: number;
  readonly ciLow: number | null;
  readonly ciHigh: number | null;
  /** e.g. "bootstrap 95%", "t 95%". */
  readonly ciMethod: string;
}

/** One group against another (A or R): the difference of mean improvements with its CI, and a test. */
export interface StudyComparison {
  readonly against: string;
  readonly nSelf: number;
  readonly nOther: number;
  /** mean improvement of this group − mean improvement of `against` (positive: this group did better). */
  readonly difference: number;
  readonly ciLow: number;
  readonly ciHigh: number;
  /** e.g. "Mann–Whitney U", "permutation (10000)". */
  readonly test: string;
  readonly p: number | null;
}

export interface StudyGroup {
  /** A, B, C, D, R or a custom group's id. */
  readonly id: string;
  /** What the group is, for people: "Level 1 + 1.5 + 2". */
  readonly label: string;
  /** The improvement (baseline mean − best val_bpb) over the group's finished runs; null before any finished. */
  readonly improvement: Summary | null;
  readonly comparisons: readonly StudyComparison[];
  /** Trials until a run's best reached the study's target; `reached` of `n` runs got there. */
  readonly trialsToTarget: {
    readonly median: number | null;
    readonly reached: number;
    readonly n: number;
  } | null;
  /** LLM tokens per run (mean); null when no run recorded token counts. */
  readonly llmTokensPerRun: number | null;
  /** Wall time per run (mean), split as on a run's page. */
  readonly time: { readonly trainingMs: number; readonly llmMs: number; readonly overheadMs: number } | null;
}

/** A point of a run's running minimum: the best val_bpb once `iteration` was done (0: the baselines). */
export interface CurvePoint {
  readonly iteration: number;
  readonly best: number;
}

export interface StudyRun {
  readonly group: string;
  readonly repeat: number;
  readonly seed: number | null;
  /** The run folder (absolute, or relative to the study folder). */
  readonly dir: string;
  readonly status: string;
  readonly baseline: number | null;
  readonly best: number | null;
  readonly improvement: number | null;
  readonly trials: number;
  readonly curve: readonly CurvePoint[];
}

export interface StudyData {
  readonly name: string;
  /** The study folder (absolute). */
  readonly dir: string;
  readonly status: string;
  /** "trainer", "surrogate:FILE", ...; null when not known. */
  readonly objective: string | null;
  /** Iterations planned per run; null when not known. */
  readonly iterations: number | null;
  /** The val_bpb that "trials to reach a target" counts to; null when none. */
  readonly target: number | null;
  readonly groups: readonly StudyGroup[];
  readonly runs: readonly StudyRun[];
  /** Anything the study wants said above the table (settings, caveats). */
  readonly notes: readonly string[];
}

/** A run's running minimum, one point per iteration that had a trial (0 = the baselines). */
export function runningMinimum(
  trials: readonly Pick<TrialRow, "iteration" | "status" | "valBpb">[],
): CurvePoint[] {
  const out: CurvePoint[] = [];
  let best: number | null = null;
  for (const t of trials) {
    if (t.status === "ok" && t.valBpb !== null && (best === null || t.valBpb < best)) best = t.valBpb;
    if (best === null) continue;
    const last = out.at(-1);
    if (last && last.iteration === t.iteration) out[out.length - 1] = { iteration: t.iteration, best };
    else out.push({ iteration: t.iteration, best });
  }
  return out;
}

/** Two-sided 95% t quantiles for df 1..30; beyond, 1.96 + 2.4/df (within 0.003 of the exact value). */
const T95 = [
  12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.16, 2.145, 2.131,
  2.12, 2.11, 2.101, 2.093, 2.086, 2.08, 2.074, 2.069, 2.064, 2.06, 2.056, 2.052, 2.048, 2.045, 2.042,
];
export function t95(df: number): number {
  return df <= 30 ? (T95[Math.max(1, df) - 1] as number) : 1.96 + 2.4 / df;
}

/** Mean, sd, median and the t 95% CI of the mean; null for an empty sample. */
export function summarize(values: readonly number[]): Summary | null {
  const n = values.length;
  if (n === 0) return null;
  const mean = values.reduce((s, x) => s + x, 0) / n;
  const sd = n > 1 ? Math.sqrt(values.reduce((s, x) => s + (x - mean) ** 2, 0) / (n - 1)) : null;
  const half = sd === null ? null : (t95(n - 1) * sd) / Math.sqrt(n);
  return {
    n,
    mean,
    sd,
    median: median(values) as number,
    ciLow: half === null ? null : mean - half,
    ciHigh: half === null ? null : mean + half,
    ciMethod: "t 95%",
  };
}

interface StudyFile {
  name?: string;
  status?: string;
  objective?: string;
  iterations?: number;
  target?: number;
  groups: { id: string; label?: string }[];
  runs: { group: string; repeat?: number; seed?: number; dir: string }[];
}

function readStudyFile(dir: string): StudyFile {
  const file = path.join(dir, STUDY_FILE);
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, "utf8"));
  } catch (error) {
    throw new UserError(`${file}: not readable JSON (${(error as Error).message})`, 2);
  }
  const s = parsed as Partial<StudyFile> | null;
  const ok =
    s !== null &&
    Array.isArray(s.groups) &&
    Array.isArray(s.runs) &&
    s.groups.every((g) => typeof g?.id === "string") &&
    s.runs.every((r) => typeof r?.group === "string" && typeof r?.dir === "string");
  if (!ok)
    throw new UserError(
      `${file}: this report reads {"groups": [{"id", "label"}], "runs": [{"group", "repeat", "seed", "dir"}]}`,
      2,
    );
  return s as StudyFile;
}

/**
 * A study's data from its folder. The fallback reads each listed run's store: curves, improvements,
 * tokens, time; statistics are descriptive (t intervals); comparisons are left to the study module.
 */
export function loadStudyData(dir: string): StudyData {
  const root = path.resolve(dir);
  const file = readStudyFile(root);
  const runs = file.runs.map((r, i) => loadStudyRun(root, r, i + 1));
  const groups = file.groups.map((g) =>
    groupOf(
      g,
      runs.map((r) => r.run).filter((r) => r.group === g.id),
      runs,
      file.target ?? null,
    ),
  );
  const finished = runs.every((r) => r.run.status === "finished");
  return {
    name: file.name ?? path.basename(root),
    dir: root,
    status: file.status ?? (finished ? "finished" : "in progress"),
    objective: file.objective ?? null,
    iterations: file.iterations ?? null,
    target: file.target ?? null,
    groups,
    runs: runs.map((r) => r.run),
    notes: [
      "Tests against A and R are computed by `bilevel study`; this folder's study.json did not carry them.",
    ],
  };
}

interface LoadedRun {
  readonly run: StudyRun;
  readonly tokens: number | null;
  readonly time: ReturnType<typeof timeSplit> | null;
  readonly trialsToTarget: (target: number) => number | null;
}

function loadStudyRun(root: string, r: StudyFile["runs"][number], index: number): LoadedRun {
  const dir = path.resolve(root, r.dir);
  const base = { group: r.group, repeat: r.repeat ?? index, seed: r.seed ?? null, dir: r.dir };
  if (!RunStore.exists(dir)) {
    const run = {
      ...base,
      status: "not started",
      baseline: null,
      best: null,
      improvement: null,
      trials: 0,
      curve: [],
    };
    return { run, tokens: null, time: null, trialsToTarget: () => null };
  }
  const store = RunStore.open(dir, { readOnly: true });
  try {
    const trials = store.trials();
    const exchanges = store.exchanges();
    const noise = store.getMeta("noise");
    const baseline = noise ? (JSON.parse(noise) as { mean: number }).mean : null;
    const curve = runningMinimum(trials);
    const best = curve.at(-1)?.best ?? null;
    const known = exchanges.filter((e) => e.promptTokens !== null || e.completionTokens !== null);
    return {
      run: {
        ...base,
        status: store.getMeta("status") ?? "unknown",
        baseline,
        best,
        improvement: baseline !== null && best !== null ? baseline - best : null,
        trials: trials.length,
        curve,
      },
      tokens:
        known.length === 0
          ? null
          : known.reduce((s, e) => s + (e.promptTokens ?? 0) + (e.completionTokens ?? 0), 0),
      time: timeSplit(runHistory(store, false), trials, exchanges),
      trialsToTarget: (target) => {
        const at = trials.findIndex((t) => t.status === "ok" && t.valBpb !== null && t.valBpb <= target);
        return at < 0 ? null : at + 1;
      },
    };
  } finally {
    store.close();
  }
}

function groupOf(
  g: StudyFile["groups"][number],
  members: readonly StudyRun[],
  loaded: readonly LoadedRun[],
  target: number | null,
): StudyGroup {
  const mine = loaded.filter((l) => l.run.group === g.id);
  const finished = members.filter((r) => r.status === "finished" && r.improvement !== null);
  const tokens = mine.map((l) => l.tokens).filter((t): t is number => t !== null);
  const times = mine.map((l) => l.time).filter((t): t is NonNullable<typeof t> => t !== null);
  const meanOf = (xs: readonly number[]) => xs.reduce((s, x) => s + x, 0) / Math.max(1, xs.length);
  const reachedAt =
    target === null ? [] : mine.map((l) => l.trialsToTarget(target)).filter((t): t is number => t !== null);
  return {
    id: g.id,
    label: g.label ?? g.id,
    improvement: summarize(finished.map((r) => r.improvement as number)),
    comparisons: [],
    trialsToTarget:
      target === null ? null : { median: median(reachedAt), reached: reachedAt.length, n: mine.length },
    llmTokensPerRun: tokens.length === 0 ? null : meanOf(tokens),
    time:
      times.length === 0
        ? null
        : {
            trainingMs: meanOf(times.map((t) => t.trainingMs)),
            llmMs: meanOf(times.map((t) => t.llmMs)),
            overheadMs: meanOf(times.map((t) => t.overheadMs)),
          },
  };
}
