// Tabu lists: host-kept entries { config, expires, added }. An entry added at iteration i with
// tenure t is live while the current iteration is < i + t. A config matches an entry when they
// share at least one parameter and every shared parameter is within its tolerance; entries that
// share no parameter never match. Entries may be partial configs (e.g. a trial's changes), so
// matching on the changed parameters only is adding just those.
import type {
  Change,
  Config,
  ParamSpec,
  ParamTolerance,
  TabuMatch,
  TabuNearParam,
  TabuTolerance,
} from "../../mechanism-api/index.d.ts";
import type { CapabilityState } from "../types.ts";
import { own, withEntry } from "./dict.ts";
import { CapabilityFault } from "./fault.ts";
import { paramDistance } from "./space.ts";

export const MAX_TABU_LISTS = 64;
export const MAX_TABU_ENTRIES = 1000;
export const DEFAULT_TOLERANCE = 0.05;
/** Max characters of one entry's config as JSON: the lists are guest-filled but host-kept. */
export const MAX_TABU_ENTRY_CHARS = 16 * 1024;
/** Parameters a match's reason names before "and N more". */
const REASON_PARAMS = 4;

type TabuLists = CapabilityState["tabu"];
type Entry = TabuLists[string][number];

/** A config, or changes read as the partial config they set (a later change of a parameter wins). */
export function asConfig(config: Config | readonly Change[]): Config {
  return Array.isArray(config)
    ? Object.fromEntries((config as readonly Change[]).map((c) => [c.param, c.value]))
    : (config as Config);
}

function live(entries: readonly Entry[] | undefined, iteration: number): Entry[] {
  return (entries ?? []).filter((e) => e.expires > iteration);
}

/**
 * Adds an entry. When the list then holds more than `capacity` live entries, the ones that expire
 * soonest are evicted (the oldest first among equals).
 */
export function tabuAdd(
  lists: TabuLists,
  iteration: number,
  list: string,
  config: Config | readonly Change[],
  tenure: number,
  capacity: number = MAX_TABU_ENTRIES,
): TabuLists {
  if (!Object.hasOwn(lists, list) && Object.keys(lists).length >= MAX_TABU_LISTS) {
    throw new CapabilityFault(`at most ${MAX_TABU_LISTS} tabu lists`);
  }
  const entry = { config: { ...asConfig(config) }, expires: iteration + tenure, added: iteration };
  const chars = JSON.stringify(entry.config).length;
  if (chars > MAX_TABU_ENTRY_CHARS) {
    throw new CapabilityFault(`a tabu entry is ${chars} characters as JSON, over ${MAX_TABU_ENTRY_CHARS}`);
  }
  const entries = [...live(own(lists, list), iteration), entry];
  const cap = Math.min(capacity, MAX_TABU_ENTRIES);
  if (entries.length > cap) {
    // Stable sort: among equal expiries the earlier-added entry goes first.
    const evicted = new Set(
      [...entries].sort((a, b) => a.expires - b.expires).slice(0, entries.length - cap),
    );
    return withEntry(
      lists,
      list,
      entries.filter((e) => !evicted.has(e)),
    );
  }
  return withEntry(lists, list, entries);
}

/** The tolerance rule of one parameter: its own, else the default fraction of the (log) range. */
function toleranceOf(tolerance: number | TabuTolerance | undefined, name: string): ParamTolerance {
  if (typeof tolerance === "number") return { unit: tolerance };
  const ownRule = tolerance?.params && own(tolerance.params, name);
  return ownRule ?? { unit: tolerance?.default ?? DEFAULT_TOLERANCE };
}

function limitOf(rule: ParamTolerance): number {
  if ("absolute" in rule) return rule.absolute;
  return "ratio" in rule ? rule.ratio : rule.unit;
}

