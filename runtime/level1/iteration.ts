// One Level 1 iteration up to the trial: guide -> suggest -> propose -> filter chain. No storage:
// it returns what happened (proposals, hook calls, faults, events) and the loop stores it;
// `mechanism test` runs the same loop on the synthetic objective, so both exercise this code.
import type { Change, Config, HookName, Json, ParamSpec, Proposal } from "../../mechanism-api/index.d.ts";
import type { HookContextData, HookOutcome, HookResult } from "../../sandbox/types.ts";
import { checkConstraints } from "../../trainer/constraints.ts";
import { applyChanges, checkChanges, describeChanges, effectiveChanges, withPrevious } from "../changes.ts";
import type { ActiveMechanism, FaultReport, HookReport, MechanismManager } from "../mechanisms.ts";
import type { SearchConfig, TrialRow } from "../store.ts";
import { chainProposal, type FilterStep, filterStep } from "./filter-chain.ts";
import type { PendingTrial, Proposer } from "./proposer.ts";

export interface IterationSettings {
  readonly maxChanges: number;
  readonly maxFilterRejections: number;
  readonly seed: number;
}

export interface IterationInput {
  readonly iteration: number;
  /** What mechanisms see: params (frozen flagged), incumbent, best, history window. */
  readonly context: HookContextData;
  readonly params: readonly ParamSpec[];
  readonly search: SearchConfig;
  /** Recent search trials for the proposer, oldest first. */
  readonly history: readonly TrialRow[];
  readonly crashLessons: readonly string[];
  /** Trials in flight (run --parallel), for the proposer. */
  readonly pending?: readonly PendingTrial[];
  readonly settings: IterationSettings;
  readonly signal?: AbortSignal;
}

/** One proposal of the iteration, in order (the filters' verdict included). */
export interface ProposalRecord {
  readonly attempt: number;
  readonly source: Proposal["source"];
  readonly mechanismId: string | null;
  readonly changes: readonly Change[];
  readonly rationale: string;
  readonly config: Config | null;
  /** llm-failed: the LLM call failed (an endpoint, network or key fault), so no proposal came. */
  readonly status: "accepted" | "rejected" | "invalid" | "llm-failed";
  readonly reason: string | null;
}

/** One hook call and what the loop made of it; `proposal` indexes `proposals` (null: not tied to one). */
export interface HookRecord {
  readonly mechanism: ActiveMechanism;
  readonly hook: HookName;
  readonly outcome: HookOutcome;
  readonly label: string;
  readonly detail: Json;
  readonly proposal: number | null;
}

export interface IterationEvent {
  readonly kind: string;
  readonly message: string;
}

export interface IterationOutcome {
  readonly proposals: readonly ProposalRecord[];
  /** Index of the proposal to train, or null (every proposal rejected, or none valid). */
  readonly accepted: number | null;
  readonly hooks: readonly HookRecord[];
  /** Hook calls that faulted (the mechanisms are detached already); `proposal` as in HookRecord. */
  readonly faults: readonly { readonly fault: FaultReport; readonly proposal: number | null }[];
  readonly events: readonly IterationEvent[];
  /** Guide texts handed to the proposer. */
  readonly guidance: readonly { readonly mechanism: string; readonly text: string }[];
  readonly aborted: boolean;
}

interface Suggestion {
  readonly mechanism: ActiveMechanism;
  readonly outcome: HookOutcome;
  readonly changes: Change[];
  readonly rationale: string;
}

/** Mutable collector for one iteration. */
class Recorder {
  readonly proposals: ProposalRecord[] = [];
  readonly hooks: HookRecord[] = [];
  readonly faults: { fault: FaultReport; proposal: number | null }[] = [];
  readonly events: IterationEvent[] = [];
  hook(
    mechanism: ActiveMechanism,
    hook: HookName,
    outcome: HookOutcome,
    label: string,
    detail: Json,
    proposal: number | null = null,
  ): void {
    this.hooks.push({ mechanism, hook, outcome, label, detail, proposal });
  }
  event(kind: string, message: string): void {
    this.events.push({ kind, message });
  }
  fault(fault: FaultReport, proposal: number | null = null): void {
    this.faults.push({ fault, proposal });
  }
}

/**
 * Run guide, suggest, the proposer and the filter chain. A mechanism that faults is detached by
 * `mechanisms` and reported in `faults`; everything comes back as data for the caller to store.
 */
