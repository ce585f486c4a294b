// Stagnation-triggered restart: after `patience` scored iterations without a kept improvement,
// suggest a restart move: several parameters of the BEST config perturbed at once, a larger jump
// than the proposer's local steps. Restarts are recorded in the state. While the search stalls it
// also tells the proposer so (guide), before the restart fires.
import type { Change, Mechanism } from "bilevel/mechanism-api";

interface State {
  readonly patience: number;
  /** Parameters perturbed in one restart. */
  readonly width: number;
  /** Step of each perturbation, as a fraction of the (log) range. */
  readonly step: number;
  sinceImprovement: number;
  restarts: { iteration: number; changes: Change[]; fromBest: number }[];
}

export default {
  manifest: {
    name: "stagnation-restart",
    version: 1,
    description:
      "After N iterations without a kept improvement, restarts from the best config with a multi-parameter jump.",
    hooks: ["init", "guide", "suggest", "observe"],
    capabilities: ["space"],
  },

  init() {
    return { patience: 6, width: 3, step: 0.2, sinceImprovement: 0, restarts: [] };
  },

  guide(ctx) {
    const { sinceImprovement, patience } = ctx.state;
    if (sinceImprovement >= Math.ceil(patience / 2) && sinceImprovement < patience) {
      return `No kept improvement for ${sinceImprovement} iterations: prefer bolder changes or parameters not tried recently.`;
    }
    return undefined;
  },

  suggest(ctx) {
    const s = ctx.state;
    if (s.sinceImprovement < s.patience || ctx.best === null) return undefined;
    const best = ctx.best.config;
    // Pick `width` distinct parameters with the seeded RNG, and a random direction for each.
    const pool = ctx.params.filter((p) => !p.frozen).map((p) => p.name);
    let target = best;
    for (let i = 0; i < s.width && pool.length > 0; i++) {
      const name = pool.splice(Math.floor(ctx.random() * pool.length), 1)[0] as string;
      target = ctx.space.neighbour(target, name, ctx.random() < 0.5 ? 1 : -1, s.step);
    }
    const changes: Change[] = Object.keys(target)
      .filter((name) => target[name] !== ctx.incumbent.config[name])
      .map((name) => ({ param: name, value: target[name] as number | string }));
    s.sinceImprovement = 0;
    if (changes.length === 0) return undefined;
    s.restarts.push({ iteration: ctx.iteration, changes, fromBest: ctx.best.valBpb });
    return {
      changes,
      rationale: `restart #${s.restarts.length}: ${s.patience} iterations without improvement; jump from the best config`,
    };
  },

  observe(trial, ctx) {
    ctx.state.sinceImprovement = trial.kept ? 0 : ctx.state.sinceImprovement + 1;
  },
} satisfies Mechanism<State>;