/** How far apart two values are in the rule's measure, and whether that is within it. */
function compare(
  spec: ParamSpec | undefined,
  rule: ParamTolerance,
  a: Config[string],
  b: Config[string],
): { distance: number; within: boolean; measure: TabuNearParam["measure"] } {
  const eps = 1e-12;
  if (typeof a !== "number" || typeof b !== "number" || (!spec && !("absolute" in rule || "ratio" in rule))) {
    return { distance: a === b ? 0 : 1, within: a === b, measure: "equal" };
  }
  if ("absolute" in rule) {
    const d = Math.abs(a - b);
    return { distance: d, within: d <= rule.absolute + eps, measure: "absolute" };
  }
  if ("ratio" in rule) {
    if (a <= 0 || b <= 0)
      return { distance: a === b ? 1 : Number.POSITIVE_INFINITY, within: a === b, measure: "ratio" };
    const r = Math.max(a, b) / Math.min(a, b);
    return { distance: r, within: r <= rule.ratio * (1 + eps), measure: "ratio" };
  }
  const d = spec ? paramDistance(spec, a, b) : a === b ? 0 : 1;
  return { distance: d, within: d <= rule.unit + eps, measure: "unit" };
}

/** The comparison of `config` with one entry over their shared parameters; null when they share none or one is out of tolerance. */
function near(
  params: readonly ParamSpec[],
  config: Config,
  entry: Entry,
  tolerance: number | TabuTolerance | undefined,
): TabuNearParam[] | null {
  const shared: TabuNearParam[] = [];
  for (const name of Object.keys(config)) {
    if (!Object.hasOwn(entry.config, name)) continue;
    const value = config[name]!;
    const entryValue = entry.config[name]!;
    const rule = toleranceOf(tolerance, name);
    const c = compare(
      params.find((p) => p.name === name),
      rule,
      value,
      entryValue,
    );
    if (!c.within) return null;
    const limit = c.measure === "equal" ? 0 : limitOf(rule);
    shared.push({
      param: name,
      value,
      entryValue,
      measure: c.measure,
      distance: c.distance,
      tolerance: limit,
    });
  }
  return shared.length > 0 ? shared : null;
}

function reasonOf(entry: Entry, shared: readonly TabuNearParam[]): string {
  const fmt = (v: unknown) => (typeof v === "number" ? String(Number(v.toPrecision(4))) : JSON.stringify(v));
  const parts = shared.slice(0, REASON_PARAMS).map((p) => {
    if (p.measure === "equal") return `${p.param} ${fmt(p.value)} = ${fmt(p.entryValue)}`;
    const sign = p.measure === "ratio" ? "ratio" : p.measure === "absolute" ? "|Δ|" : "Δ range";
    return `${p.param} ${fmt(p.value)} vs ${fmt(p.entryValue)} (${sign} ${fmt(p.distance)} ≤ ${fmt(p.tolerance)})`;
  });
  const more = shared.length > REASON_PARAMS ? `, and ${shared.length - REASON_PARAMS} more` : "";
  const when = entry.added === undefined ? "" : ` added at iteration ${entry.added}`;
  return `near the entry${when} (tabu through iteration ${entry.expires - 1}): ${parts.join(", ")}${more}`;
}

/** The most recently added live entry that `config` matches, with the comparison; null if none. */
export function tabuMatch(
  lists: TabuLists,
  params: readonly ParamSpec[],
  iteration: number,
  list: string,
  config: Config | readonly Change[],
  tolerance?: number | TabuTolerance,
): TabuMatch | null {
  const query = asConfig(config);
  const entries = live(own(lists, list), iteration);
  for (let i = entries.length - 1; i >= 0; i--) {
    const entry = entries[i]!;
    const shared = near(params, query, entry, tolerance);
    if (shared) {
      return {
        entry: entry.config,
        added: entry.added ?? null,
        expires: entry.expires,
        params: shared,
        reason: reasonOf(entry, shared),
      };
    }
  }
  return null;
}

/** Whether a live entry matches; the same rule as tabuMatch. */
export function matches(
  params: readonly ParamSpec[],
  a: Config,
  b: Config,
  tolerance: number | TabuTolerance = DEFAULT_TOLERANCE,
): boolean {
  return near(params, a, { config: b, expires: 0 }, tolerance) !== null;
}

export function tabuContains(
  lists: TabuLists,
  params: readonly ParamSpec[],
  iteration: number,
  list: string,
  config: Config | readonly Change[],
  tolerance?: number | TabuTolerance,
): boolean {
  return tabuMatch(lists, params, iteration, list, config, tolerance) !== null;
}

export function tabuSize(lists: TabuLists, iteration: number, list: string): number {
  return live(own(lists, list), iteration).length;
}

export function tabuClear(lists: TabuLists, list: string): TabuLists {
  const { [list]: _removed, ...rest } = lists;
  return rest;
}