export async function proposeIteration(
  input: IterationInput,
  mechanisms: MechanismManager,
  proposer: Proposer,
): Promise<IterationOutcome> {
  const rec = new Recorder();
  const guidance = await collectGuidance(input, mechanisms, rec);
  const suggestion = await collectSuggestion(input, mechanisms, rec);
  const rejected: { changes: readonly Change[]; reason: string }[] = [];
  let accepted: number | null = null;
  let aborted = false;
  const max = input.settings.maxFilterRejections;
  for (let attempt = 0; attempt <= max && accepted === null; attempt++) {
    if (input.signal?.aborted) {
      aborted = true;
      break;
    }
    const offered =
      suggestion !== null && attempt === 0
        ? fromSuggestion(input, suggestion, rec)
        : await fromProposer(input, proposer, guidance, rejected, attempt, rec);
    if (offered === null) break;
    const verdict = await filterChain(input, mechanisms, offered, rec);
    if (verdict.status === "rejected") {
      rejected.push({ changes: verdict.record.changes, reason: verdict.reason });
      rec.event(
        "rejected",
        `${verdict.by} rejected ${describeChanges(input.context.incumbent.config, verdict.record.changes)}: ${verdict.reason}`,
      );
    } else {
      accepted = rec.proposals.length - 1;
    }
  }
  if (accepted === null && rejected.length > max) {
    rec.event(
      "all-rejected",
      `every proposal of iteration ${input.iteration} was rejected by a filter: no trial`,
    );
  }
  const { proposals, hooks, faults, events } = rec;
  return { proposals, accepted, hooks, faults, events, guidance, aborted };
}

async function collectGuidance(
  input: IterationInput,
  mechanisms: MechanismManager,
  rec: Recorder,
): Promise<{ mechanism: string; text: string }[]> {
  const guidance: { mechanism: string; text: string }[] = [];
  for await (const r of mechanisms.callAll("guide", input.context)) {
    if (!r.ok) {
      rec.fault(r);
      continue;
    }
    const text = r.result.value;
    // The sandbox bounds guide text (guideTextSchema in mechanism-api/schemas.ts); it reaches the proposer whole.
    if (text !== null && text.trim() !== "") guidance.push({ mechanism: r.mechanism.name, text });
    rec.hook(r.mechanism, "guide", r.outcome, text ? "guided" : "silent", { text: text ?? null });
  }
  return guidance;
}

async function collectSuggestion(
  input: IterationInput,
  mechanisms: MechanismManager,
  rec: Recorder,
): Promise<Suggestion | null> {
  let suggestion: Suggestion | null = null;
  for await (const r of mechanisms.callAll("suggest", input.context)) {
    if (!r.ok) {
      rec.fault(r);
      continue;
    }
    const value = r.result.value;
    if (value === null || suggestion !== null) {
      const detail: Json = value ? { changes: value.changes as unknown as Json } : {};
      rec.hook(r.mechanism, "suggest", r.outcome, value ? "overridden" : "silent", detail);
      continue;
    }
    const changes = effectiveChanges(input.context.incumbent.config, value.changes);
    // Level 1.5's frozen set binds mechanisms too: the search config is the outer levels' lever.
    const errors = checkChanges(changes, input.params, {
      active: input.search.active,
      base: input.context.incumbent.config,
    });
    if (errors.length > 0) {
      rec.hook(r.mechanism, "suggest", r.outcome, "invalid-suggestion", {
        changes: value.changes as unknown as Json,
        errors,
      });
      continue;
    }
    suggestion = { mechanism: r.mechanism, outcome: r.outcome, changes, rationale: value.rationale };
  }
  return suggestion;
}

interface Offered {
  readonly attempt: number;
  readonly source: Proposal["source"];
  readonly mechanismId: string | null;
  readonly changes: Change[];
  readonly rationale: string;
  /** Records the suggest ledger row, which points at this proposal (its index). */
  readonly onRecorded?: (index: number) => void;
}

function fromSuggestion(input: IterationInput, s: Suggestion, rec: Recorder): Offered {
  rec.event(
    "suggested",
    `${s.mechanism.name} suggested ${describeChanges(input.context.incumbent.config, s.changes)}`,
  );
  return {
    attempt: 0,
    source: "mechanism",
    mechanismId: s.mechanism.id,
    changes: s.changes,
    rationale: s.rationale,
    onRecorded: (index) =>
      rec.hook(
        s.mechanism,
        "suggest",
        s.outcome,
        "suggested",
        { changes: s.changes as unknown as Json, rationale: s.rationale },
        index,
      ),
  };
}

