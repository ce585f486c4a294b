// Everything a run's page shows, read back from its store in one pass. buildReport (runtime/report.ts)
// gives the summary and the per-mechanism ledger counts `status` prints; this adds what only a page
// has room for: every trial with its rationale and the mechanisms that touched it, the markers on
// the plot, each mechanism's code and research session, LLM usage and where the time went.
import type { HookName, Json } from "../../mechanism-api/index.d.ts";
import { ACTING_OUTCOMES, buildReport, type RunReport } from "../report.ts";
import type { LedgerRow, MechanismRow, RunStore, SearchConfigRow, TrialRow } from "../store.ts";
import type { RunHistory } from "./history.ts";

export type Outcome = "baseline" | "kept" | "discarded" | "failed";

export interface TrialView {
  readonly id: number;
  readonly iteration: number;
  readonly outcome: Outcome;
  readonly status: string;
  readonly valBpb: number | null;
  readonly delta: number | null;
  /** The best val_bpb so far after this trial (baselines included). */
  readonly best: number | null;
  readonly description: string;
  readonly rationale: string | null;
  /** Who proposed it: offline, llm, mechanism, ... (null for baselines). */
  readonly proposer: string | null;
  /** Mechanisms whose hook calls shaped this trial, with what they did (suggested, modified, ...). */
  readonly touchedBy: readonly { readonly id: string; readonly outcome: string }[];
  readonly durationMs: number;
  readonly message: string;
}

export type MarkerKind = "adjusted" | "unchanged" | "activated" | "quarantined" | "retired";

export interface Marker {
  readonly iteration: number;
  readonly lane: "Level 1.5" | "mechanisms";
  readonly kind: MarkerKind;
  /** The mechanism's id for mechanism markers; "" for Level 1.5. */
  readonly subject: string;
  readonly message: string;
}

export interface ExchangeView {
  readonly id: number;
  readonly iteration: number;
  readonly purpose: string;
  readonly model: string;
  readonly promptTokens: number | null;
  readonly completionTokens: number | null;
  readonly latencyMs: number;
  readonly error: string | null;
  readonly messages: readonly { readonly role: string; readonly content: string }[];
  readonly reply: string | null;
}

export interface HookUse {
  readonly hook: HookName;
  readonly calls: number;
  readonly outcomes: Readonly<Record<string, number>>;
}

export interface MechanismView {
  readonly id: string;
  readonly name: string;
  readonly designName: string | null;
  readonly origin: string;
  readonly status: string;
  readonly reason: string | null;
  readonly compiled: boolean;
  /** The sandbox validation's verdict; null when none was stored. */
  readonly validated: boolean | null;
  readonly createdIteration: number;
  readonly activatedIteration: number | null;
  readonly hooks: readonly HookUse[];
  /** Calls that changed what the loop did (ACTING_OUTCOMES). */
  readonly acted: number;
  readonly keptTrialsTouched: readonly number[];
  readonly medianLatencyMs: number | null;
  readonly source: string;
  /** The Level 2 research session that produced it (level2.* exchanges of its iteration), oldest first. */
  readonly session: readonly ExchangeView[];
  /** The session's design record (candidates, critique, spec) from its "research" event, if any. */
  readonly design: Json | null;
}

export interface LlmUse {
  readonly purpose: string;
  readonly calls: number;
  readonly errors: number;
  readonly promptTokens: number;
  readonly completionTokens: number;
  /** Whether any exchange of this purpose reported token counts. */
  readonly tokensKnown: boolean;
  readonly totalLatencyMs: number;
  readonly medianLatencyMs: number | null;
  readonly maxLatencyMs: number | null;
}

export interface TimeSplit {
  /** Wall time a process was running the run: the sum of its sessions (start or resume to its last record). */
  readonly wallMs: number;
  /** Trial durations, and the time a trial cut off by a kill (or still training) ran. */
  readonly trainingMs: number;
  readonly llmMs: number;
  /** Waits between a failed LLM request and its retry (backoff, Retry-After). */
  readonly retryWaitMs: number;
  /** The rest: sandbox, bookkeeping, process start-up. Never negative. */
  readonly overheadMs: number;
  /** Between sessions, when no process ran the run (a stop or kill to the resume): not in wallMs. */
  readonly downtimeMs: number;
  readonly sessions: number;
}

export interface RunPageData {
  readonly report: RunReport;
  readonly trials: readonly TrialView[];
  readonly markers: readonly Marker[];
  readonly mechanisms: readonly MechanismView[];
  readonly searchConfigs: readonly SearchConfigRow[];
  readonly llm: readonly LlmUse[];
  readonly time: TimeSplit;
  readonly history: RunHistory;
  /** When the page's data was read (the page says it was written then). */
  readonly writtenMs: number;
}

const ACTING = new Set(ACTING_OUTCOMES);

