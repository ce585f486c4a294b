// A run's page: summary, the search plot, mechanisms, Level 1.5 history, trials, LLM use, time.
// Every value from the store goes through the escaping builders in html.ts.
import type { Json } from "../../mechanism-api/index.d.ts";
import type { SearchConfigRow } from "../store.ts";
import { renderSvg, runChartSpec } from "./charts.ts";
import { clock } from "./history.ts";
import { duration, fmt, frag, type Html, h, longText, raw, table } from "./html.ts";
import type { ExchangeView, LlmUse, MechanismView, RunPageData, TimeSplit, TrialView } from "./run-data.ts";

export async function runBody(d: RunPageData): Promise<Html> {
  const svg = await renderSvg(runChartSpec(d.trials, d.markers));
  return frag(
    header(d),
    h(
      "section",
      { id: "plot" },
      h("h2", null, "Search progress"),
      h(
        "p",
        { class: "note" },
        `Every trial is a point (${d.trials.length}): square baseline, filled triangle kept, circle discarded, ` +
          "cross failed. The line is the best val_bpb so far. Below: where Level 1.5 acted and where " +
          "mechanisms were activated, quarantined or retired (also vertical rules above). Points above the " +
          "plot's range sit on its top edge. Hover a point for its trial; click it to find it in the table.",
      ),
      h("figure", { class: "chart", "data-points": d.trials.length }, raw(svg)),
    ),
    historySection(d),
    mechanismsSection(d.mechanisms, d.history.level2.length),
    level15Section(d.searchConfigs),
    trialsSection(d.trials),
    llmSection(d.llm),
    timeSection(d.time),
  );
}

function header(d: RunPageData): Html {
  const r = d.report;
  const improvement = r.baseline && r.best ? r.baseline.mean - r.best.valBpb : null;
  const tokens = d.llm.reduce((s, u) => s + u.promptTokens + u.completionTokens, 0);
  const card = (label: string, value: string, sub?: string) =>
    h(
      "div",
      { class: "card" },
      h("div", { class: "label" }, label),
      h("div", { class: "value" }, value),
      sub ? h("div", { class: "sub" }, sub) : null,
    );
  return frag(
    h(
      "header",
      null,
      h("h1", null, "Run ", h("span", { class: "name" }, r.name)),
      h("p", { class: "dir" }, r.dir),
      h("p", { class: "when" }, whenLine(d)),
    ),
    h(
      "div",
      { class: "cards" },
      r.status === "running"
        ? card("status", "running", `when this page was written at ${clock(d.writtenMs)}`)
        : card("status", r.status, r.status !== "finished" ? (r.statusReason ?? r.mode) : r.mode),
      card("iterations", `${r.iterationsDone} / ${r.iterationsPlanned}`),
      card("trials", String(r.trials), `${r.kept} kept · ${r.failed} failed`),
      card(
        "baseline",
        r.baseline ? fmt(r.baseline.mean) : "–",
        r.baseline ? `σ ${fmt(r.baseline.sigma)} · n=${r.baseline.n}` : undefined,
      ),
      card(
        "best val_bpb",
        r.best ? fmt(r.best.valBpb) : "–",
        r.best ? `trial #${r.best.trialId}` : undefined,
      ),
      card("improvement", improvement === null ? "–" : fmt(improvement), "baseline mean − best"),
      card(
        "mechanisms",
        String(d.mechanisms.length),
        `${d.mechanisms.filter((m) => m.status === "active").length} active`,
      ),
      card(
        "LLM",
        `${r.llmExchanges} calls`,
        tokens > 0 ? `${tokens.toLocaleString("en")} tokens` : "no token counts",
      ),
      card("wall time", duration(d.time.wallMs), `training ${pct(d.time.trainingMs, splitTotal(d.time))}`),
    ),
  );
}

const pct = (part: number, whole: number) => (whole > 0 ? `${Math.round((100 * part) / whole)}%` : "–");

/** What the split's shares are of: the wall time, or more when clock stamps undercount it. */
const splitTotal = (t: TimeSplit) =>
  Math.max(t.wallMs, t.trainingMs + t.llmMs + t.retryWaitMs + t.overheadMs);

