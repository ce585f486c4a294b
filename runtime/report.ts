// What a run did, read back from its store: `bilevel status` and the end-of-run summary.
// For every mechanism: did it fire, how often, what it changed, which kept trials it touched.
import { plot } from "asciichart";
import type { Config } from "../mechanism-api/index.d.ts";
import type { ResolvedRunConfig } from "./config.ts";
import { levelOfPurpose } from "./llm/run-llm.ts";
import { clock, type RunHistory, runHistory } from "./report/history.ts";
import { duration } from "./report/html.ts";
import { runLockHolder } from "./run-lock.ts";
import type { EventLevel, LlmUsageRow, MechanismStatus, RunStore, SearchConfig } from "./store.ts";
import { safeText } from "./terminal-text.ts";

export interface MechanismReport {
  readonly id: string;
  readonly name: string;
  readonly origin: string;
  readonly status: MechanismStatus;
  readonly reason: string | null;
  readonly activatedIteration: number | null;
  readonly calls: { readonly [hook: string]: number };
  /** Ledger outcomes by kind: suggested, rejected, modified, guided, fault, ... */
  readonly outcomes: { readonly [outcome: string]: number };
  /** Calls that ran to completion, whatever they returned (every outcome but a fault). */
  readonly fired: number;
  /** Calls that changed what the loop did (ACTING_OUTCOMES: suggested, rejected, modified, guided). */
  readonly acted: number;
  readonly keptTrialsTouched: readonly number[];
  readonly medianLatencyMs: number | null;
}

/** LLM use summed over exchanges (each one request; tokens as the server reported them). */
export interface LlmTotals {
  readonly requests: number;
  readonly failed: number;
  readonly promptTokens: number;
  readonly completionTokens: number;
  /** Part of the completion tokens (reasoning models). */
  readonly reasoningTokens: number;
  readonly latencyMs: number;
}

export interface LlmReport {
  /** The structured-output mode in use (stored; kept on resume). */
  readonly mode: string | null;
  readonly totals: LlmTotals;
  /** Per level: "1" proposals, "1.5" strategy, "2" research, "run" the preflight. */
  readonly byLevel: readonly ({ readonly level: EventLevel } & LlmTotals)[];
  /** Per Level 2 research session (by the iteration it ran after). */
  readonly sessions: readonly ({ readonly iteration: number } & LlmTotals)[];
  readonly budget: { readonly maxTokens: number | null; readonly usedTokens: number };
}

export interface RunReport {
  readonly dir: string;
  readonly name: string;
  readonly status: string;
  /** Why the run failed or stopped (its last "failed" or "stop" event), or null. */
  readonly statusReason: string | null;
  readonly mode: string;
  readonly iterationsPlanned: number;
  readonly iterationsDone: number;
  readonly trials: number;
  readonly kept: number;
  readonly failed: number;
  readonly baseline: { readonly mean: number; readonly sigma: number; readonly n: number } | null;
  readonly best: { readonly trialId: number; readonly valBpb: number; readonly config: Config } | null;
  readonly searchConfig: SearchConfig | null;
  readonly searchConfigChanges: number;
  readonly mechanisms: readonly MechanismReport[];
  readonly llmExchanges: number;
  /** Null for a run that never used an LLM. */
  readonly llm: LlmReport | null;
  /** Why the run stopped or failed, when it did not finish (e.g. the LLM failed persistently). */
  readonly events: { readonly level15: number; readonly level2: number };
  /** Sessions, downtime, iterations without a trial, Level 2 sessions, the trial in flight. */
  readonly history: RunHistory;
  /** Search trials in order: val_bpb (null when failed) and the best so far (baselines included). */
  readonly curve: readonly {
    readonly iteration: number;
    readonly valBpb: number | null;
    readonly best: number | null;
  }[];
}

/** Ledger outcomes that changed what the loop did (a guide text reaches the LLM proposer's prompt). */
export const ACTING_OUTCOMES: readonly string[] = ["suggested", "rejected", "modified", "guided"];
const ACTING = new Set(ACTING_OUTCOMES);
/** The ledger outcome of a call that faulted (the mechanism is quarantined); every other call fired. */
const FAULT = "fault";

function sum(rows: readonly LlmUsageRow[]): LlmTotals {
  const add = (f: (r: LlmUsageRow) => number) => rows.reduce((a, r) => a + f(r), 0);
  return {
    requests: add((r) => r.exchanges),
    failed: add((r) => r.failed),
    promptTokens: add((r) => r.promptTokens),
    completionTokens: add((r) => r.completionTokens),
    reasoningTokens: add((r) => r.reasoningTokens),
    latencyMs: add((r) => r.latencyMs),
  };
}

