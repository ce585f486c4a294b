// What a mechanism did, call by call, in `mechanism test --verbose` (text) and `--trace FILE` (JSON
// lines, one event each). The hook events are recorded at the sandbox boundary (recordingSandbox):
// a summary of what each call was given and exactly what it returned and logged; the
// trials come from the seed's store. So the trace is what happened, not a reconstruction.
import type { Change, HookName, Json, Proposal, Trial } from "../mechanism-api/index.d.ts";
import type { HookCall, HookContextData, HookOutcome, SandboxError } from "../sandbox/types.ts";
import type { SandboxLike } from "./mechanisms.ts";
import type { LedgerRow, TrialRow } from "./store.ts";
import { safeText } from "./terminal-text.ts";

export const TRACE_FORMAT = "bilevel-mechanism-trace/1";

/** What a hook was given, summarised: the context's scores and sizes, and its argument. */
export interface HookInput {
  readonly incumbent: number | null;
  readonly best: number | null;
  readonly history: number;
  readonly frozen: readonly string[];
  /** filter: the proposal it was asked about. */
  readonly proposal?: { readonly changes: readonly Change[]; readonly source: Proposal["source"] };
  /** observe: the trial it was told about. */
  readonly trial?: Pick<Trial, "id" | "status" | "valBpb" | "kept" | "delta" | "changes">;
  /** The state the call started from. */
  readonly state: Json;
}

export type TraceEvent =
  | { readonly type: "start"; readonly format: typeof TRACE_FORMAT; readonly seed: number }
  | {
      readonly type: "validation";
      readonly seed: number;
      readonly ok: boolean;
      readonly error: SandboxError | null;
    }
  | {
      readonly type: "hook";
      readonly seed: number;
      readonly iteration: number;
      readonly hook: HookName;
      readonly mechanism: string;
      readonly input: HookInput;
      readonly ok: boolean;
      /** The hook's return value (guide: the full text; init: the initial state). */
      readonly result?: Json;
      readonly error?: SandboxError;
      /** ctx.log lines, and how many were dropped over policy.maxLogLines. */
      readonly logs: readonly string[];
      readonly droppedLogLines: number;
      readonly capabilityCalls: number;
      /** The state after the call. */
      readonly state?: Json;
      readonly durationMs: number;
    }
  | {
      /** A suggestion or modify the host ignored as invalid, and why (read back from the run's ledger). */
      readonly type: "ignored";
      readonly seed: number;
      readonly iteration: number;
      readonly hook: "suggest" | "filter";
      readonly mechanism: string;
      readonly outcome: "invalid-suggestion" | "invalid-modification";
      readonly changes: readonly Change[];
      readonly errors: readonly string[];
    }
  | {
      readonly type: "trial";
      readonly seed: number;
      readonly iteration: number;
      readonly id: number;
      readonly kind: TrialRow["kind"];
      readonly status: Trial["status"];
      readonly valBpb: number | null;
      readonly kept: boolean;
      readonly changes: readonly Change[];
    };

type HookEvent = Extract<TraceEvent, { type: "hook" }>;

function inputOf(context: HookContextData, state: Json, argument: Proposal | Trial | undefined): HookInput {
  const base = {
    incumbent: context.incumbent.valBpb,
    best: context.best?.valBpb ?? null,
    history: context.history.length,
    frozen: context.params.filter((p) => p.frozen).map((p) => p.name),
    state,
  };
  if (argument === undefined) return base;
  if ("source" in argument)
    return { ...base, proposal: { changes: argument.changes, source: argument.source } };
  const { id, status, valBpb, kept, delta, changes } = argument;
  return { ...base, trial: { id, status, valBpb, kept, delta, changes } };
}

function hookEvent(
  seed: number,
  names: ReadonlyMap<string, string>,
  call: Pick<HookCall, "mechanismId" | "hook" | "context" | "state" | "argument">,
  outcome: HookOutcome,
): HookEvent {
  const common = {
    type: "hook" as const,
    seed,
    iteration: call.context.iteration,
    hook: call.hook,
    mechanism: names.get(call.mechanismId) ?? call.mechanismId,
    input: inputOf(call.context, call.state, call.argument),
    durationMs: Number(outcome.durationMs.toFixed(2)),
  };
  if (!outcome.ok)
    return { ...common, ok: false, error: outcome.error, logs: [], droppedLogLines: 0, capabilityCalls: 0 };
  return {
    ...common,
    ok: true,
    result: outcome.result.value as Json,
    logs: outcome.logs,
    droppedLogLines: outcome.droppedLogLines,
    capabilityCalls: outcome.capabilityCalls,
    state: outcome.state,
  };
}