/** When the page was written, when the run started, its last record, how and when it ended. */
function whenLine(d: RunPageData): string {
  const { history: h, report: r } = d;
  const written = `Page written ${clock(d.writtenMs)}.`;
  if (h.startedMs === null || h.lastActivityMs === null)
    return `${written} The run has recorded nothing yet.`;
  const last = h.sessions.at(-1);
  const end =
    r.status === "running"
      ? `Running when this page was written at ${clock(d.writtenMs)}.`
      : r.status === "interrupted" || last?.end === "killed"
        ? `Interrupted: killed after its last record (${clock(h.lastActivityMs)}).`
        : `${r.status[0]?.toUpperCase()}${r.status.slice(1)} at ${clock(last?.endMs ?? h.lastActivityMs)}.`;
  return `${written} Run started ${clock(h.startedMs)}; last activity ${clock(h.lastActivityMs)}. ${end}`;
}

const SESSION_END_TEXT: Readonly<Record<string, string>> = {
  finished: "finished",
  stopped: "stopped",
  failed: "failed",
  killed: "killed (no record of its end)",
  running: "running",
};

/** Sessions (each start or resume), the iterations that ended without a trial, Level 2 sessions. */
function historySection(d: RunPageData): Html {
  const h0 = d.history;
  const sessions = h0.sessions.map((x, i) => [
    String(i + 1),
    clock(x.startMs),
    clock(x.endMs),
    [{ class: `status s-${anchor(x.end)}` }, SESSION_END_TEXT[x.end] ?? x.end] as const,
    x.reason === null ? "–" : longText(x.reason, 160),
  ]);
  const live = d.report.status === "running";
  return h(
    "section",
    { id: "history" },
    h("h2", null, "Run history"),
    h(
      "p",
      { class: "note" },
      h0.sessions.length > 1
        ? `${h0.sessions.length} sessions (a start, then each resume); no process ran the run for ${duration(h0.downtimeMs)} between them.`
        : "One session: the run was not resumed.",
    ),
    table({ class: "grid sessions" }, ["session", "from", "to (last record)", "ended", "why"], sessions),
    h0.unfinishedTrials.map((t) =>
      h(
        "p",
        { class: live ? "note" : "note warn" },
        `${live ? "In flight" : "Cut off when the run was stopped"}: trial #${t.trialId} (iteration ${t.iteration}, ${t.kind}: ${t.description}), started ${clock(t.sinceMs)}.`,
      ),
    ),
    noTrialBlock(h0.noTrial),
    level2Block(h0.level2),
  );
}

function noTrialBlock(list: RunPageData["history"]["noTrial"]): Html | null {
  if (list.length === 0) return null;
  return frag(
    h("h3", null, `Iterations without a trial (${list.length})`),
    h(
      "p",
      { class: "note" },
      "These iterations are spent: a resume does not redo them, so the run has fewer search trials than iterations.",
    ),
    table(
      { class: "grid no-trial" },
      ["iteration", "cause", "what the run recorded"],
      list.map((n) => [String(n.iteration), h("span", { class: "warn" }, n.cause), longText(n.detail, 160)]),
    ),
  );
}

function level2Block(list: RunPageData["history"]["level2"]): Html | null {
  if (list.length === 0) return null;
  return frag(
    h("h3", null, `Level 2 research sessions (${list.length})`),
    table(
      { class: "grid level2-sessions" },
      ["after iteration", "outcome", "at", "what the run recorded"],
      list.map((l) => [
        String(l.iteration),
        l.outcome === "failed" || l.outcome === "unfinished"
          ? h("span", { class: "warn" }, l.outcome)
          : l.outcome,
        clock(l.atMs),
        longText(l.message, 160),
      ]),
    ),
  );
}

