// One Level 1.5 step: ask the strategist, bound its request with the caps, store the new search
// config and the checkpoint in one transaction.
import type { ParamSpec } from "../../mechanism-api/index.d.ts";
import type { ResolvedRunConfig } from "../config.ts";
import type { RunStore, SearchConfig, TrialRow } from "../store.ts";
import { enforceCaps, type Strategist } from "./strategy.ts";

export interface Level15Input {
  readonly store: RunStore;
  readonly config: ResolvedRunConfig;
  readonly params: readonly ParamSpec[];
  readonly strategist: Strategist;
  readonly search: SearchConfig;
  readonly trials: readonly TrialRow[];
  readonly iteration: number;
  readonly cycle: number;
  /** Written in the step's transaction. */
  readonly checkpoint: string;
  readonly emit: (message: string) => void;
}

/** Returns the search config in force after the step. */
export async function runLevel15(input: Level15Input): Promise<SearchConfig> {
  const { store, config, params, search, iteration: it, cycle } = input;
  const since = it - config.level15.every;
  const keptThisCycle = input.trials.filter(
    (t) => t.kind === "search" && t.iteration > since && t.kept,
  ).length;
  const result = await input.strategist.decide({
    iteration: it,
    current: search,
    params,
    trials: input.trials,
    keptThisCycle,
  });
  if (!result.ok) {
    store.transaction(() => {
      store.addEvent(it, "1.5", "no-change", `Level 1.5 made no change: ${result.reason}`);
      store.checkpoint(input.checkpoint);
    });
    input.emit(`Level 1.5 made no change: ${result.reason}`);
    return search;
  }
  const { config: next, notes } = enforceCaps(search, result.request, params, config.level15);
  const summary = describeChange(search, next, notes.length);
  const changed = JSON.stringify(next) !== JSON.stringify(search);
  store.transaction(() => {
    store.addSearchConfig(it, cycle, input.strategist.kind, next, result.request.rationale);
    store.addEvent(
      it,
      "1.5",
      changed ? "adjusted" : "unchanged",
      `Level 1.5 (${input.strategist.kind}): ${summary}`,
      {
        rationale: result.request.rationale,
        notes,
      },
    );
    store.checkpoint(input.checkpoint);
  });
  input.emit(`Level 1.5 (${input.strategist.kind}): ${summary} — ${result.request.rationale}`);
  return next;
}

function describeChange(before: SearchConfig, next: SearchConfig, refused: number): string {
  const froze = next.frozen.filter((p) => !before.frozen.includes(p));
  const unfroze = before.frozen.filter((p) => !next.frozen.includes(p));
  return [
    `strategy ${next.strategy}`,
    froze.length > 0 ? `froze ${froze.join(", ")}` : "",
    unfroze.length > 0 ? `unfroze ${unfroze.join(", ")}` : "",
    `${next.active.length} active`,
    refused > 0 ? `${refused} request(s) refused by the caps` : "",
  ]
    .filter((x) => x !== "")
    .join("; ");
}
