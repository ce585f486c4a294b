// Space helpers: pure functions over the search space (ParamSpec[]), in the project's one set of
// normalised coordinates (sandbox/param-scale.ts). Every value returned is an allowed value:
// within bounds, ints rounded, multiples and powers of two snapped, choices from the list.
import type { Config, ParamSpec, ParamValue } from "../../mechanism-api/index.d.ts";
import { clampValue, fromUnit, stepNumber, toUnit } from "../param-scale.ts";
import { own } from "./dict.ts";
import { CapabilityFault } from "./fault.ts";
import { orthogonalArrayRows } from "./orthogonal.ts";
import { type SampleMethod, unitPoints } from "./sequences.ts";

export function findParam(params: readonly ParamSpec[], name: string): ParamSpec {
  const spec = params.find((p) => p.name === name);
  if (!spec) throw new CapabilityFault(`unknown parameter "${name}"`);
  return spec;
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
  return clampValue(spec, value);
}

/** `value`'s unit coordinate; a value the parameter cannot hold is a fault. */
export function unitOf(params: readonly ParamSpec[], name: string, value: ParamValue): number {
  const u = toUnit(findParam(params, name), value);
  if (Number.isNaN(u)) throw new CapabilityFault(`"${name}" cannot hold ${JSON.stringify(value)}`);
  return u;
}

export function valueAt(params: readonly ParamSpec[], name: string, u: number): ParamValue {
  return fromUnit(findParam(params, name), u);
}

/** Distance of two values of one parameter in unit coordinates, in [0, 1]; values it cannot hold: 0 if equal, else 1. */
export function paramDistance(spec: ParamSpec, a: ParamValue, b: ParamValue): number {
  const d = Math.abs(toUnit(spec, a) - toUnit(spec, b));
  return Number.isNaN(d) ? (a === b ? 0 : 1) : d;
}

export function distance(
  params: readonly ParamSpec[],
  a: Config,
  b: Config,
  names?: readonly string[],
): number {
  const chosen = selectParams(params, names, "all");
  if (chosen.length === 0) return 0;
  let sum = 0;
  for (const spec of chosen) {
    const d = paramDistance(spec, own(a, spec.name) ?? spec.default, own(b, spec.name) ?? spec.default);
    sum += d * d;
  }
  return Math.sqrt(sum / chosen.length);
}

/** `value` moved `scale` unit coordinates up (direction 1) or down; choices move to the adjacent one. */
function moved(spec: ParamSpec, value: ParamValue, direction: 1 | -1, scale: number): ParamValue {
  if (spec.kind === "choice") {
    const choices = choicesOf(spec);
    const index = Math.max(0, choices.indexOf(value));
    return choices[Math.min(choices.length - 1, Math.max(0, index + direction))] ?? value;
  }
  if (typeof value !== "number") throw new CapabilityFault(`"${spec.name}" holds a non-number`);
  return stepNumber(spec, value, direction * scale);
}

export function neighbour(
  params: readonly ParamSpec[],
  config: Config,
  name: string,
  direction: 1 | -1,
  step = 0.1,
): Config {
  const spec = findParam(params, name);
  return { ...config, [name]: moved(spec, own(config, name) ?? spec.default, direction, step) };
}

/** Every one-parameter move of `config` up and down by `scale`, over `names` (default: the active ones); moves that change nothing are left out. */
export function neighbours(
  params: readonly ParamSpec[],
  config: Config,
  scale: number,
  names?: readonly string[],
): Config[] {
  const out: Config[] = [];
  for (const spec of selectParams(params, names, "active")) {
    const current = own(config, spec.name) ?? spec.default;
    for (const direction of [1, -1] as const) {
      const next = moved(spec, current, direction, scale);
      if (next !== current) out.push({ ...config, [spec.name]: next });
    }
  }
  return out;
}

function selectParams(
  params: readonly ParamSpec[],
  names: readonly string[] | undefined,
  fallback: "all" | "active",
): ParamSpec[] {
  if (names === undefined) return params.filter((p) => fallback === "all" || p.frozen !== true);
  const seen = new Set<string>();
  return names.map((n) => {
    if (seen.has(n)) throw new CapabilityFault(`parameter "${n}" listed twice`);
    seen.add(n);
    return findParam(params, n);
  });
}

export interface SampleOptions {
  readonly method?: SampleMethod;
  readonly params?: readonly string[];
  readonly start?: number;
}

/** n partial configs over the chosen parameters (default: the active ones), by `method` (default "lhs"). */
export function sample(
  params: readonly ParamSpec[],
  n: number,
  options: SampleOptions,
  random: () => number,
): Config[] {
  const chosen = selectParams(params, options.params, "active");
  const points = unitPoints(options.method ?? "lhs", n, chosen.length, random, options.start);
  // Entries, then Object.fromEntries: parameter names are keys whatever they are ("__proto__" too).
  return points.map((u) => Object.fromEntries(chosen.map((spec, d) => [spec.name, fromUnit(spec, u[d]!)])));
}

/** The pre-`sample` form: n Latin-hypercube points over `names` (default: every parameter, frozen ones too). */
export function latinHypercube(
  params: readonly ParamSpec[],
  n: number,
  names: readonly string[] | undefined,
  random: () => number,
): Config[] {
  return sample(params, n, { method: "lhs", params: names ?? params.map((p) => p.name) }, random);
}

function levelValue(spec: ParamSpec, level: number, levels: 2 | 3): ParamValue {
  if (spec.kind === "choice") {
    const choices = choicesOf(spec);
    const index =
      levels === 2 ? level * (choices.length - 1) : Math.round((level * (choices.length - 1)) / 2);
    return choices[index] ?? spec.default;
  }
  return fromUnit(spec, level / (levels - 1));
}

export function orthogonalArray(
  params: readonly ParamSpec[],
  names: readonly string[],
  levels: 2 | 3,
): Config[] {
  const chosen = selectParams(params, names, "all");
  const table = orthogonalArrayRows(chosen.length, levels);
  return table.map((row) =>
    Object.fromEntries(chosen.map((spec, i) => [spec.name, levelValue(spec, row[i]!, levels)])),
  );
}
