// The offline (non-LLM) proposer: a seeded local random search around the incumbent. Used by the
// real loop when no LLM endpoint is configured, and by the mechanism regression harness.
// Pure: the same input (and RNG seed) gives the same proposal.
import type { Change, Config, ParamSpec, ParamValue } from "../../mechanism-api/index.d.ts";
import { checkConstraints } from "../../trainer/constraints.ts";
import { applyChanges } from "../changes.ts";
import { clampValue, fromUnit, fullConfig, spaceKey, stepNumber, toUnit } from "../param-scale.ts";
import { createRng, type Rng } from "../rng.ts";
import type { Proposer, ProposerInput, ProposerResult } from "./proposer.ts";

export interface OfflineProposerInput {
  readonly params: readonly ParamSpec[];
  /** The config to step from; parameters it lacks take their defaults. */
  readonly incumbent: Config;
  /** Configs tried already (oldest first); exact repeats of these are avoided when possible. */
  readonly history: readonly { readonly config: Config }[];
  /** Parameters that may change (default: all). */
  readonly active?: readonly string[];
  readonly rng: Rng;
  /** 1–3 (default 3). */
  readonly maxChanges?: number;
  /** More configs to avoid, e.g. proposals rejected earlier this iteration. */
  readonly avoid?: readonly Config[];
}

export type OfflineProposal =
  | {
      readonly ok: true;
      readonly changes: Change[];
      readonly rationale: string;
      /** True when every draw repeated a known config (the space near the incumbent is exhausted). */
      readonly repeat: boolean;
    }
  | { readonly ok: false; readonly reason: string };

/** Draws before giving up on avoiding a repeat. */
const MAX_DRAWS = 32;
/** Step sizes, as fractions of a parameter's (log) range: drawn log-uniformly in this interval. */
const MIN_STEP = 0.04;
const MAX_STEP = 0.25;

export function proposeOffline(input: OfflineProposerInput): OfflineProposal {
  const { params, rng } = input;
  const maxChanges = Math.min(3, Math.max(1, Math.floor(input.maxChanges ?? 3)));
  const active = new Set(input.active ?? params.map((p) => p.name));
  const movable = params.filter((p) => active.has(p.name) && canMove(p));
  if (movable.length === 0) {
    return { ok: false, reason: "no active parameter can change (all frozen, or single-valued)" };
  }
  const base = sanitize(params, input.incumbent);
  const seen = new Set<string>([spaceKey(params, base)]);
  for (const h of input.history) seen.add(spaceKey(params, h.config));
  for (const c of input.avoid ?? []) seen.add(spaceKey(params, c));

  let last: { changes: Change[]; notes: string[] } | null = null;
  for (let draw = 0; draw < MAX_DRAWS; draw++) {
    const candidate = drawChanges(movable, base, rng, maxChanges);
    if (candidate.changes.length === 0) continue;
    const config = { ...base, ...Object.fromEntries(candidate.changes.map((c) => [c.param, c.value])) };
    // A draw that breaks a declared constraint is not offered (it could never be trained).
    if (checkConstraints(params, { ...input.incumbent, ...config }).length > 0) continue;
    last = candidate;
    if (!seen.has(spaceKey(params, config))) {
      return {
        ok: true,
        changes: candidate.changes,
        rationale: rationale(candidate.notes, false),
        repeat: false,
      };
    }
  }
  if (last === null)
    return { ok: false, reason: "could not draw a change that moves a parameter and meets the constraints" };
  return { ok: true, changes: last.changes, rationale: rationale(last.notes, true), repeat: true };
}

function canMove(spec: ParamSpec): boolean {
  if (spec.kind === "choice") return (spec.choices?.length ?? 0) > 1;
  return spec.min !== undefined && spec.max !== undefined && spec.max > spec.min;
}

/** The incumbent with defaults filled and out-of-space values pulled back inside. */
function sanitize(params: readonly ParamSpec[], config: Config): Record<string, ParamValue> {
  const full = fullConfig(params, config);
  for (const p of params) {
    const v = full[p.name];
    if (p.kind === "choice") {
      if (!p.choices?.includes(v as ParamValue)) full[p.name] = p.default;
    } else {
      full[p.name] = typeof v === "number" && Number.isFinite(v) ? clampValue(p, v) : p.default;
    }
  }
  return full;
}

function drawChanges(
  movable: readonly ParamSpec[],
  base: Record<string, ParamValue>,
  rng: Rng,
  maxChanges: number,
): { changes: Change[]; notes: string[] } {
  // Mostly single changes (attributable), sometimes two or three.
  const r = rng.next();
  const wanted = Math.min(maxChanges, movable.length, r < 0.55 ? 1 : r < 0.88 ? 2 : 3);
  const pool = [...movable];
  const changes: Change[] = [];
  const notes: string[] = [];
  while (changes.length < wanted && pool.length > 0) {
    const spec = pool.splice(rng.int(pool.length), 1)[0] as ParamSpec;
    const from = base[spec.name] as ParamValue;
    const to = step(spec, from, rng);
    if (to === from) continue;
    changes.push({ param: spec.name, value: to });
    notes.push(`${spec.name} ${format(from)} -> ${format(to)}`);
  }
  return { changes, notes };
}

/** One random step of `spec` from `from`: a neighbour choice, or a (log-)range fraction for numbers. */
function step(spec: ParamSpec, from: ParamValue, rng: Rng): ParamValue {
  const up = rng.next() < 0.5;
  if (spec.kind === "choice") {
    const choices = spec.choices ?? [];
    const i = choices.indexOf(from);
    const j = i + (up ? 1 : -1);
    // At an end, step the other way.
    const k = j < 0 || j >= choices.length ? i - (up ? 1 : -1) : j;
    return choices[k] ?? from;
  }
  const u = toUnit(spec, from);
  const size = MIN_STEP * (MAX_STEP / MIN_STEP) ** rng.next();
  let dir = up ? 1 : -1;
  if ((u >= 1 && dir > 0) || (u <= 0 && dir < 0)) dir = -dir;
  return typeof from === "number" ? stepNumber(spec, from, dir * size) : fromUnit(spec, u + dir * size);
}

function format(value: ParamValue): string {
  return typeof value === "number" && !Number.isInteger(value)
    ? String(Number(value.toPrecision(4)))
    : String(value);
}

function rationale(notes: readonly string[], repeat: boolean): string {
  const text = `offline local step: ${notes.join(", ")}`;
  return repeat ? `${text} (every draw repeated a tried config)` : text;
}

/**
 * The loop's `Proposer` over `proposeOffline`: seeded by (run seed, iteration, attempt), only
 * active parameters, avoiding the recent history, this iteration's rejected proposals and the
 * trials still in flight.
 */
export class OfflineProposer implements Proposer {
  readonly kind = "offline";

  async propose(input: ProposerInput): Promise<ProposerResult> {
    const result = proposeOffline({
      params: input.params,
      incumbent: input.incumbent.config,
      history: input.history,
      active: input.search.active,
      rng: createRng("offline-proposer", input.seed, input.iteration, input.attempt),
      maxChanges: input.maxChanges,
      avoid: [
        ...input.rejected.map((r) => applyChanges(input.incumbent.config, r.changes)),
        ...(input.pending ?? []).map((p) => p.config),
      ],
    });
    return result.ok ? { ok: true, changes: result.changes, rationale: result.rationale } : result;
  }
}
