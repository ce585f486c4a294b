// What happened to a run over time, read from its store's timestamps: when it started, each session
// (a start or resume to its last record) and how it ended, the gaps when no process ran it, the
// iterations that ended without a trial and why, each Level 2 session's outcome, the trial in flight.
// `status`, the report page and "where the time went" all read it, so they tell one story.
import { existsSync, readdirSync, statSync } from "node:fs";
import path from "node:path";
import { faultOf } from "../llm/chat-json.ts";
import type { LlmErrorCode } from "../llm/client.ts";
import type { JobRow, RunStore } from "../store.ts";

/** How a session ended: by the run's own record, or "killed" (no record), or still "running". */
export type SessionEnd = "finished" | "stopped" | "failed" | "killed" | "running";

export interface RunSession {
  readonly startMs: number;
  /** Its last record (for a session that is running: the last record so far). */
  readonly endMs: number;
  readonly end: SessionEnd;
  /** The run's own account of the end (a stop's or failure's message), or null. */
  readonly reason: string | null;
}

export interface NoTrialIteration {
  readonly iteration: number;
  /** Short and groupable: "LLM failed (401)", "invalid proposal", ... */
  readonly cause: string;
  /** The event that says why, whole. */
  readonly detail: string;
}

export type Level2Outcome =
  | "activated"
  | "pending-approval"
  | "rejected"
  | "quarantined"
  | "no mechanism"
  | "failed"
  | "unfinished";

export interface Level2Session {
  readonly iteration: number;
  readonly atMs: number;
  readonly outcome: Level2Outcome;
  readonly message: string;
}

export interface InFlightTrial {
  readonly trialId: number;
  readonly iteration: number;
  readonly kind: string;
  readonly description: string;
  /** When it started running (or was handed to its executor). */
  readonly sinceMs: number;
}

export interface RunHistory {
  readonly startedMs: number | null;
  /** The newest record of any kind (a killed run's trainer log counts: its store has no end). */
  readonly lastActivityMs: number | null;
  readonly sessions: readonly RunSession[];
  /** Time between sessions, when no process was running the run. */
  readonly downtimeMs: number;
  readonly noTrial: readonly NoTrialIteration[];
  readonly level2: readonly Level2Session[];
  /** Trials handed to an executor and not stored: in flight (a live run) or cut off (a killed one). */
  readonly unfinishedTrials: readonly InFlightTrial[];
}

type StoredEvent = ReturnType<RunStore["events"]>[number];

const END_KINDS: Readonly<Record<string, SessionEnd>> = {
  finish: "finished",
  stop: "stopped",
  failed: "failed",
  "llm-failed": "failed",
};

/** `live`: a process holds the run now (its last session is still going). */
export function runHistory(store: RunStore, live: boolean): RunHistory {
  const events = store.events();
  const jobs = store.jobs();
  const unfinished = jobs.filter((j) => j.state === "submitted" || j.state === "running");
  const stamps = [
    ...events.map((e) => Date.parse(e.createdAt)),
    // A resume's preflight is stored just before the event that opens its session: it belongs there.
    ...store
      .exchangeTimes()
      .filter((e) => e.purpose !== "preflight")
      .map((e) => Date.parse(e.createdAt)),
    ...jobs.flatMap((j) => [j.submittedMs, j.startedMs, j.endedMs, j.recordedMs]),
    ...unfinished.map((j) => newestFileMs(trialFolder(store.dir, j.workDir))),
  ].filter((t): t is number => t !== null && Number.isFinite(t));
  const sessions = splitSessions(events, stamps, live);
  const created = Date.parse(store.getMeta("created_at") ?? "");
  return {
    startedMs: Number.isFinite(created) ? created : (sessions[0]?.startMs ?? null),
    lastActivityMs: stamps.length > 0 ? Math.max(...stamps) : null,
    sessions,
    downtimeMs: sessions.slice(1).reduce((s, x, i) => s + Math.max(0, x.startMs - sessions[i]!.endMs), 0),
    noTrial: noTrialIterations(events),
    level2: level2Sessions(events, live),
    unfinishedTrials: unfinished.map(inFlight),
  };
}

/**
 * Sessions open at a start or resume event, or at the LLM check (and key warning) its process
 * wrote just before; each runs to the last stamp before the next one opens.
 */
