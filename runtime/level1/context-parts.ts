// The search space and history every hook call's context carries, built once and kept while
// nothing they show changes: deeply frozen copies, the same objects from call to call, which the
// sandbox then serialises once each (sandbox/frozen-json.ts) instead of once per call.
import type { ParamSpec, Trial } from "../../mechanism-api/index.d.ts";
import { frozenCopy } from "../../sandbox/frozen-json.ts";
import type { TrialRow } from "../store.ts";

/** A trial row as mechanisms see it (ctx.history, observe's argument). */
export function toApiTrial(t: TrialRow): Trial {
  return {
    id: t.id,
    iteration: t.iteration,
    config: t.config,
    changes: t.changes,
    status: t.status,
    valBpb: t.valBpb,
    kept: t.kept,
    delta: t.delta,
  };
}

export class ContextParts {
  private space: { key: string; value: readonly ParamSpec[] } | null = null;
  private history: { rows: readonly TrialRow[]; value: readonly Trial[] } | null = null;
  private readonly params: readonly ParamSpec[];

  constructor(params: readonly ParamSpec[]) {
    this.params = params;
  }

  /** The search space with Level 1.5's active and frozen sets marked (mechanisms are bound by them too). */
  searchSpace(active: readonly string[], frozen: readonly string[]): readonly ParamSpec[] {
    const key = JSON.stringify([active, frozen]);
    if (this.space?.key !== key) {
      const value = this.params.map((p) => ({
        ...p,
        active: active.includes(p.name),
        ...(frozen.includes(p.name) ? { frozen: true } : {}),
      }));
      this.space = { key, value: frozenCopy(value) };
    }
    return this.space.value;
  }

  /** The history window: `rows` as mechanisms see them (the same array while `rows` are the same rows). */
  trials(rows: readonly TrialRow[]): readonly Trial[] {
    const kept = this.history;
    if (kept && kept.rows.length === rows.length && kept.rows.every((r, i) => r === rows[i]))
      return kept.value;
    const value = frozenCopy(rows.map(toApiTrial));
    this.history = { rows: [...rows], value };
    return value;
  }
}
