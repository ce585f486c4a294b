// The paper's Latin-hypercube orthogonal explorer: it takes the active parameters three at a time
// and, for each group, suggests a Latin-hypercube block of moves around the incumbent (every
// parameter of the group covers its whole ±step band once per block). When a block brings no kept
// improvement the step shrinks (step decay), so the search narrows as it stalls; then the next
// group is explored.
import type { Mechanism } from "bilevel/mechanism-api";

interface State {
  /** The half-width of the band, in normalised units, and its decay per fruitless block. */
  step: number;
  readonly decay: number;
  readonly minStep: number;
  /** The next group's first parameter (an index into the active parameters). */
  group: number;
  /** The block being walked: unit offsets in [-1, 1] per parameter of the group. */
  block: { params: string[]; offsets: number[][]; next: number; improved: boolean } | null;
}

const GROUP = 3;
const BLOCK = 4;

export default {
  manifest: {
    name: "paper-lhs-explorer",
    version: 1,
    description:
      "Latin-hypercube blocks of moves over three parameters at a time around the incumbent; the step decays when a block finds nothing.",
    hooks: ["init", "suggest", "observe"],
    capabilities: ["space"],
  },

  init() {
    return { step: 0.25, decay: 0.6, minStep: 0.02, group: 0, block: null };
  },

  suggest(ctx) {
    const s = ctx.state;
    if (s.block === null || s.block.next >= s.block.offsets.length) {
      if (s.block && !s.block.improved) s.step = Math.max(s.minStep, s.step * s.decay);
      const active = ctx.params.filter((p) => !p.frozen).map((p) => p.name);
      if (active.length === 0) return undefined;
      const params = Array.from(
        { length: Math.min(GROUP, active.length) },
        (_, i) => active[(s.group + i) % active.length] ?? "",
      );
      s.group = (s.group + GROUP) % active.length;
      const points = ctx.space.sample(BLOCK, { method: "lhs", params });
      const offsets = points.map((point) => params.map((p) => 2 * ctx.space.toUnit(p, point[p] ?? 0) - 1));
      s.block = { params, offsets, next: 0, improved: false };
    }
    const block = s.block;
    const offsets = block.offsets[block.next] ?? [];
    block.next += 1;
    const changes = block.params.flatMap((param, i) => {
      const from = ctx.incumbent.config[param];
      if (from === undefined) return [];
      const value = ctx.space.fromUnit(param, ctx.space.toUnit(param, from) + s.step * (offsets[i] ?? 0));
      return value === from ? [] : [{ param, value }];
    });
    if (changes.length === 0) return undefined;
    return {
      changes,
      rationale: `LHS block move ${block.next}/${BLOCK} over ${block.params.join(", ")}, step ${s.step.toFixed(3)}`,
    };
  },

  observe(trial, ctx) {
    if (ctx.state.block && trial.kept) ctx.state.block.improved = true;
  },
} satisfies Mechanism<State>;