function splitSessions(
  events: readonly StoredEvent[],
  stamps: readonly number[],
  live: boolean,
): RunSession[] {
  const openers: { at: number; index: number }[] = [];
  events.forEach((e, i) => {
    if (e.level !== "run" || (e.kind !== "start" && e.kind !== "resume")) return;
    let first = i;
    while (first > 0 && isPreflight(events[first - 1] as StoredEvent)) first--;
    openers.push({ at: Date.parse((events[first] as StoredEvent).createdAt), index: i });
  });
  if (openers.length === 0 && stamps.length > 0) openers.push({ at: Math.min(...stamps), index: 0 });
  return openers.map((o, k) => {
    const next = openers[k + 1];
    const until = next?.at ?? Number.POSITIVE_INFINITY;
    const inside = stamps.filter((t) => t >= o.at && t < until);
    const mine = events.slice(o.index, next?.index ?? events.length);
    const ending = [...mine].reverse().find((e) => e.level === "run" && END_KINDS[e.kind] !== undefined);
    // A failure's own message says more than the "stop" that follows it.
    const failure = mine.find((e) => e.level === "run" && (e.kind === "llm-failed" || e.kind === "failed"));
    const end: SessionEnd = failure
      ? "failed"
      : ending
        ? (END_KINDS[ending.kind] as SessionEnd)
        : next === undefined && live
          ? "running"
          : "killed";
    return {
      startMs: o.at,
      endMs: inside.length > 0 ? Math.max(...inside) : o.at,
      end,
      reason: end === "killed" || end === "running" ? null : ((failure ?? ending)?.message ?? null),
    };
  });
}

const isPreflight = (e: StoredEvent) => e.level === "run" && (e.kind === "llm-check" || e.kind === "warning");

/**
 * Where a trial ran, or its folder in this run folder when that is gone (a moved run keeps its
 * files' times; a plain copy's are new, so the original is read while it exists).
 */
function trialFolder(runDir: string, workDir: string): string {
  return existsSync(workDir) ? workDir : path.join(runDir, "trials", path.basename(workDir));
}

/** The newest file in a trial's folder (its trainer log grows while it trains), or null. */
function newestFileMs(dir: string): number | null {
  try {
    const times = readdirSync(dir).map((f) => statSync(path.join(dir, f)).mtimeMs);
    return times.length > 0 ? Math.max(...times) : null;
  } catch {
    return null; // a cluster job's folder may be elsewhere, or gone
  }
}

/** Why each iteration stored no trial: the last Level 1 event of that iteration before its "no-trial". */
function noTrialIterations(events: readonly StoredEvent[]): NoTrialIteration[] {
  const out: NoTrialIteration[] = [];
  events.forEach((e, i) => {
    if (e.level !== "1" || e.kind !== "no-trial") return;
    const why = events
      .slice(0, i)
      .reverse()
      .find((x) => x.level === "1" && x.iteration === e.iteration && x.kind !== "no-trial");
    out.push({ iteration: e.iteration, cause: causeOf(why), detail: why?.message ?? e.message });
  });
  return out;
}

function causeOf(e: StoredEvent | undefined): string {
  if (!e) return "no proposal";
  // The proposer's reason reads "LLM <code>: <message>"; an HTTP failure's message starts with its status.
  const llm = /\bLLM ([a-z-]+): ?(\d{3})?/.exec(e.message);
  if (!llm) return e.kind.replaceAll("-", " ");
  const code = llm[1] === "http" && llm[2] ? llm[2] : (llm[1] ?? "");
  // By the error's code, not the event's kind: stores before llm-call-failed logged both as invalid.
  return faultOf(llm[1] as LlmErrorCode) === "call" ? `LLM failed (${code})` : `invalid proposal (${code})`;
}

const LEVEL2_OUTCOMES: Readonly<Record<string, Level2Outcome>> = {
  activated: "activated",
  "pending-approval": "pending-approval",
  rejected: "rejected",
  quarantined: "quarantined",
  none: "no mechanism",
};

/** Each research session with the outcome its iteration recorded after it. */
function level2Sessions(events: readonly StoredEvent[], live: boolean): Level2Session[] {
  const out: Level2Session[] = [];
  events.forEach((e, i) => {
    if (e.level !== "2" || e.kind !== "session") return;
    const result = events
      .slice(i + 1)
      .find((x) => x.level === "2" && x.iteration === e.iteration && LEVEL2_OUTCOMES[x.kind] !== undefined);
    const later = events
      .slice(i + 1)
      .some((x) => x.level === "run" && (x.kind === "start" || x.kind === "resume"));
    let outcome: Level2Outcome = result ? (LEVEL2_OUTCOMES[result.kind] as Level2Outcome) : "unfinished";
    // An LLM error ended the session before it produced anything.
    if (outcome === "no mechanism" && result?.message.includes("research session stopped"))
      outcome = "failed";
    out.push({
      iteration: e.iteration,
      atMs: Date.parse((result ?? e).createdAt),
      outcome,
      message:
        result?.message ??
        (live && !later ? "research session in progress" : "the run stopped before the session ended"),
    });
  });
  return out;
}

function inFlight(j: JobRow): InFlightTrial {
  return {
    trialId: j.trialId,
    iteration: j.iteration,
    kind: j.kind,
    description: j.description,
    sinceMs: j.startedMs ?? j.submittedMs,
  };
}

/** A stored time as people read it: "2026-11-30 16:09:40 UTC". */
export function clock(ms: number): string {
  return `${new Date(ms).toISOString().slice(0, 19).replace("T", " ")} UTC`;
}
