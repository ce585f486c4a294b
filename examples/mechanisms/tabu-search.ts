// Tabu search: reject proposals that come back to (or very near) a config tried recently.
// Configs that failed (diverged, out of memory, ...) stay tabu much longer than ones that merely
// did not improve. The host keeps the lists; entries expire by iteration.
import type { Mechanism } from "bilevel/mechanism-api";

interface State {
  /** Iterations a tried config stays tabu. */
  readonly tenure: number;
  /** Iterations a failed config stays tabu. */
  readonly failedTenure: number;
  /** Per-parameter closeness (fraction of the (log) range) that counts as "the same config". */
  readonly tolerance: number;
  rejected: number;
  remembered: number;
}

export default {
  manifest: {
    name: "tabu-search",
    version: 1,
    description:
      "Rejects proposals within tolerance of configs tried in the last iterations; failures stay tabu longer.",
    hooks: ["init", "filter", "observe"],
    capabilities: ["tabu"],
  },

  init() {
    return { tenure: 10, failedTenure: 40, tolerance: 0.05, rejected: 0, remembered: 0 };
  },

  filter(proposal, ctx) {
    const { tolerance } = ctx.state;
    if (ctx.tabu.contains("failed", proposal.config, tolerance)) {
      ctx.state.rejected += 1;
      return { verdict: "reject", reason: "near a config that failed to train" };
    }
    if (ctx.tabu.contains("recent", proposal.config, tolerance)) {
      ctx.state.rejected += 1;
      return {
        verdict: "reject",
        reason: `within ${tolerance} of a config tried in the last ${ctx.state.tenure} iterations`,
      };
    }
    return { verdict: "accept" };
  },

  observe(trial, ctx) {
    if (trial.status === "ok") ctx.tabu.add("recent", trial.config, ctx.state.tenure);
    else ctx.tabu.add("failed", trial.config, ctx.state.failedTenure);
    ctx.state.remembered += 1;
  },
} satisfies Mechanism<State>;
