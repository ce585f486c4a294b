// Orthogonal-array design of experiments around the starting config. It picks a few factors,
// takes the rows of an L9 array (3 levels: one step down / unchanged / one step up), suggests one
// row per iteration, then estimates each factor's main effect from the scores and suggests the
// combination of the best levels once. After that it settles: the proposer takes over.
import type { Config, Mechanism } from "bilevel/mechanism-api";

interface State {
  readonly factors: string[];
  /** The config the design is centred on (the incumbent at activation). */
  readonly center: Config;
  /** Each row: the level (-1, 0, +1) of every factor. */
  readonly rows: number[][];
  /** The score of each row once trained (null: failed or not yet run). */
  scores: (number | null)[];
  next: number;
  pending: { row: number; iteration: number } | null;
  phase: "design" | "settled";
  settledOn: number[] | null;
}

/** Factors worth a designed experiment, by prior knowledge; others fill in if the space lacks them. */
const PREFERRED = ["MATRIX_LR", "TOTAL_BATCH_SIZE", "EMBEDDING_LR", "WARMDOWN_RATIO"];
const STEP = 0.12;

/** The design level (-1, 0, +1) of an orthogonal-array value: which third of the normalised range it is in. */
function levelOf(u: number): number {
  return u < 1 / 3 ? -1 : u > 2 / 3 ? 1 : 0;
}

function configFor(
  center: Config,
  factors: readonly string[],
  levels: readonly number[],
  ctx: { space: { neighbour(c: Config, p: string, d: 1 | -1, s?: number): Config } },
): Config {
  let config = center;
  factors.forEach((name, i) => {
    const level = levels[i] ?? 0;
    if (level !== 0) config = ctx.space.neighbour(config, name, level > 0 ? 1 : -1, STEP);
  });
  return config;
}

function changesTo(from: Config, to: Config, factors: readonly string[]) {
  return factors
    .filter((name) => to[name] !== undefined && to[name] !== from[name])
    .map((name) => ({ param: name, value: to[name] as number | string }));
}

export default {
  manifest: {
    name: "orthogonal-doe",
    version: 1,
    description:
      "L9 orthogonal-array design over four factors around the start config, then the best main-effect levels.",
    hooks: ["init", "suggest", "observe"],
    capabilities: ["space"],
  },

  init(ctx) {
    const numeric = ctx.params.filter((p) => p.kind !== "choice" && !p.frozen).map((p) => p.name);
    const factors = [
      ...PREFERRED.filter((n) => numeric.includes(n)),
      ...numeric.filter((n) => !PREFERRED.includes(n)),
    ].slice(0, 4);
    const rows = ctx.space
      .orthogonalArray(factors, 3)
      .map((row) => factors.map((n) => levelOf(ctx.space.toUnit(n, row[n] as Config[string]))));
    return {
      factors,
      center: { ...ctx.incumbent.config },
      rows,
      scores: rows.map(() => null),
      next: 0,
      pending: null,
      phase: "design",
      settledOn: null,
    };
  },

  suggest(ctx) {
    const s = ctx.state;
    if (s.phase === "settled" || s.factors.length === 0) return undefined;
    if (s.next < s.rows.length) {
      const row = s.next;
      const levels = s.rows[row] as number[];
      const target = configFor(s.center, s.factors, levels, ctx);
      s.next += 1;
      const changes = changesTo(ctx.incumbent.config, target, s.factors);
      if (changes.length === 0) {
        // The incumbent already is this row (e.g. the centre row): score it from history.
        s.scores[row] = ctx.incumbent.valBpb;
        return undefined;
      }
      s.pending = { row, iteration: ctx.iteration };
      return {
        changes,
        rationale: `orthogonal design row ${row + 1}/${s.rows.length}: levels ${levels.join(" ")}`,
      };
    }
    // Main effects: for each factor, the level whose rows scored best on average.
    const known = s.scores.filter((x): x is number => x !== null);
    const worst = known.length > 0 ? Math.max(...known) + 0.1 : 10;
    const best = s.factors.map((_, f) => {
      let bestLevel = 0;
      let bestMean = Number.POSITIVE_INFINITY;
      for (const level of [-1, 0, 1]) {
        const scores = s.rows.flatMap((r, i) => (r[f] === level ? [s.scores[i] ?? worst] : []));
        if (scores.length === 0) continue;
        const mean = scores.reduce((a, b) => a + b, 0) / scores.length;
        if (mean < bestMean) {
          bestMean = mean;
          bestLevel = level;
        }
      }
      return bestLevel;
    });
    s.phase = "settled";
    s.settledOn = best;
    const changes = changesTo(ctx.incumbent.config, configFor(s.center, s.factors, best, ctx), s.factors);
    ctx.log(`settled on levels ${best.join(" ")} for ${s.factors.join(", ")}`);
    if (changes.length === 0) return undefined;
    return { changes, rationale: `orthogonal design: best main-effect levels ${best.join(" ")}` };
  },

  observe(trial, ctx) {
    const s = ctx.state;
    if (s.pending === null || s.pending.iteration !== trial.iteration) return;
    s.scores[s.pending.row] = trial.status === "ok" ? trial.valBpb : null;
    s.pending = null;
  },
} satisfies Mechanism<State>;