/**
 * `sandbox` with every validation and hook call reported to `emit` as it completes. A batch's
 * later filters see the proposal as the filters before them left it: their input names the batch's
 * (first) proposal only when they are first.
 */
export function recordingSandbox(
  sandbox: SandboxLike,
  seed: number,
  emit: (event: TraceEvent) => void,
): SandboxLike {
  const names = new Map<string, string>();
  const recorder: SandboxLike = {
    compile: (source, fileName) => sandbox.compile(source, fileName),
    load: async (id, mechanism) => {
      names.set(id, mechanism.manifest.name);
      return sandbox.load(id, mechanism);
    },
    unload: (id) => sandbox.unload(id),
    validate: async (source, trace, fileName) => {
      const report = await sandbox.validate(source, trace, fileName);
      emit({ type: "validation", seed, ok: report.ok, error: report.error });
      return report;
    },
    call: async (call) => {
      const outcome = await sandbox.call(call);
      emit(hookEvent(seed, names, call, outcome));
      return outcome;
    },
  };
  const batched = sandbox.callBatch?.bind(sandbox);
  if (batched) {
    recorder.callBatch = async (batch) => {
      const outcomes = await batched(batch);
      outcomes?.forEach((outcome, i) => {
        const c = batch.calls[i]!;
        const argument = i === 0 || batch.chain === undefined ? batch.argument : undefined;
        const call = { mechanismId: c.mechanismId, hook: batch.hook, context: batch.context, state: c.state };
        emit(hookEvent(seed, names, argument === undefined ? call : { ...call, argument }, outcome));
      });
      return outcomes;
    };
  }
  return recorder;
}

/** Where an event falls in its iteration: hooks in the loop's order, the trial before observe (baselines: before all). */
const PHASE: Readonly<Record<HookName | "trial", number>> = {
  init: 0,
  guide: 1,
  suggest: 2,
  filter: 3,
  trial: 4,
  observe: 5,
};

const IGNORED: ReadonlySet<string> = new Set(["invalid-suggestion", "invalid-modification"]);

/** The ledger's ignored suggestions and modifications, with the host's reasons. */
function ignoredEvents(
  seed: number,
  ledger: readonly LedgerRow[],
  names: ReadonlyMap<string, string>,
): TraceEvent[] {
  return ledger
    .filter((l) => IGNORED.has(l.outcome) && (l.hook === "suggest" || l.hook === "filter"))
    .map((l) => {
      const detail = (l.detail ?? {}) as { changes?: Change[]; errors?: string[] };
      return {
        type: "ignored",
        seed,
        iteration: l.iteration,
        hook: l.hook as "suggest" | "filter",
        mechanism: names.get(l.mechanismId) ?? l.mechanismId,
        outcome: l.outcome as "invalid-suggestion" | "invalid-modification",
        changes: Array.isArray(detail.changes) ? detail.changes : [],
        errors: Array.isArray(detail.errors) ? detail.errors.map(String) : [],
      };
    });
}

/**
 * One seed's events in the order they happened: the recorded hook calls, the host's verdicts on
 * invalid suggestions and modifications (from the ledger) and the store's trials, merged by iteration.
 */
export function seedEvents(
  seed: number,
  recorded: readonly TraceEvent[],
  trials: readonly TrialRow[],
  ledger: readonly LedgerRow[] = [],
  names: ReadonlyMap<string, string> = new Map(),
): TraceEvent[] {
  const trialEvents: TraceEvent[] = trials.map((t) => ({
    type: "trial",
    seed,
    iteration: t.iteration,
    id: t.id,
    kind: t.kind,
    status: t.status,
    valBpb: t.valBpb,
    kept: t.kept,
    changes: t.changes,
  }));
  // The baselines train first, then the start mechanism is validated on their trace and initialised.
  const key = (e: TraceEvent): [number, number] => {
    if (e.type === "hook" || e.type === "ignored") return [e.iteration, PHASE[e.hook]];
    if (e.type === "trial") return [e.iteration, e.kind === "baseline" ? -2 : PHASE.trial];
    return [0, -1];
  };
  // A stable sort keeps the calls of one phase (a filter rejected and asked again) in their order.
  const body = [...recorded, ...ignoredEvents(seed, ledger, names), ...trialEvents].sort((a, b) => {
    const [ia, pa] = key(a);
    const [ib, pb] = key(b);
    return ia - ib || pa - pb;
  });
  return [{ type: "start", format: TRACE_FORMAT, seed }, ...body];
}

