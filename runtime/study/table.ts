// The study's statistics as text tables for the terminal (what `bilevel study` prints at the end).
import { safeText } from "../terminal-text.ts";
import type { GroupResult, StudyResults } from "./results.ts";
import { studyTitle } from "./spec.ts";
import { ALPHA, type Comparison, type Interval } from "./stats.ts";

const f = (v: number | null, digits = 4) => (v === null ? "n/a" : v.toFixed(digits));
const ci = (c: Interval | null) => (c === null ? "n/a (n < 2)" : `[${f(c[0])}, ${f(c[1])}]`);
const p = (v: number | null) => (v === null ? "p n/a" : v < 0.001 ? "p<0.001" : `p=${v.toFixed(3)}`);

/** Columns padded to their widest cell. */
export function formatTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, k) => Math.max(h.length, ...rows.map((r) => (r[k] ?? "").length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, k) => c.padEnd(widths[k] ?? 0))
      .join("  ")
      .trimEnd();
  return [line(header), line(widths.map((w) => "-".repeat(w))), ...rows.map(line)].join("\n");
}

/** A comparison's cell: Δ, its CI, p (~: Monte Carlo), n, the verdict. */
export function comparison(c: Comparison | null): string {
  if (c === null) return "—";
  return `${f(c.diff)} ${ci(c.ci)} ${p(c.p)}${c.exact || c.p === null ? "" : "~"} n=${c.n}/${c.nAgainst}: ${c.verdict}`;
}

/** Whether the group's time split covers some of its finished runs but not all (the wall column says n). */
function partlyTimed(g: GroupResult): boolean {
  return g.seconds.wall !== null && g.seconds.runs < g.target.n;
}

function seconds(v: number | null): string {
  return v === null ? "n/a" : v.toFixed(1);
}

function tokens(g: GroupResult): string {
  if (g.tokens.exchanges === 0) return "0 (no LLM calls)";
  if (g.tokens.mean === null) return "n/a (not reported)";
  return `${Math.round(g.tokens.mean)}${g.tokens.complete ? "" : " (partial)"}`;
}

/** The three tables: improvement statistics, comparisons with A and R, target/tokens/time. */
export function formatStudy(results: StudyResults): string {
  const { spec } = results;
  const groups = results.groups;
  const head = [
    `${studyTitle(spec.name)}: ${groups.length} groups × ${spec.repeats} repeats × ${spec.iterations} iterations; objective ${spec.objective}`,
    `improvement = baseline val_bpb − best val_bpb per run (higher is better); statistics over finished runs (n)`,
  ];
  const stats = formatTable(
    ["group", "n", "mean ± sd", "median", "95% CI (bootstrap)", "what"],
    groups.map((g) => {
      const s = g.improvement;
      const sd = s.sd === null ? "" : ` ± ${f(s.sd)}`;
      return [
        g.name,
        String(s.n),
        `${f(s.mean)}${sd}`,
        f(s.median),
        ci(s.ci),
        safeText(g.description, { maxLength: 80 }),
      ];
    }),
  );
  // A column per reference group the study ran (A, R) beside another; none: no comparison table.
  const refs = (["vsA", "vsR"] as const).filter(
    (key) => groups.length > 1 && groups.some((g) => g.name === key.slice(2)),
  );
  const tests = formatTable(
    ["group", ...refs.map((key) => `vs ${key.slice(2)}: Δ mean [95% CI] p n`)],
    groups.map((g) => [g.name, ...refs.map((key) => comparison(g[key]))]),
  );
  const target =
    results.target.value === null ? "n/a" : `${f(results.target.value)} (${results.target.source})`;
  const costs = formatTable(
    [
      "group",
      "reached target",
      "median iteration",
      "LLM tokens/run",
      "wall s/run",
      "training",
      "LLM",
      "overhead",
    ],
    groups.map((g) => [
      g.name,
      `${g.target.reached}/${g.target.n}`,
      g.target.medianIteration === null ? "—" : String(g.target.medianIteration),
      tokens(g),
      partlyTimed(g) ? `${seconds(g.seconds.wall)} (n=${g.seconds.runs})` : seconds(g.seconds.wall),
      seconds(g.seconds.training),
      seconds(g.seconds.llm),
      seconds(g.seconds.overhead),
    ]),
  );
  const notes = [
    `Δ = mean improvement of the group − that of A (or R); p: two-sided permutation test of the difference of means (~: Monte Carlo, else exact).`,
    `A difference is called better/worse only when its 95% CI excludes 0 and p < ${ALPHA}; otherwise "no detectable difference" ("too few runs": fewer than 2 finished on a side).`,
    `target val_bpb: ${target}.`,
  ];
  if (groups.some(partlyTimed))
    notes.push(
      "wall s/run (n=…): over the finished runs whose wall time is recorded (attempts.jsonl); training, LLM and overhead over the same runs.",
    );
  const unfinished = results.runs.filter((r) => r.state !== "finished");
  if (unfinished.length > 0) {
    const states = [...new Set(unfinished.map((r) => r.state))];
    const byState = states.map(
      (state) =>
        `${state}: ${unfinished
          .filter((r) => r.state === state)
          .map((r) => r.id)
          .join(", ")}`,
    );
    notes.unshift(
      `NOT FINAL: ${unfinished.length} of ${results.runs.length} runs are not finished (${byState.join("; ")}); the statistics cover the finished runs only, so the groups may not share their seeds. Run the same command again to continue.`,
    );
  }
  const tables = refs.length > 0 ? [stats, "", tests, "", costs] : [stats, "", costs];
  return [...head, "", ...tables, "", ...notes, ""].join("\n");
}
