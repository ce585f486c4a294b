// The filter chain's rule, in one place: what one filter's verdict does to the proposal the next
// filter sees. Two sides apply it. The sandbox child, which runs a proposal's whole chain in one
// request, needs it to hand each filter the proposal as the filters before it left it: the run
// names this module when it starts the sandbox (FILTER_CHAIN_RULE; the sandbox imports nothing of
// runtime/ itself). The host (runtime/level1/iteration.ts) replays it on the verdicts that come
// back to build the record, so what is stored and trained never rests on the child's word.
// Pure: no I/O, no clock.
import type { Change, Config, FilterVerdict, ParamSpec, Proposal } from "../../mechanism-api/index.d.ts";
import type { ChainRuleModule } from "../../sandbox/types.ts";
import { applyChanges, checkChanges, effectiveChanges } from "../changes.ts";

/** This module, for SandboxOptions.chainRule: the sandbox child loads it (as a ChainRuleModule) to run filter chains. */
export const FILTER_CHAIN_RULE: string = import.meta.filename;

/** What a modification is checked against: the incumbent it applies to, and Level 1.5's active set. */
export interface ChainRule {
  readonly base: Config;
  readonly active: readonly string[];
}

export type FilterStep =
  | { readonly kind: "accepted"; readonly changes: readonly Change[] }
  | { readonly kind: "rejected"; readonly reason: string; readonly changes: readonly Change[] }
  | {
      readonly kind: "modified";
      readonly from: readonly Change[];
      readonly changes: readonly Change[];
      readonly reason: string;
    }
  /** The modification breaks the search space or a constraint: recorded and ignored. */
  | {
      readonly kind: "invalid-modification";
      readonly errors: string[];
      /** The modification as the filter returned it. */
      readonly proposed: readonly Change[];
      readonly changes: readonly Change[];
    };

/**
 * One filter's verdict applied to `changes` (what that filter saw). `changes` of the result is what
 * the next filter sees; after "rejected" the chain stops.
 */
export function filterStep(
  verdict: FilterVerdict,
  changes: readonly Change[],
  rule: ChainRule,
  params: readonly ParamSpec[],
): FilterStep {
  if (verdict.verdict === "reject") return { kind: "rejected", reason: verdict.reason, changes };
  if (verdict.verdict === "accept") return { kind: "accepted", changes };
  const modified = effectiveChanges(rule.base, verdict.changes);
  const errors = checkChanges(modified, params, { active: rule.active, base: rule.base });
  if (errors.length > 0) return { kind: "invalid-modification", errors, proposed: verdict.changes, changes };
  return { kind: "modified", from: changes, changes: modified, reason: verdict.reason };
}

/** The proposal a filter is handed: the offered one with the chain's current changes applied to the base. */
export function chainProposal(
  offered: Pick<Proposal, "rationale" | "source">,
  base: Config,
  changes: readonly Change[],
): Proposal {
  return {
    changes,
    rationale: offered.rationale,
    source: offered.source,
    config: applyChanges(base, changes),
  };
}

// What the sandbox child expects of this module (sandbox/types.ts), checked here at compile time.
export const CHAIN_RULE_MODULE = { filterStep, chainProposal } satisfies ChainRuleModule;