const score = (x: number | null): string => (x === null ? "-" : x.toFixed(4));

/** `PARAM=value`, and `(from previous)` for changes the host handed over (what a mechanism returns has no previous). */
function changesText(changes: readonly Change[], handed = false): string {
  if (changes.length === 0) return "(no changes)";
  return changes
    .map((c) => `${c.param}=${c.value}${handed && c.previous !== undefined ? ` (from ${c.previous})` : ""}`)
    .join(" ");
}

function inputText(input: HookInput): string {
  const parts = [
    `incumbent ${score(input.incumbent)}`,
    `best ${score(input.best)}`,
    `history ${input.history}`,
  ];
  if (input.frozen.length > 0) parts.push(`frozen ${input.frozen.join(",")}`);
  if (input.proposal)
    parts.push(`proposal ${changesText(input.proposal.changes, true)} (${input.proposal.source})`);
  if (input.trial) {
    const t = input.trial;
    parts.push(`trial #${t.id} ${t.status} ${score(t.valBpb)}${t.kept ? " kept" : ""}`);
  }
  return parts.join("; ");
}

function resultText(e: HookEvent): string {
  if (!e.ok) {
    const at = e.error?.line !== undefined ? ` at ${e.error.line}:${e.error.column ?? 1}` : "";
    return `FAULT ${e.error?.code}${at}: ${e.error?.message}`;
  }
  const v = e.result as { verdict?: string; reason?: string; changes?: Change[]; rationale?: string } | null;
  switch (e.hook) {
    case "guide":
      return v === null || v === undefined ? "no text" : "text (below)";
    case "suggest":
      return v === null || v === undefined
        ? "nothing"
        : `suggests ${changesText(v.changes ?? [])}: ${v.rationale}`;
    case "filter":
      if (v?.verdict === "reject") return `reject: ${v.reason}`;
      if (v?.verdict === "modify") return `modify to ${changesText(v.changes ?? [])}: ${v.reason}`;
      return "accept";
    default:
      return "ok";
  }
}

/** The text of `mechanism test --verbose`: one block per iteration, foreign text neutralised. */
export function formatEvents(events: readonly TraceEvent[]): string {
  const out: string[] = [];
  let iteration = Number.NaN;
  const long = { maxLength: 100_000 };
  for (const e of events) {
    if (e.type === "start") out.push(`seed ${e.seed}`);
    else if (e.type === "validation")
      out.push(
        `  validated on the live trace: ${e.ok ? "ok" : `REJECTED ${e.error?.code}: ${e.error?.message}`}`,
      );
    else {
      if (e.iteration !== iteration) out.push(`  iteration ${e.iteration}`);
      iteration = e.iteration;
      if (e.type === "ignored") {
        out.push(
          `    ${e.hook.padEnd(7)} IGNORED (${e.outcome}) ${changesText(e.changes)} from ${e.mechanism}: ${e.errors.join("; ")}`,
        );
        continue;
      }
      if (e.type === "trial") {
        const what = e.kind === "baseline" ? "baseline" : `trial #${e.id}`;
        out.push(
          `    ${what}: ${changesText(e.changes, true)} → ${e.status} ${score(e.valBpb)}${e.kept ? " kept" : ""}`,
        );
        continue;
      }
      out.push(`    ${e.hook.padEnd(7)} ${inputText(e.input)}`, `            → ${resultText(e)}`);
      for (const line of e.logs) out.push(`            log: ${line}`);
      if (e.droppedLogLines > 0) out.push(`            (${e.droppedLogLines} log lines dropped)`);
      if (e.hook === "guide" && typeof e.result === "string")
        out.push(...e.result.split("\n").map((l) => `            | ${safeText(l, long)}`));
      if (e.ok) out.push(`            state ${safeText(JSON.stringify(e.state), { maxLength: 200 })}`);
    }
  }
  return `${out.map((l) => (l.startsWith("            | ") ? l : safeText(l, long))).join("\n")}\n`;
}
