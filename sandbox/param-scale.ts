// Normalised (unit) coordinates of the search space, the one implementation for the whole project:
// the space capability, the synthetic trace, the offline proposer, the synthetic objective and the
// surrogate all use it. It lives on the sandbox side because runtime/ may import sandbox/ but not
// the reverse, and it imports nothing but types, so both sides can load it.
//
// Numbers map linearly to [0, 1] over [min, max] (over [ln min, ln max] for log parameters with
// min > 0), clamped. Choices are ordered: choice i of n sits at i / (n − 1); going back, [0, 1]
// is cut into n equal bins, so a uniform u picks every choice equally often and every choice
// round-trips. Values coming back are always allowed values: clamped, ints rounded, multiples
// and powers of two snapped, floats kept to 6 significant digits.
import type { Config, ParamSpec, ParamValue } from "../mechanism-api/index.d.ts";

function usesLog(spec: ParamSpec): boolean {
  return spec.log === true && (spec.min ?? 0) > 0;
}

function bounds(spec: ParamSpec): [number, number] {
  const min = spec.min ?? 0;
  const max = spec.max ?? min;
  return usesLog(spec) ? [Math.log(min), Math.log(max)] : [min, max];
}

/** `value` of `spec` in [0, 1] (clamped); NaN for a value the parameter cannot hold. */
export function toUnit(spec: ParamSpec, value: ParamValue): number {
  if (spec.kind === "choice") {
    const choices = spec.choices ?? [];
    const i = choices.indexOf(value);
    if (i < 0) return Number.NaN;
    return choices.length > 1 ? i / (choices.length - 1) : 0;
  }
  if (typeof value !== "number" || !Number.isFinite(value)) return Number.NaN;
  const [lo, hi] = bounds(spec);
  if (hi === lo) return 0;
  const x = usesLog(spec) ? Math.log(Math.max(value, spec.min ?? 0)) : value;
  return Math.min(1, Math.max(0, (x - lo) / (hi - lo)));
}

/** The value of `spec` at unit coordinate `u` (clamped to [0, 1]; NaN reads as 0). */
export function fromUnit(spec: ParamSpec, u: number): ParamValue {
  const t = Math.min(1, Math.max(0, Number.isFinite(u) ? u : 0));
  if (spec.kind === "choice") {
    const choices = spec.choices ?? [];
    return choices[Math.min(choices.length - 1, Math.floor(t * choices.length))] ?? spec.default;
  }
  const [lo, hi] = bounds(spec);
  const x = lo + t * (hi - lo);
  return clampValue(spec, usesLog(spec) ? Math.exp(x) : x);
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

/**
 * The numeric value `delta` unit coordinates from `from` (a step up for delta > 0). When the step
 * rounds back to `from` on an int or multiple-of parameter, it moves one allowed unit instead
 * (×2 or ÷2 for powers of two), within bounds.
 */
export function stepNumber(spec: ParamSpec, from: number, delta: number): number {
  const to = fromUnit(spec, toUnit(spec, from) + delta) as number;
  if (to !== from || delta === 0 || (spec.kind !== "int" && spec.multipleOf === undefined)) return to;
  const dir = delta > 0 ? 1 : -1;
  if (spec.powerOfTwo) return clampValue(spec, from * 2 ** dir);
  return clampValue(spec, from + dir * (spec.multipleOf ?? 1));
}

/** The value of every parameter in `config`, defaults filling the gaps. */
export function fullConfig(params: readonly ParamSpec[], config: Config): Record<string, ParamValue> {
  return Object.fromEntries(params.map((p) => [p.name, config[p.name] ?? p.default]));
}

/** A key that is equal for configs that train the same (parameters of the space only, defaults filled). */
export function spaceKey(params: readonly ParamSpec[], config: Config): string {
  return JSON.stringify(params.map((p) => config[p.name] ?? p.default));
}
