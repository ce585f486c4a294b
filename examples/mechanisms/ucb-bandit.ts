// UCB1 bandit over (parameter, direction) moves. Each iteration it picks an arm such as
// "MATRIX_LR:+" and suggests moving the incumbent one neighbour step that way; when the trial is
// scored, the arm is rewarded by the improvement it brought. Moves that help keep being chosen;
// the UCB bonus keeps trying the others now and then.
import type { Mechanism } from "bilevel/mechanism-api";

interface State {
  /** Neighbour step, as a fraction of the (log) range. */
  readonly step: number;
  /** An improvement of this much val_bpb earns the full reward of 1. */
  readonly rewardScale: number;
  /** The move suggested this iteration, waiting for its trial. */
  pending: { arm: string; param: string; value: number | string; iteration: number } | null;
  suggested: number;
  rewarded: number;
}

const BANDIT = "moves";

export default {
  manifest: {
    name: "ucb-bandit",
    version: 1,
    description:
      "UCB1 over (parameter, direction) arms: suggests one neighbour step of the incumbent, rewards by improvement.",
    hooks: ["init", "suggest", "observe"],
    capabilities: ["bandit", "space"],
  },

  init() {
    return { step: 0.12, rewardScale: 0.05, pending: null, suggested: 0, rewarded: 0 };
  },

  suggest(ctx) {
    const arms = ctx.params.filter((p) => !p.frozen).flatMap((p) => [`${p.name}:+`, `${p.name}:-`]);
    ctx.bandit.arms(BANDIT, arms);
    // A move that cannot change anything (the parameter is at its bound) earns 0 and we pick again.
    for (let tries = 0; tries < 4; tries++) {
      const arm = ctx.bandit.select(BANDIT, "ucb1");
      const param = arm.slice(0, -2);
      const direction = arm.endsWith("+") ? 1 : -1;
      const current = ctx.incumbent.config[param];
      const moved = ctx.space.neighbour(ctx.incumbent.config, param, direction, ctx.state.step)[param];
      if (moved === undefined || moved === current) {
        ctx.bandit.reward(BANDIT, arm, 0);
        continue;
      }
      ctx.state.pending = { arm, param, value: moved, iteration: ctx.iteration };
      ctx.state.suggested += 1;
      return {
        changes: [{ param, value: moved }],
        rationale: `UCB1 picked ${arm} (step ${ctx.state.step} of the range)`,
      };
    }
    ctx.state.pending = null;
    return undefined;
  },

  observe(trial, ctx) {
    const pending = ctx.state.pending;
    if (pending === null || pending.iteration !== trial.iteration) return;
    ctx.state.pending = null;
    // Reward only when the trial is the move we suggested (a filter may have changed it).
    const ours =
      trial.changes.length === 1 &&
      trial.changes[0]?.param === pending.param &&
      trial.changes[0]?.value === pending.value;
    if (!ours) return;
    const gain = trial.status === "ok" && trial.delta !== null ? -trial.delta : 0;
    ctx.bandit.reward(BANDIT, pending.arm, Math.max(0, Math.min(1, gain / ctx.state.rewardScale)));
    ctx.state.rewarded += 1;
  },
} satisfies Mechanism<State>;
