// What a Level 2 research session sees of the run: a compact, bounded summary of the search
// so far (not the raw store), so prompts stay small and the session is testable from data.
import type { Change, Config, ParamSpec, TrialStatus } from "../../mechanism-api/index.d.ts";
import { briefLines } from "../level1/proposer.ts";
import { type ParamStats, paramStats } from "../level15/strategy.ts";
import type { TrialRow } from "../store.ts";
import { formatFacts, type RunFacts } from "./facts.ts";

export interface ResearchTrial {
  readonly iteration: number;
  readonly changes: readonly Change[];
  readonly status: TrialStatus;
  readonly valBpb: number | null;
  /** vs. the incumbent at the time; negative = better. */
  readonly delta: number | null;
  readonly kept: boolean;
}

export interface ResearchTrace {
  readonly iteration: number;
  readonly params: readonly ParamSpec[];
  readonly incumbent: { readonly config: Config; readonly valBpb: number | null };
  readonly best: { readonly config: Config; readonly valBpb: number } | null;
  /** Search trials so far (baselines excluded), and how many were kept. */
  readonly totalTrials: number;
  readonly keptTrials: number;
  /** The most recent search trials, oldest first. */
  readonly recent: readonly ResearchTrial[];
  readonly paramStats: readonly ParamStats[];
  /** The run's rules with its numbers: budget, acceptance and noise, limits, judgement. */
  readonly facts: RunFacts;
  /** Free notes from the loop (filter rejections, Level 1.5 changes, crash lessons), newest last. */
  readonly notes: readonly string[];
  /** The user's research brief (program.md), if the run has one. */
  readonly brief?: string | null;
}

/** Build the trace from the loop's trial rows. */
export function researchTraceFrom(input: {
  readonly iteration: number;
  readonly params: readonly ParamSpec[];
  readonly incumbent: ResearchTrace["incumbent"];
  readonly best: ResearchTrace["best"];
  readonly trials: readonly TrialRow[];
  readonly window?: number;
  readonly facts: RunFacts;
  readonly notes?: readonly string[];
  readonly brief?: string | null;
}): ResearchTrace {
  const search = input.trials.filter((t) => t.kind === "search");
  const window = Math.max(1, input.window ?? 20);
  return {
    iteration: input.iteration,
    params: input.params,
    incumbent: input.incumbent,
    best: input.best,
    totalTrials: search.length,
    keptTrials: search.filter((t) => t.kept).length,
    recent: search.slice(-window).map((t) => ({
      iteration: t.iteration,
      changes: t.changes,
      status: t.status,
      valBpb: t.valBpb,
      delta: t.delta,
      kept: t.kept,
    })),
    paramStats: paramStats(input.params, input.trials),
    facts: input.facts,
    notes: (input.notes ?? []).slice(-10),
    ...(input.brief ? { brief: input.brief } : {}),
  };
}

function num(value: number | string | undefined): string {
  if (value === undefined) return "?";
  if (typeof value === "string") return value;
  return Number.isInteger(value) ? String(value) : Number(value.toPrecision(4)).toString();
}

function describeParam(p: ParamSpec): string {
  const range =
    p.kind === "choice"
      ? `choice of ${JSON.stringify(p.choices ?? [])}`
      : `${p.kind} [${num(p.min)}, ${num(p.max)}]${p.log ? " log" : ""}`;
  const rules = [
    p.powerOfTwo ? "powers of two" : "",
    p.multipleOf !== undefined ? `multiples of ${p.multipleOf}` : "",
    ...(p.constraints ?? []).map((c) => `constraint: ${c}`),
  ].filter((r) => r !== "");
  const frozen = p.frozen ? " FROZEN by Level 1.5 (changes to it are refused)" : "";
  return `- ${p.name}: ${range}, default ${num(p.default)}${rules.length > 0 ? `; ${rules.join("; ")}` : ""}${frozen}`;
}

/**
 * "PARAM=old→new", or "PARAM=new" for a trial recorded without the value it replaced; exact values
 * (rounded ones could show a real change as "0.05502→0.05502").
 */
function describeChange(c: Change): string {
  return c.previous === undefined ? `${c.param}=${c.value}` : `${c.param}=${c.previous}→${c.value}`;
}

function describeTrial(t: ResearchTrial): string {
  const changes = t.changes.length > 0 ? t.changes.map(describeChange).join(", ") : "no change";
  const score = t.valBpb === null ? t.status : t.valBpb.toFixed(4);
  const delta = t.delta === null ? "" : ` (Δ ${t.delta >= 0 ? "+" : ""}${t.delta.toFixed(4)})`;
  return `#${t.iteration} ${changes} -> ${score}${delta} ${t.kept ? "KEPT" : "discarded"}`;
}

/**
 * What every round of a session restates: the search space (ranges, log scales, choices, step
 * rules, constraints, frozen parameters) and the run's facts.
 */
export function formatContract(trace: ResearchTrace): string {
  return [
    "Search space (ctx.params; values outside a range or breaking a rule are refused):",
    ...(trace.params.length > 0 ? trace.params.map(describeParam) : ["(no parameters)"]),
    formatFacts(trace.facts),
  ].join("\n");
}

/** The trace as compact prompt text. */
export function formatTrace(trace: ResearchTrace): string {
  const bpb = (v: number | null | undefined) => (v === null || v === undefined ? "unknown" : v.toFixed(4));
  return [
    ...briefLines(trace.brief),
    `Iteration ${trace.iteration}: ${trace.totalTrials} search trials, ${trace.keptTrials} kept.`,
    `Incumbent val_bpb ${bpb(trace.incumbent.valBpb)}; best val_bpb ${bpb(trace.best?.valBpb)}.`,
    `Incumbent config: ${JSON.stringify(trace.incumbent.config)}`,
    formatContract(trace),
    "Per-parameter statistics over all search trials (tried, kept, failed, mean Δ val_bpb):",
    ...trace.paramStats.map(
      (s) =>
        `- ${s.param}: ${s.tried}, ${s.kept}, ${s.failed}, ${s.meanDelta === null ? "n/a" : s.meanDelta.toFixed(4)}`,
    ),
    "Recent trials, oldest first (#iteration changes -> val_bpb (Δ vs. the incumbent then) KEPT/discarded):",
    ...(trace.recent.length > 0 ? trace.recent.map(describeTrial) : ["(none yet)"]),
    ...(trace.notes.length > 0 ? ["Notes:", ...trace.notes.map((n) => `- ${n}`)] : []),
  ]
    .filter((line) => line !== "")
    .join("\n");
}
