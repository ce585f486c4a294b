// Space helpers: pure functions over the search space (ParamSpec[]). Every value returned respects
// bounds, integrality and choices. Distances are measured on [0, 1] per parameter (log scale for
// log parameters); choices are at distance 0 (equal) or 1.
import type { Config, ParamSpec, ParamValue } from "../../mechanism-api/index.d.ts";
import { own } from "./dict.ts";
import { CapabilityFault } from "./fault.ts";
import { orthogonalArrayRows } from "./orthogonal.ts";

export function findParam(params: readonly ParamSpec[], name: string): ParamSpec {
  const spec = params.find((p) => p.name === name);
  if (!spec) throw new CapabilityFault(`unknown parameter "${name}"`);
  return spec;
}

function bounds(spec: ParamSpec): [number, number] {
  const min = spec.min ?? 0;
  const max = spec.max ?? min;
  return [Math.min(min, max), Math.max(min, max)];
}

function usesLog(spec: ParamSpec): boolean {
  const [min] = bounds(spec);
  return spec.log === true && min > 0;
}

/** Position of a numeric value in [0, 1] along the parameter's (log) range. */
export function normalise(spec: ParamSpec, value: number): number {
  const [min, max] = bounds(spec);
  if (max === min) return 0;
  const u = usesLog(spec)
    ? (Math.log(Math.max(value, min)) - Math.log(min)) / (Math.log(max) - Math.log(min))
    : (value - min) / (max - min);
  return Math.min(1, Math.max(0, u));
}

/** The value at position u ∈ [0, 1] of the range, rounded for ints. */
export function denormalise(spec: ParamSpec, u: number): number {
  const [min, max] = bounds(spec);
  const t = Math.min(1, Math.max(0, u));
  const raw = usesLog(spec)
    ? Math.exp(Math.log(min) + t * (Math.log(max) - Math.log(min)))
    : min + t * (max - min);
  return clampNumber(spec, raw);
}

function clampNumber(spec: ParamSpec, value: number): number {
  const [min, max] = bounds(spec);
  let v = Math.min(max, Math.max(min, value));
  if (spec.kind === "int") {
    v = Math.round(v);
    if (v > max) v = Math.floor(max);
    if (v < min) v = Math.ceil(min);
  }
  return v;
}

function choicesOf(spec: ParamSpec): readonly ParamValue[] {
  return spec.choices && spec.choices.length > 0 ? spec.choices : [spec.default];
}

export function clamp(params: readonly ParamSpec[], name: string, value: ParamValue): ParamValue {
  const spec = findParam(params, name);
  if (spec.kind === "choice") {
    const choices = choicesOf(spec);
    if (choices.includes(value)) return value;
    if (typeof value === "number") {
      // Nearest numeric choice; strings cannot be ordered meaningfully.
      let best: ParamValue | undefined;
      let bestGap = Number.POSITIVE_INFINITY;
      for (const c of choices) {
        if (typeof c === "number" && Math.abs(c - value) < bestGap) {
          best = c;
          bestGap = Math.abs(c - value);
        }
      }
      if (best !== undefined) return best;
    }
    throw new CapabilityFault(`${JSON.stringify(value)} is not one of the choices of "${name}"`);
  }
  if (typeof value !== "number" || !Number.isFinite(value)) {
    throw new CapabilityFault(`"${name}" takes a finite number, got ${JSON.stringify(value)}`);
  }
  return clampNumber(spec, value);
}

/** Distance of two values of one parameter, in [0, 1]. */
export function paramDistance(spec: ParamSpec, a: ParamValue, b: ParamValue): number {
  if (spec.kind === "choice" || typeof a !== "number" || typeof b !== "number") return a === b ? 0 : 1;
  return Math.abs(normalise(spec, a) - normalise(spec, b));
}

export function distance(params: readonly ParamSpec[], a: Config, b: Config): number {
  if (params.length === 0) return 0;
  let sum = 0;
  for (const spec of params) {
    const d = paramDistance(spec, own(a, spec.name) ?? spec.default, own(b, spec.name) ?? spec.default);
    sum += d * d;
  }
  return Math.sqrt(sum / params.length);
}

export function neighbour(
  params: readonly ParamSpec[],
  config: Config,
  name: string,
  direction: 1 | -1,
  step = 0.1,
): Config {
  const spec = findParam(params, name);
  const current = own(config, name) ?? spec.default;
  let next: ParamValue;
  if (spec.kind === "choice") {
    const choices = choicesOf(spec);
    const index = Math.max(0, choices.indexOf(current));
    next = choices[Math.min(choices.length - 1, Math.max(0, index + direction))] ?? current;
  } else {
    if (typeof current !== "number") throw new CapabilityFault(`"${name}" holds a non-number`);
    next = denormalise(spec, normalise(spec, current) + direction * step);
    // An int step smaller than one unit still moves one unit, within bounds.
    if (spec.kind === "int" && next === current) next = clampNumber(spec, current + direction);
  }
  return { ...config, [name]: next };
}

function selectParams(params: readonly ParamSpec[], names: readonly string[] | undefined): ParamSpec[] {
  if (names === undefined) return [...params];
  const seen = new Set<string>();
  return names.map((n) => {
    if (seen.has(n)) throw new CapabilityFault(`parameter "${n}" listed twice`);
    seen.add(n);
    return findParam(params, n);
  });
}

function valueAt(spec: ParamSpec, u: number): ParamValue {
  if (spec.kind === "choice") {
    const choices = choicesOf(spec);
    return choices[Math.min(choices.length - 1, Math.floor(u * choices.length))] ?? spec.default;
  }
  return denormalise(spec, u);
}

export function latinHypercube(
  params: readonly ParamSpec[],
  n: number,
  names: readonly string[] | undefined,
  random: () => number,
): Config[] {
  const chosen = selectParams(params, names);
  // Entries, then Object.fromEntries: parameter names are keys whatever they are ("__proto__" too).
  const rows: [string, ParamValue][][] = Array.from({ length: n }, () => []);
  for (const spec of chosen) {
    // One point per stratum, strata shuffled independently per parameter (Fisher–Yates).
    const strata = Array.from({ length: n }, (_, i) => i);
    for (let i = n - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [strata[i], strata[j]] = [strata[j]!, strata[i]!];
    }
    for (let i = 0; i < n; i++) rows[i]!.push([spec.name, valueAt(spec, (strata[i]! + random()) / n)]);
  }
  return rows.map((row) => Object.fromEntries(row));
}

function levelValue(spec: ParamSpec, level: number, levels: 2 | 3): ParamValue {
  if (spec.kind === "choice") {
    const choices = choicesOf(spec);
    const index =
      levels === 2 ? level * (choices.length - 1) : Math.round((level * (choices.length - 1)) / 2);
    return choices[index] ?? spec.default;
  }
  return denormalise(spec, level / (levels - 1));
}

export function orthogonalArray(
  params: readonly ParamSpec[],
  names: readonly string[],
  levels: 2 | 3,
): Config[] {
  const chosen = selectParams(params, names);
  const table = orthogonalArrayRows(chosen.length, levels);
  return table.map((row) =>
    Object.fromEntries(chosen.map((spec, i) => [spec.name, levelValue(spec, row[i]!, levels)])),
  );
}
