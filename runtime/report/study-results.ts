// The page of a folder made by `bilevel study`: its results (runtime/study/results.ts, what the
// command prints and writes to results.json) as the page's data, so the page says what the tables
// say — the same statistics, comparisons and verdicts, recomputed from the run stores.
import path from "node:path";
import { readStudyJson } from "../study/layout.ts";
import { loadStudy, type RunResult, type StudyResults } from "../study/results.ts";
import { DEFAULT_STUDY_NAME } from "../study/spec.ts";
import type { Comparison, Summary as StudySummary } from "../study/stats.ts";
import type { CurvePoint, StudyComparison, StudyData, StudyGroup, StudyRun, Summary } from "./study-data.ts";

/** Whether `dir`'s study.json was written by `bilevel study` (else another tool's, read by the fallback). */
export function isBilevelStudy(dir: string): boolean {
  try {
    readStudyJson(dir); // refuses a study.json of another format, or none
    return true;
  } catch {
    return false; // the fallback reader says why
  }
}

/** The page data of a `bilevel study` folder. */
export function studyResultsData(dir: string): StudyData {
  return fromResults(loadStudy(dir));
}

function summary(s: StudySummary): Summary | null {
  if (s.n === 0 || s.mean === null || s.median === null) return null;
  const [ciLow, ciHigh] = s.ci ?? [null, null];
  return { n: s.n, mean: s.mean, sd: s.sd, median: s.median, ciLow, ciHigh, ciMethod: "bootstrap 95%" };
}

function comparison(c: Comparison | null): StudyComparison[] {
  if (c === null || c.diff === null || c.ci === null) return [];
  const test = `permutation test (${c.exact ? "exact" : "Monte Carlo"}): ${c.verdict}`;
  return [
    {
      against: c.against,
      nSelf: c.n,
      nOther: c.nAgainst,
      difference: c.diff,
      ciLow: c.ci[0],
      ciHigh: c.ci[1],
      test,
      p: c.p,
    },
  ];
}

/** A run's running best once each iteration was done (0: its baselines). */
function perIteration(r: RunResult): CurvePoint[] {
  const best = new Map<number, number>();
  for (const p of r.curve) if (p.best !== null) best.set(p.iteration, p.best);
  return [...best].map(([iteration, value]) => ({ iteration, best: value }));
}

function run(r: RunResult): StudyRun {
  return {
    group: r.group,
    repeat: r.repeat,
    seed: r.seed,
    dir: r.dir,
    status: r.state,
    baseline: r.baseline,
    best: r.best,
    improvement: r.improvement,
    trials: r.trials,
    curve: perIteration(r),
  };
}

function fromResults(results: StudyResults): StudyData {
  const { spec, target } = results;
  const groups: StudyGroup[] = results.groups.map((g) => ({
    id: g.name,
    label: g.description,
    improvement: summary(g.improvement),
    comparisons: [...comparison(g.vsA), ...comparison(g.vsR)],
    trialsToTarget:
      target.value === null
        ? null
        : { median: g.target.medianIteration, reached: g.target.reached, n: g.target.n },
    llmTokensPerRun: g.tokens.mean,
    time:
      g.seconds.training === null
        ? null
        : {
            trainingMs: g.seconds.training * 1000,
            llmMs: (g.seconds.llm ?? 0) * 1000,
            overheadMs: (g.seconds.overhead ?? 0) * 1000,
          },
  }));
  const finished = results.runs.filter((r) => r.state === "finished").length;
  const total = results.runs.length;
  const notes = [
    `Improvement = the run seed's baseline − the best val_bpb of its trials. Target ${target.value === null ? "none" : target.value.toFixed(4)} (${target.source}); "trials to target" counts iterations.`,
  ];
  if (finished < total)
    notes.push(
      `${total - finished} of ${total} runs are not finished: the statistics cover the finished ones, so groups may not have the same seeds.`,
    );
  return {
    // An unnamed study is shown by its folder's name, as other study folders are (not "Study study").
    name: spec.name === DEFAULT_STUDY_NAME ? path.basename(results.dir) : spec.name,
    dir: results.dir,
    status: finished === total ? "finished" : `${finished} of ${total} runs finished`,
    objective: spec.objective,
    iterations: spec.iterations,
    target: target.value,
    groups,
    runs: results.runs.map(run),
    notes,
  };
}
