// The paper's tabu search manager: remembers the moves (the changed parameters and their new
// values) of recent trials and rejects a proposal that repeats one, within per-parameter distance
// thresholds: a ratio for log-scale parameters, one unit for small ints, a fraction of the range
// otherwise. Moves that failed stay tabu much longer. A filter that rejects every retry would make
// the loop skip the iteration, so after two rejections in one iteration it lets the proposal pass.
import type { Mechanism, ParamTolerance } from "bilevel/mechanism-api";

interface State {
  /** Iterations a tried move stays tabu, and a failed one. */
  readonly tenure: number;
  readonly failedTenure: number;
  /** The distance threshold of each parameter. */
  readonly thresholds: { [param: string]: ParamTolerance };
  rejectedAt: { iteration: number; count: number };
  rejected: number;
}

const MAX_REJECTIONS_PER_ITERATION = 2;

export default {
  manifest: {
    name: "paper-tabu-manager",
    version: 1,
    description:
      "Tabu on recent moves with per-parameter thresholds (ratio for log scales) and tenure; failures stay tabu longer.",
    hooks: ["init", "filter", "observe"],
    capabilities: ["tabu"],
  },

  init(ctx) {
    const thresholds: { [param: string]: ParamTolerance } = {};
    for (const p of ctx.params) {
      const span = (p.max ?? 0) - (p.min ?? 0);
      if (p.kind === "choice") thresholds[p.name] = { unit: 0 };
      else if (p.log) thresholds[p.name] = { ratio: 1.15 };
      else if (p.kind === "int" && span <= 32) thresholds[p.name] = { absolute: 1 };
      else thresholds[p.name] = { unit: 0.05 };
    }
    return { tenure: 8, failedTenure: 30, thresholds, rejectedAt: { iteration: -1, count: 0 }, rejected: 0 };
  },

  filter(proposal, ctx) {
    const s = ctx.state;
    const count = s.rejectedAt.iteration === ctx.iteration ? s.rejectedAt.count : 0;
    if (count >= MAX_REJECTIONS_PER_ITERATION) {
      ctx.log(`iteration ${ctx.iteration}: ${count} rejections already, letting the proposal through`);
      return { verdict: "accept" };
    }
    const tolerance = { params: s.thresholds };
    const failed = ctx.tabu.match("failed", proposal.changes, tolerance);
    const recent = failed ?? ctx.tabu.match("moves", proposal.changes, tolerance);
    if (recent === null) return { verdict: "accept" };
    s.rejectedAt = { iteration: ctx.iteration, count: count + 1 };
    s.rejected += 1;
    const why = failed ? "repeats a move that failed to train" : "repeats a recent move";
    return { verdict: "reject", reason: `${why}: ${recent.reason}` };
  },

  observe(trial, ctx) {
    if (trial.changes.length === 0) return;
    if (trial.status === "ok") ctx.tabu.add("moves", trial.changes, ctx.state.tenure, { capacity: 200 });
    else ctx.tabu.add("failed", trial.changes, ctx.state.failedTenure, { capacity: 200 });
  },
} satisfies Mechanism<State>;