function mechanismsSection(list: readonly MechanismView[], level2Sessions: number): Html {
  if (list.length === 0)
    return h(
      "section",
      { id: "mechanisms" },
      h("h2", null, "Mechanisms"),
      h(
        "p",
        { class: "note" },
        "No mechanism was loaded, generated or picked in this run",
        level2Sessions > 0
          ? frag(
              ` (${level2Sessions} Level 2 research session(s): see `,
              h("a", { href: "#history" }, "Run history"),
              ")",
            )
          : null,
        ".",
      ),
    );
  const rows = list.map((m) => [
    h("a", { href: `#mech-${anchor(m.id)}` }, m.name),
    m.origin,
    [
      { class: `status s-${anchor(m.status)}` },
      frag(m.status, m.reason ? h("div", { class: "sub" }, longText(m.reason, 120)) : null),
    ] as const,
    lifecycle(m),
    hookTable(m),
    m.acted === 0 ? h("span", { class: "warn" }, "never") : `${m.acted}×`,
    m.keptTrialsTouched.length === 0 ? "none" : m.keptTrialsTouched.map((id) => `#${id}`).join(" "),
    m.medianLatencyMs === null ? "–" : `${m.medianLatencyMs.toFixed(2)} ms`,
  ]);
  return h(
    "section",
    { id: "mechanisms" },
    h("h2", null, "Mechanisms"),
    h(
      "div",
      { class: "scroll-x" },
      table(
        { class: "grid inventory" },
        [
          "name",
          "origin",
          "status",
          "compiled · validated · activated",
          "hook calls → outcomes",
          "acted",
          "kept trials touched",
          "median hook latency",
        ],
        rows,
      ),
    ),
    list.map(mechanismDetails),
  );
}

/** Compiled, validated, activated: one line each, a mark and a word (no colour needed). */
function lifecycle(m: MechanismView): Html {
  const mark = (v: boolean | null) => (v === null ? "–" : v ? "✓" : "✗");
  return h(
    "ul",
    { class: "hooks" },
    h("li", null, `${mark(m.compiled)} compiled`),
    h("li", null, `${mark(m.validated)} validated${m.validated === null ? " (no report stored)" : ""}`),
    h(
      "li",
      null,
      m.activatedIteration === null
        ? "✗ never activated"
        : `✓ activated at iteration ${m.activatedIteration}`,
    ),
  );
}

export const anchor = (s: string) => s.replace(/[^A-Za-z0-9_-]/g, "_");

function hookTable(m: MechanismView): Html {
  if (m.hooks.length === 0) return h("span", { class: "sub" }, "no calls");
  return h(
    "ul",
    { class: "hooks" },
    m.hooks.map((u) =>
      h(
        "li",
        null,
        h("b", null, `${u.hook} ×${u.calls}`),
        " ",
        Object.entries(u.outcomes)
          .map(([o, n]) => `${o} ${n}`)
          .join(", "),
      ),
    ),
  );
}

function mechanismDetails(m: MechanismView): Html {
  const designed = m.designName && m.designName !== m.name ? ` (designed as ${m.designName})` : "";
  return h(
    "div",
    { class: "mech", id: `mech-${anchor(m.id)}` },
    h(
      "h3",
      null,
      m.name,
      h(
        "span",
        { class: "sub" },
        ` ${m.id} · ${m.origin}${designed} · created at iteration ${m.createdIteration}`,
      ),
    ),
    h(
      "details",
      { id: `src-${anchor(m.id)}` },
      h("summary", null, `source (${m.source.split("\n").length} lines)`),
      h("pre", { class: "code" }, m.source),
    ),
    h(
      "details",
      { id: `session-${anchor(m.id)}` },
      h(
        "summary",
        null,
        m.session.length > 0 ? `research session (${m.session.length} LLM exchanges)` : "research session",
      ),
      m.session.length === 0
        ? h(
            "p",
            { class: "note" },
            m.origin === "generated"
              ? "No LLM exchange of this session was stored."
              : `No research session: this mechanism came from ${m.origin === "library" ? "the built-in library" : "a file"}.`,
          )
        : frag(designSummary(m.design), m.session.map(exchangeDetails)),
    ),
  );
}

