// Normalised coordinates of the search space: every parameter maps to [0, 1] (log scale for log
// parameters, choice index for choices). Steps, distances and the synthetic objective work here.
import type { Config, ParamSpec, ParamValue } from "../mechanism-api/index.d.ts";

function bounds(spec: ParamSpec): [number, number] {
  const min = spec.min ?? 0;
  const max = spec.max ?? min;
  return spec.log && min > 0 ? [Math.log(min), Math.log(max)] : [min, max];
}

/** `value` of `spec` in [0, 1]; choices map to index / (n - 1); unknown choices to NaN. */
export function toUnit(spec: ParamSpec, value: ParamValue): number {
  if (spec.kind === "choice") {
    const choices = spec.choices ?? [];
    const i = choices.indexOf(value);
    if (i < 0) return Number.NaN;
    return choices.length > 1 ? i / (choices.length - 1) : 0;
  }
  if (typeof value !== "number") return Number.NaN;
  const [lo, hi] = bounds(spec);
  if (hi === lo) return 0;
  const x = spec.log && (spec.min ?? 0) > 0 ? Math.log(value) : value;
  return (x - lo) / (hi - lo);
}

/** The value of `spec` at unit coordinate `u` (clamped to [0, 1]; ints rounded; choices snapped). */
export function fromUnit(spec: ParamSpec, u: number): ParamValue {
  const t = Math.min(1, Math.max(0, Number.isFinite(u) ? u : 0));
  if (spec.kind === "choice") {
    const choices = spec.choices ?? [];
    return choices[Math.round(t * (choices.length - 1))] ?? spec.default;
  }
  const [lo, hi] = bounds(spec);
  const x = lo + t * (hi - lo);
  const raw = spec.log && (spec.min ?? 0) > 0 ? Math.exp(x) : x;
  return clampValue(spec, raw);
}

/**
 * Clamp to bounds, round integers; floats keep 6 significant digits so configs stay readable.
 * A power-of-two or multiple-of parameter snaps to the nearest allowed value inside the bounds.
 */
export function clampValue(spec: ParamSpec, value: number): number {
  const min = spec.min ?? Number.NEGATIVE_INFINITY;
  const max = spec.max ?? Number.POSITIVE_INFINITY;
  const v = Math.min(max, Math.max(min, value));
  if (spec.powerOfTwo && v > 0) {
    const k = Math.round(Math.log2(v));
    const lo = Math.ceil(Math.log2(Math.max(min, 1)));
    const hi = Math.floor(Math.log2(max));
    if (lo <= hi) return 2 ** Math.min(hi, Math.max(lo, k));
  }
  if (spec.multipleOf !== undefined && spec.multipleOf > 0) {
    const m = spec.multipleOf;
    const k = Math.min(Math.floor(max / m), Math.max(Math.ceil(min / m), Math.round(v / m)));
    if (k * m >= min && k * m <= max) return Number((k * m).toPrecision(12));
  }
  if (spec.kind === "int") return Math.min(max, Math.max(min, Math.round(v)));
  return Math.min(max, Math.max(min, Number(v.toPrecision(6))));
}

/** The value of every parameter in `config`, defaults filling the gaps. */
export function fullConfig(params: readonly ParamSpec[], config: Config): Record<string, ParamValue> {
  return Object.fromEntries(params.map((p) => [p.name, config[p.name] ?? p.default]));
}

/** A key that is equal for configs that train the same (parameters of the space only, defaults filled). */
export function spaceKey(params: readonly ParamSpec[], config: Config): string {
  return JSON.stringify(params.map((p) => config[p.name] ?? p.default));
}
