// Tabu lists: host-kept entries { config, expires }. An entry added at iteration i with tenure t
// is live while the current iteration is < i + t. A config matches an entry when every parameter
// present in both (at least one) is within tolerance (see space.paramDistance); parameters unknown
// to the space must be equal.
import type { Config, ParamSpec } from "../../mechanism-api/index.d.ts";
import type { CapabilityState } from "../types.ts";
import { own, withEntry } from "./dict.ts";
import { CapabilityFault } from "./fault.ts";
import { paramDistance } from "./space.ts";

export const MAX_TABU_LISTS = 64;
export const MAX_TABU_ENTRIES = 1000;
export const DEFAULT_TOLERANCE = 0.05;
/** Max characters of one entry's config as JSON: the lists are guest-filled but host-kept. */
export const MAX_TABU_ENTRY_CHARS = 16 * 1024;

type TabuLists = CapabilityState["tabu"];
type Entry = TabuLists[string][number];

function live(entries: readonly Entry[] | undefined, iteration: number): Entry[] {
  return (entries ?? []).filter((e) => e.expires > iteration);
}

export function tabuAdd(
  lists: TabuLists,
  iteration: number,
  list: string,
  config: Config,
  tenure: number,
): TabuLists {
  if (!Object.hasOwn(lists, list) && Object.keys(lists).length >= MAX_TABU_LISTS) {
    throw new CapabilityFault(`at most ${MAX_TABU_LISTS} tabu lists`);
  }
  const chars = JSON.stringify(config).length;
  if (chars > MAX_TABU_ENTRY_CHARS) {
    throw new CapabilityFault(`a tabu entry is ${chars} characters as JSON, over ${MAX_TABU_ENTRY_CHARS}`);
  }
  // Oldest entries go first when the list is full.
  const entries = [
    ...live(own(lists, list), iteration),
    { config: { ...config }, expires: iteration + tenure },
  ];
  return withEntry(lists, list, entries.slice(-MAX_TABU_ENTRIES));
}

export function matches(
  params: readonly ParamSpec[],
  a: Config,
  b: Config,
  tolerance: number = DEFAULT_TOLERANCE,
): boolean {
  let shared = 0;
  for (const name of Object.keys(a)) {
    if (!Object.hasOwn(b, name)) continue;
    shared++;
    const va = a[name]!;
    const vb = b[name]!;
    const spec = params.find((p) => p.name === name);
    if (!spec) {
      if (va !== vb) return false;
    } else if (paramDistance(spec, va, vb) > tolerance + 1e-12) {
      return false;
    }
  }
  return shared > 0;
}

export function tabuContains(
  lists: TabuLists,
  params: readonly ParamSpec[],
  iteration: number,
  list: string,
  config: Config,
  tolerance?: number,
): boolean {
  return live(own(lists, list), iteration).some((e) => matches(params, config, e.config, tolerance));
}

export function tabuSize(lists: TabuLists, iteration: number, list: string): number {
  return live(own(lists, list), iteration).length;
}

export function tabuClear(lists: TabuLists, list: string): TabuLists {
  const { [list]: _removed, ...rest } = lists;
  return rest;
}