/** The design record's candidates and the critique's pick, when the session stored one. */
function designSummary(design: Json | null): Html | null {
  if (design === null || typeof design !== "object" || Array.isArray(design)) return null;
  const d = design as {
    candidates?: { name?: unknown; idea?: unknown }[];
    critique?: { selected?: unknown };
  };
  const names = Array.isArray(d.candidates) ? d.candidates.map((c) => String(c?.name ?? "?")) : [];
  if (names.length === 0) return null;
  return h("p", null, `Candidates: ${names.join(", ")}. Selected: ${String(d.critique?.selected ?? "?")}.`);
}

const STEP: Readonly<Record<string, string>> = {
  "level2.explore": "explore",
  "level2.critique": "critique",
  "level2.specify": "specify",
  "level2.generate": "generate",
  "level2.repair": "repair",
};

function exchangeDetails(e: ExchangeView): Html {
  const tokens =
    e.promptTokens === null && e.completionTokens === null
      ? "tokens n/a"
      : `${e.promptTokens ?? "?"} + ${e.completionTokens ?? "?"} tokens`;
  return h(
    "details",
    { class: "exchange", id: `x-${e.id}` },
    h(
      "summary",
      null,
      h("b", null, STEP[e.purpose] ?? e.purpose),
      ` · ${e.model} · ${tokens} · ${duration(e.latencyMs)}`,
      e.error ? h("span", { class: "warn" }, ` · error: ${e.error}`) : null,
    ),
    e.messages.map((m) => frag(h("div", { class: "role" }, m.role), h("pre", { class: "msg" }, m.content))),
    h("div", { class: "role" }, "reply"),
    h("pre", { class: "msg" }, e.reply ?? "(none)"),
  );
}

function level15Section(configs: readonly SearchConfigRow[]): Html {
  const rows = configs.map((c) => [
    c.iteration === 0 ? "start" : String(c.iteration),
    c.source,
    c.config.strategy,
    String(c.config.active.length),
    c.config.frozen.join(", ") || "none",
    longText(c.rationale || "–", 200),
  ]);
  return h(
    "section",
    { id: "level15" },
    h("h2", null, "Level 1.5: search settings over time"),
    rows.length === 0
      ? h("p", { class: "note" }, "No search settings were stored yet.")
      : table(
          { class: "grid level15" },
          ["iteration", "by", "strategy", "active", "frozen", "rationale"],
          rows,
        ),
  );
}

const OUTCOME_TEXT: Readonly<Record<string, string>> = {
  baseline: "■ baseline",
  kept: "▲ kept",
  discarded: "○ discarded",
  failed: "✕ failed",
};

/** One row of the trials table; its id (t-N) is where a click on the plot's point leads. */
function trialRow(t: TrialView): Html {
  const delta = t.delta === null ? null : `Δ ${t.delta >= 0 ? "+" : ""}${t.delta.toFixed(4)}`;
  const touched =
    t.touchedBy.length === 0
      ? "–"
      : t.touchedBy.map((m) =>
          h("div", null, h("a", { href: `#mech-${anchor(m.id)}` }, m.id), ` ${m.outcome}`),
        );
  return h(
    "tr",
    { id: `t-${t.id}`, "data-outcome": t.outcome, "data-touched": t.touchedBy.length > 0 ? "1" : "0" },
    h("td", { class: "num" }, `#${t.id}`),
    h("td", { class: "num" }, t.iteration),
    h(
      "td",
      { class: `o-${t.outcome}` },
      OUTCOME_TEXT[t.outcome] ?? t.outcome,
      t.outcome === "failed" ? h("div", { class: "sub" }, t.status) : null,
    ),
    h("td", { class: "num" }, fmt(t.valBpb), delta === null ? null : h("div", { class: "sub" }, delta)),
    h("td", null, longText(t.description, 140)),
    h(
      "td",
      null,
      t.rationale === null ? "–" : longText(t.rationale, 140),
      t.proposer ? h("div", { class: "sub" }, `by ${t.proposer}`) : null,
    ),
    h("td", null, touched),
    h("td", null, longText(t.message, 100)),
    h("td", { class: "num" }, duration(t.durationMs)),
  );
}

