// A study's page: the group table with its statistics, every run's running minimum (thin), each
// group's mean with its 95% CI band (thick), and the per-run table. Built from StudyData only.
import { CHART_CONFIG, type ChartSpec, renderSvg } from "./charts.ts";
import { duration, fmt, frag, type Html, h, raw, table } from "./html.ts";
import type { CurvePoint, StudyComparison, StudyData, StudyGroup, StudyRun, Summary } from "./study-data.ts";
import { t95 } from "./study-data.ts";

export interface BandPoint {
  readonly iteration: number;
  readonly n: number;
  readonly mean: number;
  readonly low: number;
  readonly high: number;
}

/** A run's best at `iteration` (its running minimum carried forward); null before its first point or past its last. */
function valueAt(curve: readonly CurvePoint[], iteration: number): number | null {
  const last = curve.at(-1);
  if (!last || iteration > last.iteration) return null;
  let value: number | null = null;
  for (const p of curve) {
    if (p.iteration > iteration) break;
    value = p.best;
  }
  return value;
}

/**
 * The group's mean running minimum at every iteration any of its runs reached, with the t 95% CI of
 * that mean across the runs still going there (no band where only one run is).
 */
export function meanBand(curves: readonly (readonly CurvePoint[])[]): BandPoint[] {
  const iterations = [...new Set(curves.flatMap((c) => c.map((p) => p.iteration)))].sort((a, b) => a - b);
  const out: BandPoint[] = [];
  for (const it of iterations) {
    const xs = curves.map((c) => valueAt(c, it)).filter((v): v is number => v !== null);
    if (xs.length === 0) continue;
    const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
    const sd = xs.length > 1 ? Math.sqrt(xs.reduce((s, x) => s + (x - mean) ** 2, 0) / (xs.length - 1)) : 0;
    const half = xs.length > 1 ? (t95(xs.length - 1) * sd) / Math.sqrt(xs.length) : 0;
    out.push({ iteration: it, n: xs.length, mean, low: mean - half, high: mean + half });
  }
  return out;
}

const PALETTE = ["#0b5cad", "#d95f02", "#1b9e77", "#7570b3", "#a6761d", "#e7298a", "#666666", "#66a61e"];
const DASHES = [
  [1, 0],
  [8, 4],
  [2, 3],
  [10, 3, 2, 3],
  [4, 4],
  [12, 2],
  [1, 4],
  [6, 2, 1, 2],
];

/** The chart's rows: every run's curve points, and each group's mean and band, labelled by group. */
function studyChartData(d: StudyData) {
  const label = (id: string) => {
    const g = d.groups.find((x) => x.id === id);
    return g && g.label !== g.id ? `${g.id}: ${g.label}` : id;
  };
  const runs = d.runs.flatMap((r) =>
    r.curve.map((p) => ({ run: `${r.group}#${r.repeat} ${r.dir}`, group: label(r.group), ...p })),
  );
  const bands = d.groups.flatMap((g) =>
    meanBand(d.runs.filter((r) => r.group === g.id).map((r) => r.curve)).map((b) => ({
      ...b,
      group: label(g.id),
    })),
  );
  return { runs, bands, domain: d.groups.map((g) => label(g.id)) };
}

/** Colour and dash both encode the group (one merged legend, drawn as line samples). */
function groupEncoding(domain: readonly string[], channel: "color" | "dash"): ChartSpec {
  return {
    field: "group",
    type: "nominal",
    title: "group",
    legend: {
      symbolType: "stroke",
      symbolOpacity: 1,
      symbolStrokeWidth: 3,
      symbolSize: 400,
      labelLimit: 500,
    },
    scale: { domain, range: (channel === "color" ? PALETTE : DASHES).slice(0, domain.length) },
  };
}

export function studyChartSpec(d: StudyData): ChartSpec {
  const { runs, bands, domain } = studyChartData(d);
  const color = groupEncoding(domain, "color");
  const strokeDash = groupEncoding(domain, "dash");
  const x = {
    field: "iteration",
    type: "quantitative",
    title: "iteration",
    axis: { tickMinStep: 1, format: "d" },
  };
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    config: CHART_CONFIG,
    width: 1080,
    height: 380,
    layer: [
      {
        data: { values: bands.filter((b) => b.n > 1) },
        mark: { type: "area", opacity: 0.14, interpolate: "step-after" },
        encoding: { x, y: { field: "low", type: "quantitative" }, y2: { field: "high" }, color },
      },
      {
        name: "runs",
        data: { values: runs },
        mark: { type: "line", strokeWidth: 1, opacity: 0.45, interpolate: "step-after" },
        encoding: {
          x,
          y: { field: "best", type: "quantitative" },
          detail: { field: "run" },
          color,
          strokeDash,
        },
      },
      {
        name: "means",
        data: { values: bands },
        mark: { type: "line", strokeWidth: 3.5, interpolate: "step-after" },
        encoding: {
          x,
          y: { field: "mean", type: "quantitative", title: "best val_bpb so far", scale: { zero: false } },
          color,
          strokeDash,
        },
      },
    ],
  };
}