export function median(values: readonly number[]): number | null {
  if (values.length === 0) return null;
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

export function loadRunPageData(store: RunStore): RunPageData {
  const trials = store.trials();
  const ledger = store.ledger();
  const events = store.events();
  const stored = store.exchanges();
  const exchanges = stored.map(exchangeView);
  const report = buildReport(store);
  return {
    report,
    trials: trialViews(trials, store, ledger),
    markers: markers(events),
    mechanisms: store.mechanisms().map((m) => mechanismView(m, ledger, trials, exchanges, events)),
    searchConfigs: store.searchConfigs(),
    llm: llmUse(exchanges),
    time: timeSplit(report.history, trials, stored),
    history: report.history,
    writtenMs: Date.now(),
  };
}

function outcomeOf(t: TrialRow): Outcome {
  if (t.status !== "ok") return "failed";
  if (t.kind === "baseline") return "baseline";
  return t.kept ? "kept" : "discarded";
}

function trialViews(trials: readonly TrialRow[], store: RunStore, ledger: readonly LedgerRow[]): TrialView[] {
  const proposals = new Map(store.proposals().map((p) => [p.id, p]));
  const touched = new Map<number, { id: string; outcome: string }[]>();
  for (const l of ledger) {
    if (l.trialId === null || !ACTING.has(l.outcome)) continue;
    const list = touched.get(l.trialId) ?? [];
    if (!list.some((x) => x.id === l.mechanismId && x.outcome === l.outcome))
      list.push({ id: l.mechanismId, outcome: l.outcome });
    touched.set(l.trialId, list);
  }
  let best: number | null = null;
  return trials.map((t): TrialView => {
    if (t.status === "ok" && t.valBpb !== null && (best === null || t.valBpb < best)) best = t.valBpb;
    const proposal = t.proposalId === null ? undefined : proposals.get(t.proposalId);
    return {
      id: t.id,
      iteration: t.iteration,
      outcome: outcomeOf(t),
      status: t.status,
      valBpb: t.valBpb,
      delta: t.delta,
      best,
      description: t.description,
      rationale: proposal?.rationale ?? null,
      proposer: proposal ? proposal.source : null,
      touchedBy: touched.get(t.id) ?? [],
      durationMs: t.durationMs,
      message: t.message,
    };
  });
}

const MARKER_KINDS: Readonly<Record<string, MarkerKind>> = {
  adjusted: "adjusted",
  unchanged: "unchanged",
  "no-change": "unchanged",
  activated: "activated",
  quarantined: "quarantined",
  retired: "retired",
};

function markers(events: ReturnType<RunStore["events"]>): Marker[] {
  const out: Marker[] = [];
  for (const e of events) {
    const kind = MARKER_KINDS[e.kind];
    if (kind === undefined) continue;
    if (e.level === "1.5" && (kind === "adjusted" || kind === "unchanged")) {
      out.push({ iteration: e.iteration, lane: "Level 1.5", kind, subject: "", message: e.message });
    } else if (e.level === "2" && kind !== "adjusted" && kind !== "unchanged") {
      const id = (e.data as { id?: unknown } | null)?.id;
      out.push({
        iteration: e.iteration,
        lane: "mechanisms",
        kind,
        subject: typeof id === "string" ? id : "",
        message: e.message,
      });
    }
  }
  return out;
}

function exchangeView(e: ReturnType<RunStore["exchanges"]>[number]): ExchangeView {
  const messages = Array.isArray(e.messages)
    ? e.messages.map((m) => {
        const r = (m ?? {}) as { role?: unknown; content?: unknown };
        return {
          role: typeof r.role === "string" ? r.role : "?",
          content: typeof r.content === "string" ? r.content : JSON.stringify(r.content ?? null),
        };
      })
    : [{ role: "?", content: JSON.stringify(e.messages) }];
  return {
    id: e.id,
    iteration: e.iteration,
    purpose: e.purpose,
    model: e.model,
    promptTokens: e.promptTokens,
    completionTokens: e.completionTokens,
    latencyMs: e.latencyMs,
    error: e.error,
    messages,
    reply: e.reply,
  };
}

function mechanismView(
  m: MechanismRow,
  ledger: readonly LedgerRow[],
  trials: readonly TrialRow[],
  exchanges: readonly ExchangeView[],
  events: ReturnType<RunStore["events"]>,
): MechanismView {
  const rows = ledger.filter((l) => l.mechanismId === m.id);
  const hooks = new Map<HookName, { calls: number; outcomes: Record<string, number> }>();
  for (const r of rows) {
    const use = hooks.get(r.hook) ?? { calls: 0, outcomes: {} };
    use.calls++;
    use.outcomes[r.outcome] = (use.outcomes[r.outcome] ?? 0) + 1;
    hooks.set(r.hook, use);
  }
  const kept = new Set(trials.filter((t) => t.kept).map((t) => t.id));
  const touched = new Set<number>();
  for (const r of rows)
    if (ACTING.has(r.outcome) && r.trialId !== null && kept.has(r.trialId)) touched.add(r.trialId);
  // A research session records its exchanges and its design at the iteration the mechanism was created.
  const generated = m.origin === "generated";
  const design = events.find(
    (e) => e.level === "2" && e.kind === "research" && e.iteration === m.createdIteration,
  );
  return {
    id: m.id,
    name: m.name,
    designName: m.designName,
    origin: m.origin,
    status: m.status,
    reason: m.reason,
    compiled: m.js !== null,
    validated: m.validation === null ? null : m.validation.ok,
    createdIteration: m.createdIteration,
    activatedIteration: m.activatedIteration,
    hooks: [...hooks.entries()].map(([hook, use]) => ({ hook, ...use })),
    acted: rows.filter((r) => ACTING.has(r.outcome)).length,
    keptTrialsTouched: [...touched].sort((a, b) => a - b),
    medianLatencyMs: median(rows.map((r) => r.latencyMs)),
    source: m.source,
    session: generated
      ? exchanges.filter((e) => e.iteration === m.createdIteration && e.purpose.startsWith("level2."))
      : [],
    design: generated ? (design?.data ?? null) : null,
  };
}

function llmUse(exchanges: readonly ExchangeView[]): LlmUse[] {
  const byPurpose = new Map<string, ExchangeView[]>();
  for (const e of exchanges) byPurpose.set(e.purpose, [...(byPurpose.get(e.purpose) ?? []), e]);
  return [...byPurpose.entries()].map(([purpose, list]) => {
    const latencies = list.map((e) => e.latencyMs);
    return {
      purpose,
      calls: list.length,
      errors: list.filter((e) => e.error !== null).length,
      promptTokens: list.reduce((s, e) => s + (e.promptTokens ?? 0), 0),
      completionTokens: list.reduce((s, e) => s + (e.completionTokens ?? 0), 0),
      tokensKnown: list.some((e) => e.promptTokens !== null || e.completionTokens !== null),
      totalLatencyMs: latencies.reduce((s, x) => s + x, 0),
      medianLatencyMs: median(latencies),
      maxLatencyMs: latencies.length > 0 ? Math.max(...latencies) : null,
    };
  });
}

/** What timeSplit reads of an exchange: when it ended, how long it took, what for, whether it failed. */
export interface TimedExchange {
  readonly iteration: number;
  readonly purpose: string;
  readonly latencyMs: number;
  readonly createdAt: string;
  readonly error: string | null;
}

/**
 * Wall time is summed over the run's sessions (history.ts), so the hours a stopped run sat idle
 * before its resume are downtime, not overhead. A trial cut off by a kill (or still training)
 * counts as training up to its session's end; the wait between a failed LLM request and its retry
 * (backoff, Retry-After) is its own share.
 */
export function timeSplit(
  history: Pick<RunHistory, "sessions" | "downtimeMs" | "unfinishedTrials">,
  trials: readonly { readonly durationMs: number }[],
  exchanges: readonly TimedExchange[],
): TimeSplit {
  const { sessions } = history;
  const wallMs = sessions.reduce((s, x) => s + (x.endMs - x.startMs), 0);
  const lastEnd = sessions.at(-1)?.endMs ?? 0;
  const cutOff = history.unfinishedTrials.reduce((s, t) => s + Math.max(0, lastEnd - t.sinceMs), 0);
  const trainingMs = trials.reduce((s, t) => s + t.durationMs, 0) + cutOff;
  const llmMs = exchanges.reduce((s, e) => s + e.latencyMs, 0);
  const retryWaitMs = retryWaits(exchanges, sessions);
  return {
    wallMs,
    trainingMs,
    llmMs,
    retryWaitMs,
    overheadMs: Math.max(0, wallMs - trainingMs - llmMs - retryWaitMs),
    downtimeMs: history.downtimeMs,
    sessions: sessions.length,
  };
}

/** Gaps between a failed exchange and the next one of the same purpose and iteration, in one session. */
function retryWaits(exchanges: readonly TimedExchange[], sessions: RunHistory["sessions"]): number {
  const sessionOf = (ms: number) => sessions.findLastIndex((x) => x.startMs <= ms);
  let total = 0;
  exchanges.forEach((e, i) => {
    const prev = exchanges[i - 1];
    if (!prev || prev.error === null || prev.purpose !== e.purpose || prev.iteration !== e.iteration) return;
    const prevEnd = Date.parse(prev.createdAt);
    const start = Date.parse(e.createdAt) - e.latencyMs;
    if (start > prevEnd && sessionOf(start) === sessionOf(prevEnd)) total += start - prevEnd;
  });
  return total;
}