function llmReport(store: RunStore, maxTokens: number | null): LlmReport | null {
  const rows = store.llmUsage();
  if (rows.length === 0) return null;
  const levels: EventLevel[] = ["1", "1.5", "2", "run"];
  const byLevel = levels
    .map((level) => ({ level, ...sum(rows.filter((r) => levelOfPurpose(r.purpose) === level)) }))
    .filter((l) => l.requests > 0);
  const level2 = rows.filter((r) => levelOfPurpose(r.purpose) === "2");
  const sessions = [...new Set(level2.map((r) => r.iteration))].map((iteration) => ({
    iteration,
    ...sum(level2.filter((r) => r.iteration === iteration)),
  }));
  const totals = sum(rows);
  return {
    mode: store.getMeta("llm_mode") || null,
    totals,
    byLevel,
    sessions,
    budget: { maxTokens, usedTokens: totals.promptTokens + totals.completionTokens },
  };
}

function median(values: readonly number[]): number | null {
  if (values.length === 0) return null;
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

export function buildReport(store: RunStore): RunReport {
  const config = store.runConfig();
  const trials = store.trials();
  const ledger = store.ledger();
  const searchConfigs = store.searchConfigs();
  const keptIds = new Set(trials.filter((t) => t.kept).map((t) => t.id));
  let best: RunReport["best"] = null;
  for (const t of trials) {
    if (t.status === "ok" && t.valBpb !== null && (best === null || t.valBpb < best.valBpb)) {
      best = { trialId: t.id, valBpb: t.valBpb, config: t.config };
    }
  }
  const mechanisms = store.mechanisms().map((m): MechanismReport => {
    const rows = ledger.filter((l) => l.mechanismId === m.id);
    const calls: Record<string, number> = {};
    const outcomes: Record<string, number> = {};
    for (const r of rows) {
      calls[r.hook] = (calls[r.hook] ?? 0) + 1;
      outcomes[r.outcome] = (outcomes[r.outcome] ?? 0) + 1;
    }
    const touched = new Set(
      rows
        .filter((r) => ACTING.has(r.outcome) && r.trialId !== null && keptIds.has(r.trialId))
        .map((r) => r.trialId),
    );
    return {
      id: m.id,
      name: m.name,
      origin: m.origin,
      status: m.status,
      reason: m.reason,
      activatedIteration: m.activatedIteration,
      calls,
      outcomes,
      fired: rows.filter((r) => r.outcome !== FAULT).length,
      acted: rows.filter((r) => ACTING.has(r.outcome)).length,
      keptTrialsTouched: [...touched].filter((t): t is number => t !== null),
      medianLatencyMs: median(rows.map((r) => r.latencyMs)),
    };
  });
  const events = store.events();
  const noise = store.getMeta("noise");
  const status = runStatus(store, events);
  let bestSoFar: number | null = null;
  const curve: RunReport["curve"][number][] = [];
  for (const t of trials) {
    if (t.valBpb !== null && t.status === "ok" && (bestSoFar === null || t.valBpb < bestSoFar))
      bestSoFar = t.valBpb;
    if (t.kind === "search") curve.push({ iteration: t.iteration, valBpb: t.valBpb, best: bestSoFar });
  }
  return {
    dir: store.dir,
    name: config?.name ?? "?",
    ...status,
    mode: store.getMeta("mode") ?? "unknown",
    iterationsPlanned: config?.iterations ?? 0,
    iterationsDone: store.completedIterations(),
    trials: trials.length,
    kept: trials.filter((t) => t.kept).length,
    failed: trials.filter((t) => t.status !== "ok").length,
    baseline: noise ? (JSON.parse(noise) as RunReport["baseline"]) : null,
    best,
    searchConfig: searchConfigs.at(-1)?.config ?? null,
    searchConfigChanges: searchConfigs.length - 1,
    mechanisms,
    llmExchanges: store.llmUsage().reduce((n, r) => n + r.exchanges, 0),
    // A stored config from before the LLM settings (or a fixture) may have no llm section.
    llm: llmReport(
      store,
      (config?.llm as Partial<ResolvedRunConfig["llm"]> | undefined)?.maxTokensPerRun ?? null,
    ),
    events: {
      level15: events.filter((e) => e.level === "1.5").length,
      level2: events.filter((e) => e.level === "2").length,
    },
    history: runHistory(store, status.status === "running"),
    curve,
  };
}

/** The stored status; a "running" run that no live process holds was killed (its lock is stale). */
function runStatus(
  store: RunStore,
  events: ReturnType<RunStore["events"]>,
): { status: string; statusReason: string | null } {
  const status = store.getMeta("status") ?? "unknown";
  if (status === "running" && runLockHolder(store.dir) === null) {
    return {
      status: "interrupted",
      statusReason: "no process is running it: it was killed; continue with --resume",
    };
  }
  // The run's own account (a persistent LLM fault, a spent budget), else its last failed/stop event.
  const stored = store.getMeta("stop_reason") || null;
  const event = events.filter((e) => e.kind === "failed" || e.kind === "stop").at(-1)?.message ?? null;
  return { status, statusReason: stored ?? event };
}

const LEVEL_NAMES: Record<EventLevel, string> = {
  "1": "Level 1",
  "1.5": "Level 1.5",
  "2": "Level 2",
  run: "preflight",
};

function formatTotals(t: LlmTotals): string {
  const tokens = t.promptTokens + t.completionTokens;
  const reasoning = t.reasoningTokens > 0 ? `, reasoning ${t.reasoningTokens}` : "";
  // Faulty exchanges include those repaired or retried afterwards: the call may still have succeeded.
  const failed = t.failed > 0 ? ` (${t.failed} with a fault)` : "";
  return `${t.requests} request(s)${failed}, ${tokens} tokens (prompt ${t.promptTokens}, completion ${t.completionTokens}${reasoning}), ${(t.latencyMs / 1000).toFixed(1)} s`;
}

/** The LLM block of the report: mode, totals, per level, per research session, budget. */
export function formatLlm(llm: LlmReport | null): string[] {
  if (!llm) return ["  LLM: none used"];
  const budget =
    llm.budget.maxTokens === null ? "" : `; budget ${llm.budget.usedTokens}/${llm.budget.maxTokens} tokens`;
  return [
    `  LLM: structured output ${llm.mode ?? "n/a"}; ${formatTotals(llm.totals)}${budget}`,
    ...llm.byLevel.flatMap((l) => [
      `    ${LEVEL_NAMES[l.level]}: ${formatTotals(l)}`,
      ...(l.level === "2"
        ? llm.sessions.map((s) => `      research session after iteration ${s.iteration}: ${formatTotals(s)}`)
        : []),
    ]),
  ];
}

export function formatReport(r: RunReport): string {
  const lines = [
    `run ${r.name} (${r.dir})`,
    `  status ${r.status}, ${r.mode}${r.mode === "offline" ? " (no LLM endpoint: offline proposer, rule-based Level 1.5, Level 2 from the built-in library)" : ""}`,
    ...(r.statusReason && r.status !== "finished" && r.status !== "running"
      ? [`  why: ${r.statusReason}`]
      : []),
    ...timeLines(r),
    `  iterations ${r.iterationsDone}/${r.iterationsPlanned}${noTrialNote(r.history)}, trials ${r.trials} (kept ${r.kept}, failed ${r.failed})`,
    ...trialInFlight(r),
    `  baseline ${r.baseline ? `${r.baseline.mean.toFixed(4)} ± σ ${r.baseline.sigma.toFixed(4)} (n=${r.baseline.n})` : "n/a"}`,
    `  best ${r.best ? `${r.best.valBpb.toFixed(4)} (trial ${r.best.trialId})` : "n/a"}`,
    `  search config: ${r.searchConfig ? `${r.searchConfig.strategy}, frozen ${r.searchConfig.frozen.join(", ") || "none"}` : "n/a"} (${r.searchConfigChanges} Level 1.5 updates)`,
    ...formatLlm(r.llm),
    ...r.history.level2.map(
      (l) =>
        `  Level 2 session after iteration ${l.iteration}: ${l.outcome} at ${clock(l.atMs)}: ${l.message}`,
    ),
    `  mechanisms (${r.mechanisms.length}):`,
  ];
  if (r.mechanisms.length === 0) lines.push("    none");
  for (const m of r.mechanisms) {
    const calls = Object.entries(m.calls)
      .map(([h, n]) => `${h}×${n}`)
      .join(" ");
    const outcomes = Object.entries(m.outcomes)
      .map(([o, n]) => `${o} ${n}`)
      .join(", ");
    lines.push(
      `    ${m.id} [${m.origin}] ${m.status}${m.reason ? ` (${m.reason})` : ""}`,
      `      ${firing(m)}; calls: ${calls || "none"}; outcomes: ${outcomes || "none"}`,
      `      kept trials touched: ${m.keptTrialsTouched.length > 0 ? m.keptTrialsTouched.join(", ") : "none"}; median latency ${m.medianLatencyMs?.toFixed(2) ?? "n/a"} ms`,
    );
  }
  // Mechanism ids, names and reasons (thrown messages, LLM text) are foreign: each line is
  // neutralised whole, before the chart, which is the project's own.
  return [...lines.map((l) => safeText(l)), ...chart(r.curve)].join("\n");
}

/** When the run started, how and when it ended (or since when it runs), each session when resumed. */
function timeLines(r: RunReport): string[] {
  const h = r.history;
  const last = h.sessions.at(-1);
  if (h.startedMs === null || h.lastActivityMs === null || !last) return [];
  const lines = [`  started ${clock(h.startedMs)}, last activity ${clock(h.lastActivityMs)}`];
  if (r.status === "running") lines.push(`  running since ${clock(last.startMs)}`);
  else if (r.status === "interrupted" || last.end === "killed")
    lines.push(`  interrupted: killed; its last record is from ${clock(h.lastActivityMs)}`);
  else lines.push(`  ${r.status} at ${clock(last.endMs)}`);
  if (h.sessions.length > 1) {
    lines.push(
      `  sessions ${h.sessions.length} (resumed ${h.sessions.length - 1}×; no process ran it for ${duration(h.downtimeMs)} between them):`,
      ...h.sessions.map(
        (x, i) =>
          `    ${i + 1}. ${clock(x.startMs)} to ${clock(x.endMs)}: ${x.end}${x.reason ? ` (${x.reason})` : ""}`,
      ),
    );
  }
  return lines;
}

/** ", 2 without a trial: LLM failed (401) ×2 (iterations 1, 2; not redone on resume)", or "". */
export function noTrialNote(h: RunHistory): string {
  if (h.noTrial.length === 0) return "";
  const causes = new Map<string, number>();
  for (const n of h.noTrial) causes.set(n.cause, (causes.get(n.cause) ?? 0) + 1);
  const why = [...causes].map(([cause, n]) => `${cause} ×${n}`).join(", ");
  const which = h.noTrial.map((n) => n.iteration).join(", ");
  return `, ${h.noTrial.length} without a trial: ${why} (iterations ${which}; not redone on resume)`;
}

/** The trial a live run is training (or that a kill cut off), with since when. */
function trialInFlight(r: RunReport): string[] {
  const now = Date.now();
  return r.history.unfinishedTrials.map((t) => {
    const what = `trial #${t.trialId} (iteration ${t.iteration}, ${t.kind}: ${t.description})`;
    return r.status === "running"
      ? `  in flight: ${what} since ${clock(t.sinceMs)} (${duration(now - t.sinceMs)})`
      : `  cut off when the run was stopped: ${what}, started ${clock(t.sinceMs)}`;
  });
}

/** Whether a mechanism's hooks ran, and whether what they returned changed anything. */
function firing(m: MechanismReport): string {
  if (m.fired === 0) return "NEVER FIRED";
  return `fired ${m.fired}×, ${m.acted === 0 ? "never acted" : `acted ${m.acted}×`}`;
}

/**
 * val_bpb per scored search trial and the best so far, as an ASCII chart. Failed trials have no
 * score and are left out (asciichart cannot draw gaps: a NaN breaks its scale), and counted below.
 */
function chart(curve: RunReport["curve"]): string[] {
  const scored = curve.filter(
    (c): c is { iteration: number; valBpb: number; best: number } => c.valBpb !== null && c.best !== null,
  );
  if (scored.length < 2) return [];
  const series = [scored.map((c) => c.valBpb), scored.map((c) => c.best)];
  const failed = curve.length - scored.length;
  return [
    `  val_bpb of the ${scored.length} scored search trials, iterations ${scored[0]?.iteration}..${scored.at(-1)?.iteration}${failed > 0 ? ` (${failed} failed trial(s) not drawn)` : ""}; lower line: best so far:`,
    ...plot(series, { height: 8, format: (x: number) => x.toFixed(3).padStart(8) })
      .split("\n")
      .map((l) => `  ${l}`),
  ];
}