export async function studyBody(d: StudyData): Promise<Html> {
  const svg = await renderSvg(studyChartSpec(d));
  return frag(
    h(
      "header",
      null,
      h("h1", null, "Study ", h("span", { class: "name" }, d.name)),
      h("p", { class: "dir" }, d.dir),
    ),
    h(
      "div",
      { class: "cards" },
      [
        ["status", d.status],
        ["groups", String(d.groups.length)],
        ["runs", `${d.runs.filter((r) => r.status === "finished").length} / ${d.runs.length} finished`],
        ["objective", d.objective ?? "–"],
        ["iterations per run", d.iterations === null ? "–" : String(d.iterations)],
        ["target", d.target === null ? "–" : fmt(d.target)],
      ].map(([k, v]) =>
        h("div", { class: "card" }, h("div", { class: "label" }, k), h("div", { class: "value" }, v)),
      ),
    ),
    d.notes.map((n) => h("p", { class: "note" }, n)),
    groupSection(d.groups),
    h(
      "section",
      { id: "curves" },
      h("h2", null, "Running minimum per run and per group"),
      h(
        "p",
        { class: "note" },
        "Thin lines: each run's best val_bpb so far. Thick lines: the group's mean, with its t 95% CI band where two or more runs reached that iteration. Groups differ by dash pattern as well as colour.",
      ),
      h("figure", { class: "chart", "data-runs": d.runs.length }, raw(svg)),
    ),
    runSection(d.runs),
  );
}

const summaryText = (s: Summary | null) =>
  s === null ? "–" : `${fmt(s.mean)}${s.sd === null ? "" : ` ± ${fmt(s.sd)}`}`;

/** The verdict never calls a difference a gain unless its CI excludes zero. */
export function verdict(c: StudyComparison): string {
  if (c.ciLow > 0) return `better than ${c.against}`;
  if (c.ciHigh < 0) return `worse than ${c.against}`;
  return `no difference shown vs ${c.against} (CI crosses 0)`;
}

function comparisonCell(cs: readonly StudyComparison[]): Html | string {
  if (cs.length === 0) return "–";
  return frag(
    cs.map((c) =>
      h(
        "div",
        { class: "cmp" },
        h("b", null, verdict(c)),
        h(
          "div",
          { class: "sub" },
          `Δ ${c.difference >= 0 ? "+" : ""}${fmt(c.difference)} [${fmt(c.ciLow)}, ${fmt(c.ciHigh)}] · ${c.test} p=${c.p === null ? "–" : c.p.toPrecision(2)} · n=${c.nSelf} vs ${c.nOther}`,
        ),
      ),
    ),
  );
}

function groupSection(groups: readonly StudyGroup[]): Html {
  const rows = groups.map((g) => [
    h("b", null, g.id),
    g.label,
    g.improvement === null ? "0" : String(g.improvement.n),
    summaryText(g.improvement),
    fmt(g.improvement?.median),
    g.improvement?.ciLow == null || g.improvement.ciHigh == null
      ? "–"
      : `[${fmt(g.improvement.ciLow)}, ${fmt(g.improvement.ciHigh)}] ${g.improvement.ciMethod}`,
    comparisonCell(g.comparisons),
    g.trialsToTarget === null
      ? "–"
      : `${g.trialsToTarget.median === null ? "–" : g.trialsToTarget.median} (${g.trialsToTarget.reached}/${g.trialsToTarget.n} reached)`,
    g.llmTokensPerRun === null ? "–" : Math.round(g.llmTokensPerRun).toLocaleString("en"),
    g.time === null
      ? "–"
      : `${duration(g.time.trainingMs)} / ${duration(g.time.llmMs)} / ${duration(g.time.overheadMs)}`,
  ]);
  return h(
    "section",
    { id: "groups" },
    h("h2", null, "Groups"),
    h(
      "p",
      { class: "note" },
      "Improvement = baseline mean − best val_bpb of a run (higher is better), over the group's finished runs (n). A difference is called better or worse only when its CI excludes zero.",
    ),
    h(
      "div",
      { class: "scroll-x" },
      table(
        { class: "grid groups" },
        [
          "group",
          "what",
          "n",
          "improvement mean ± sd",
          "median",
          "95% CI",
          "vs A / vs R",
          "trials to target (median)",
          "LLM tokens / run",
          "time / run: training / LLM / overhead",
        ],
        rows,
      ),
    ),
  );
}

function runSection(runs: readonly StudyRun[]): Html {
  const rows = runs.map((r) => [
    r.group,
    String(r.repeat),
    r.seed === null ? "–" : String(r.seed),
    r.status,
    String(r.trials),
    fmt(r.baseline),
    fmt(r.best),
    fmt(r.improvement),
    h("code", null, r.dir),
  ]);
  return h(
    "section",
    { id: "runs" },
    h("h2", null, `Runs (${runs.length})`),
    table(
      { class: "grid runs" },
      [
        "group",
        "repeat",
        "seed",
        "status",
        "trials",
        "baseline",
        "best",
        "improvement",
        "folder (bilevel report FOLDER for its page)",
      ],
      rows,
    ),
  );
}
