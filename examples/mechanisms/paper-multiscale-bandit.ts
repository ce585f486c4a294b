// The paper's multi-scale bandit: one arm per (parameter, step size), e.g. "MATRIX_LR@0.2". Each
// iteration ε-greedy (ε decaying with every reward) picks an arm and suggests moving the
// incumbent that far along that parameter, in the parameter's current direction, which flips after
// a move that did not help. Optimistic initial values make untried arms look as good as a half
// success, so arms that paid off are reused while the rest are still tried in time.
import type { Mechanism } from "bilevel/mechanism-api";

interface State {
  /** Step sizes, in normalised units of each parameter's (log) range. */
  readonly scales: number[];
  /** An improvement of this much val_bpb earns the full reward of 1. */
  readonly rewardScale: number;
  /** The direction each parameter moves next (+1 up, -1 down). */
  direction: { [param: string]: 1 | -1 };
  pending: { arm: string; param: string; value: number | string; iteration: number } | null;
}

const BANDIT = "param-step";

export default {
  manifest: {
    name: "paper-multiscale-bandit",
    version: 1,
    description:
      "ε-greedy (decaying ε, optimistic init) over (parameter, step size) arms; suggests one move of the incumbent.",
    hooks: ["init", "suggest", "observe"],
    capabilities: ["bandit", "space"],
  },

  init() {
    return { scales: [0.05, 0.2], rewardScale: 0.05, direction: {}, pending: null };
  },

  suggest(ctx) {
    const s = ctx.state;
    const active = ctx.params.filter((p) => !p.frozen).map((p) => p.name);
    const arms = active.flatMap((param) => s.scales.map((scale) => `${param}@${scale}`));
    // Arms can be added at any time: a parameter Level 1.5 unfreezes joins with the optimistic value.
    ctx.bandit.arms(BANDIT, arms, { initial: 0.5 });
    for (let tries = 0; tries < 4; tries++) {
      const arm = ctx.bandit.select(BANDIT, "epsilon-greedy", {
        epsilon: 0.3,
        decay: 0.97,
        minEpsilon: 0.05,
      });
      const [param = "", scale = "0.1"] = arm.split("@");
      if (!active.includes(param)) continue; // frozen since it was declared
      const direction = s.direction[param] ?? 1;
      const value = ctx.space.neighbour(ctx.incumbent.config, param, direction, Number(scale))[param];
      if (value === undefined || value === ctx.incumbent.config[param]) {
        // At a bound: turn around and count the arm as a miss.
        s.direction[param] = direction === 1 ? -1 : 1;
        ctx.bandit.reward(BANDIT, arm, 0);
        continue;
      }
      s.pending = { arm, param, value, iteration: ctx.iteration };
      return { changes: [{ param, value }], rationale: `bandit arm ${arm}, direction ${direction}` };
    }
    s.pending = null;
    return undefined;
  },

  observe(trial, ctx) {
    const p = ctx.state.pending;
    if (p === null || p.iteration !== trial.iteration) return;
    ctx.state.pending = null;
    const ours =
      trial.changes.length === 1 &&
      trial.changes[0]?.param === p.param &&
      trial.changes[0]?.value === p.value;
    if (!ours) return;
    const gain = trial.status === "ok" && trial.delta !== null ? -trial.delta : 0;
    ctx.bandit.reward(BANDIT, p.arm, Math.max(0, Math.min(1, gain / ctx.state.rewardScale)));
    if (gain <= 0) ctx.state.direction[p.param] = (ctx.state.direction[p.param] ?? 1) === 1 ? -1 : 1;
  },
} satisfies Mechanism<State>;