async function fromProposer(
  input: IterationInput,
  proposer: Proposer,
  guidance: readonly { mechanism: string; text: string }[],
  rejected: readonly { changes: readonly Change[]; reason: string }[],
  attempt: number,
  rec: Recorder,
): Promise<Offered | null> {
  const { context, settings } = input;
  const result = await proposer.propose({
    iteration: input.iteration,
    params: input.params,
    search: input.search,
    incumbent: context.incumbent,
    best: context.best,
    history: input.history,
    crashLessons: input.crashLessons,
    guidance,
    rejected,
    ...(input.pending && input.pending.length > 0 ? { pending: input.pending } : {}),
    maxChanges: settings.maxChanges,
    seed: settings.seed,
    attempt,
  });
  if (!result.ok) {
    const callFailed = result.fault === "call";
    rec.proposals.push({
      attempt,
      source: proposer.kind,
      mechanismId: null,
      changes: [],
      rationale: "",
      config: null,
      status: callFailed ? "llm-failed" : "invalid",
      reason: result.reason,
    });
    if (callFailed) rec.event("llm-call-failed", `no proposal: the LLM call failed (${result.reason})`);
    else rec.event("invalid-proposal", `invalid proposal: ${result.reason}`);
    return null;
  }
  return {
    attempt,
    source: proposer.kind,
    mechanismId: null,
    changes: [...result.changes],
    rationale: result.rationale,
  };
}

type Verdict =
  | { readonly status: "accepted"; readonly record: ProposalRecord }
  | {
      readonly status: "rejected";
      readonly record: ProposalRecord;
      readonly reason: string;
      readonly by: string;
    };

/** A filter step that lets the proposal go on (accepted, modified, or an invalid modification that is ignored), recorded. */
function recordStep(
  r: HookReport<Extract<HookResult, { hook: "filter" }>>,
  step: Exclude<FilterStep, { kind: "rejected" }>,
  base: Config,
  index: number,
  rec: Recorder,
): void {
  if (step.kind === "accepted") {
    rec.hook(r.mechanism, "filter", r.outcome, "accepted", {}, index);
    return;
  }
  if (step.kind === "invalid-modification") {
    const detail = { errors: step.errors, changes: step.proposed as unknown as Json };
    rec.hook(r.mechanism, "filter", r.outcome, "invalid-modification", detail, index);
    return;
  }
  rec.event(
    "modified",
    `${r.mechanism.name} modified the proposal: ${describeChanges(base, step.from)} => ${describeChanges(base, step.changes)} (${step.reason})`,
  );
  const detail = {
    from: step.from as unknown as Json,
    to: step.changes as unknown as Json,
    reason: step.reason,
  };
  rec.hook(r.mechanism, "filter", r.outcome, "modified", detail, index);
}

/** Each active filter may accept, reject or modify, in activation order; each sees the proposal as the filters before it left it. */
async function filterChain(
  input: IterationInput,
  mechanisms: MechanismManager,
  offered: Offered,
  rec: Recorder,
): Promise<Verdict> {
  const base = input.context.incumbent.config;
  const index = rec.proposals.length;
  offered.onRecorded?.(index);
  // Recorded with the value each change replaces (Change.previous), whoever proposed it.
  let changes: readonly Change[] = withPrevious(base, offered.changes);
  let rejection: { reason: string; by: string } | null = null;
  const rule = { base, active: input.search.active };
  const first = chainProposal(offered, base, changes);
  for await (const r of mechanisms.callFilters(input.context, first, rule)) {
    if (!r.ok) {
      rec.fault(r, index);
      continue;
    }
    // The same rule the sandbox child applied between the calls, replayed here for the record.
    const step = filterStep(r.result.value, changes, rule, input.params);
    if (step.kind === "rejected") {
      rejection = { reason: step.reason, by: r.mechanism.name };
      rec.hook(
        r.mechanism,
        "filter",
        r.outcome,
        "rejected",
        { reason: step.reason, changes: changes as unknown as Json },
        index,
      );
      break;
    }
    recordStep(r, step, base, index, rec);
    changes = step.changes;
  }
  // Declared constraints (e.g. a batch size that must divide evenly) bind every proposer: a
  // proposal that breaks one is refused here, with the reason, and never reaches the trainer.
  const broken = rejection ? [] : checkConstraints(input.params, applyChanges(base, changes));
  if (broken.length > 0) rejection = { reason: broken.join("; "), by: "constraints" };
  const record: ProposalRecord = {
    attempt: offered.attempt,
    source: offered.source,
    mechanismId: offered.mechanismId,
    changes,
    rationale: offered.rationale,
    config: applyChanges(base, changes),
    status: rejection ? "rejected" : "accepted",
    reason: rejection ? `${rejection.by}: ${rejection.reason}` : null,
  };
  rec.proposals.push(record);
  return rejection ? { status: "rejected", record, ...rejection } : { status: "accepted", record };
}