const TRIAL_FILTERS = [
  ["all", "all trials"],
  ["kept", "kept"],
  ["discarded", "discarded"],
  ["failed", "failed"],
  ["baseline", "baselines"],
  ["touched", "touched by a mechanism"],
] as const;

const TRIAL_COLUMNS = [
  "trial",
  "iter.",
  "result",
  "val_bpb",
  "changes",
  "rationale",
  "mechanisms",
  "verdict",
  "time",
];

function trialsSection(trials: readonly TrialView[]): Html {
  return h(
    "section",
    { id: "trials" },
    h("h2", null, `Trials (${trials.length})`),
    h(
      "div",
      { class: "filter" },
      h("label", { for: "trial-filter" }, "show "),
      h(
        "select",
        { id: "trial-filter" },
        TRIAL_FILTERS.map(([v, l]) => h("option", { value: v }, l)),
      ),
    ),
    h(
      "div",
      { class: "scroll" },
      h(
        "table",
        { class: "grid trials" },
        h(
          "thead",
          null,
          h(
            "tr",
            null,
            TRIAL_COLUMNS.map((c) => h("th", { scope: "col" }, c)),
          ),
        ),
        h("tbody", null, trials.map(trialRow)),
      ),
    ),
  );
}

function llmSection(uses: readonly LlmUse[]): Html {
  if (uses.length === 0)
    return h(
      "section",
      { id: "llm" },
      h("h2", null, "LLM use"),
      h("p", { class: "note" }, "No LLM exchange was recorded (an offline run, or none yet)."),
    );
  const tokens = (u: LlmUse, n: number) => (u.tokensKnown ? n.toLocaleString("en") : "n/a");
  const rows = uses.map((u) => [
    u.purpose,
    String(u.calls),
    u.errors > 0 ? h("span", { class: "warn" }, String(u.errors)) : "0",
    tokens(u, u.promptTokens),
    tokens(u, u.completionTokens),
    u.medianLatencyMs === null ? "–" : duration(u.medianLatencyMs),
    u.maxLatencyMs === null ? "–" : duration(u.maxLatencyMs),
    duration(u.totalLatencyMs),
  ]);
  return h(
    "section",
    { id: "llm" },
    h("h2", null, "LLM use"),
    table(
      { class: "grid" },
      [
        "purpose",
        "calls",
        "errors",
        "prompt tokens",
        "completion tokens",
        "median latency",
        "max latency",
        "total latency",
      ],
      rows,
    ),
  );
}

function timeSection(t: TimeSplit): Html {
  const total = Math.max(splitTotal(t), 1);
  const part = (cls: string, label: string, ms: number) =>
    ms <= 0
      ? null
      : h(
          "div",
          {
            class: `bar ${cls}`,
            style: `width:${((100 * ms) / total).toFixed(2)}%`,
            title: `${label}: ${duration(ms)}`,
          },
          `${label} ${pct(ms, total)}`,
        );
  return h(
    "section",
    { id: "time" },
    h("h2", null, "Where the time went"),
    h(
      "div",
      { class: "bars" },
      part("train", "training", t.trainingMs),
      part("llm", "LLM", t.llmMs),
      part("wait", "LLM retry waits", t.retryWaitMs),
      part("over", "overhead", t.overheadMs),
    ),
    h(
      "ul",
      { class: "note time-lines" },
      h("li", null, `wall ${duration(t.wallMs)}: while a process ran the run (${t.sessions} session(s))`),
      h(
        "li",
        null,
        `training ${duration(t.trainingMs)} (trial durations; a trial cut off counts to its session's end)`,
      ),
      h("li", null, `LLM ${duration(t.llmMs)} (exchange latencies)`),
      h(
        "li",
        null,
        `LLM retry waits ${duration(t.retryWaitMs)} (backoff and Retry-After between a failed request and its retry)`,
      ),
      h("li", null, `overhead ${duration(t.overheadMs)} (the rest: sandbox, bookkeeping, process start-up)`),
      h(
        "li",
        null,
        `no process running ${duration(t.downtimeMs)} (between a stop or kill and the resume; not in the wall time)`,
      ),
    ),
  );
}
