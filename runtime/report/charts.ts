// The report's plots: Vega-Lite specs compiled and rendered to SVG here, at report time, by Vega's
// headless View (renderer "none" + toSVG). Why Vega-Lite: it is a maintained grammar of graphics with
// shape, dash and band encodings (what "distinguishable without colour" and "mean with CI band"
// need), and its Node renderer writes plain SVG with escaped text and ARIA labels — so the page needs
// no charting script, opens from disk, and stays fast (1000 points are 1000 <path>s).
import { Error as ErrorLevel, logger, parse, View } from "vega";
import { compile, type TopLevelSpec } from "vega-lite";
import type { Marker, MarkerKind, Outcome, TrialView } from "./run-data.ts";

const FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif";

/** Shared look: readable type on a laptop, quiet grid, no frame. */
export const CHART_CONFIG = {
  font: FONT,
  view: { stroke: null },
  axis: {
    labelFontSize: 12,
    titleFontSize: 13,
    gridColor: "#e8e8e8",
    domainColor: "#888",
    tickColor: "#888",
  },
  legend: { labelFontSize: 12, titleFontSize: 12, symbolSize: 90, orient: "top", direction: "horizontal" },
} as const;

/**
 * A Vega-Lite spec as plain data. Vega-Lite's own spec types are too deep to build piecewise here;
 * the compiler checks the spec at run time (and the tests render every kind of page).
 */
export type ChartSpec = { readonly [key: string]: unknown };

/** The spec as SVG markup. Compiler warnings (e.g. a legend merge) are not the user's business. */
export async function renderSvg(spec: ChartSpec): Promise<string> {
  const compiled = compile(spec as unknown as TopLevelSpec, { logger: logger(ErrorLevel) }).spec;
  const view = new View(parse(compiled), { renderer: "none", logLevel: ErrorLevel });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/** Outcomes in legend order, with a shape each (the distinction) and a colour (a redundant aid). */
const OUTCOMES: readonly { outcome: Outcome; label: string; shape: string; fill: string; stroke: string }[] =
  [
    { outcome: "baseline", label: "baseline", shape: "square", fill: "#ffffff", stroke: "#555555" },
    { outcome: "kept", label: "kept", shape: "triangle-up", fill: "#0b5cad", stroke: "#0b5cad" },
    { outcome: "discarded", label: "discarded", shape: "circle", fill: "#ffffff", stroke: "#7a7a7a" },
    {
      outcome: "failed",
      label: "failed (no score; drawn at the top)",
      shape: "cross",
      fill: "#c0392b",
      stroke: "#c0392b",
    },
  ];

const MARKERS: readonly { kind: MarkerKind; label: string; shape: string; dash: number[] }[] = [
  { kind: "adjusted", label: "Level 1.5 changed the search", shape: "diamond", dash: [] },
  { kind: "unchanged", label: "Level 1.5 kept it", shape: "circle", dash: [] },
  { kind: "activated", label: "mechanism activated", shape: "triangle-right", dash: [] },
  { kind: "quarantined", label: "quarantined", shape: "cross", dash: [6, 3] },
  { kind: "retired", label: "retired", shape: "triangle-left", dash: [2, 3] },
];

/** The y range: outliers (a diverged 8.0 next to 2.1s) are clamped to the top edge rather than flattening the curve. */
export function yDomain(trials: readonly TrialView[]): [number, number] {
  const scored = trials
    .map((t) => t.valBpb)
    .filter((v): v is number => v !== null && Number.isFinite(v))
    .sort((a, b) => a - b);
  if (scored.length === 0) return [0, 1];
  const lo = scored[0] as number;
  const q95 = scored[Math.floor((scored.length - 1) * 0.95)] as number;
  const max = scored.at(-1) as number;
  const top = Math.min(max, q95 + Math.max(q95 - lo, 1e-6) * 0.5);
  const pad = Math.max(top - lo, 1e-3) * 0.06;
  return [lo - pad, top + pad];
}

export function runChartSpec(trials: readonly TrialView[], markers: readonly Marker[]): ChartSpec {
  const [y0, y1] = yDomain(trials);
  const label = (t: TrialView) =>
    `trial #${t.id} · iteration ${t.iteration} · ${t.outcome}` +
    (t.valBpb === null ? ` (${t.status})` : ` · val_bpb ${t.valBpb.toFixed(4)}`) +
    (t.touchedBy.length > 0 ? ` · ${t.touchedBy.map((m) => `${m.id} ${m.outcome}`).join(", ")}` : "");
  const points = trials.map((t) => ({
    id: t.id,
    iteration: t.iteration,
    y: t.valBpb === null ? y1 : Math.min(Math.max(t.valBpb, y0), y1),
    outcome: OUTCOMES.find((o) => o.outcome === t.outcome)?.label ?? t.outcome,
    label: label(t),
  }));
  const steps = trials.filter((t) => t.best !== null).map((t) => ({ iteration: t.iteration, best: t.best }));
  const maxIteration = Math.max(1, ...trials.map((t) => t.iteration), ...markers.map((m) => m.iteration));
  const x = {
    field: "iteration",
    type: "quantitative",
    title: "iteration",
    scale: { domain: [-0.5, maxIteration + 0.5], nice: false },
    axis: { tickMinStep: 1, format: "d" },
  } as const;
  const mechanismEvents = markers.filter((m) => m.lane === "mechanisms");
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    config: CHART_CONFIG,
    spacing: 6,
    // The plot and the marker strip share iterations, but each has its own shapes and legend.
    // (fill and stroke go with shape, or Vega-Lite cannot merge the trial legend into one).
    resolve: {
      scale: { x: "shared", shape: "independent", fill: "independent", stroke: "independent" },
      legend: { shape: "independent", fill: "independent", stroke: "independent" },
    },
    vconcat: [
      {
        width: 1080,
        height: 300,
        layer: [
          ruleLayer(mechanismEvents, x),
          {
            data: { values: steps },
            mark: { type: "line", interpolate: "step-after", stroke: "#0b5cad", strokeWidth: 2.5 },
            encoding: {
              x,
              y: {
                field: "best",
                type: "quantitative",
                title: "val_bpb (line: best so far)",
                scale: { domain: [y0, y1], clamp: true, zero: false },
              },
            },
          },
          pointLayer(points),
        ],
      },
      laneChart(markers, x),
    ],
  };
}

function pointLayer(points: readonly Record<string, string | number>[]): ChartSpec {
  const used = OUTCOMES.filter((o) => points.some((p) => p.outcome === o.label));
  const scale = (key: "shape" | "fill" | "stroke") => ({
    domain: used.map((o) => o.label),
    range: used.map((o) => o[key]),
  });
  // One legend: shape, fill and stroke share field and title, so Vega-Lite merges them.
  const legend = { title: "trial", symbolStrokeWidth: 1.5, labelLimit: 400 };
  return {
    name: "trials",
    data: { values: points },
    mark: { type: "point", filled: false, size: 70, strokeWidth: 1.5, opacity: 0.95 },
    encoding: {
      x: { field: "iteration", type: "quantitative" },
      y: { field: "y", type: "quantitative" },
      shape: { field: "outcome", type: "nominal", scale: scale("shape"), legend },
      fill: { field: "outcome", type: "nominal", scale: scale("fill"), legend },
      stroke: { field: "outcome", type: "nominal", scale: scale("stroke"), legend },
      description: { field: "label" },
    },
  };
}

/** Vertical rules where mechanisms were activated (solid), quarantined (dashed), retired (dotted). */
function ruleLayer(events: readonly Marker[], x: Record<string, unknown>): ChartSpec {
  return {
    data: { values: events.map((m) => ({ iteration: m.iteration, kind: m.kind })) },
    mark: { type: "rule", stroke: "#9a9a9a", strokeWidth: 1 },
    encoding: {
      x,
      strokeDash: {
        field: "kind",
        type: "nominal",
        scale: { domain: MARKERS.map((m) => m.kind), range: MARKERS.map((m) => m.dash) },
        legend: null,
      },
    },
  };
}

/** A strip under the plot: one lane for Level 1.5, one for mechanism events, a shape per kind. */
function laneChart(markers: readonly Marker[], x: Record<string, unknown>): ChartSpec {
  const used = MARKERS.filter((k) => markers.some((m) => m.kind === k.kind));
  const values = markers.map((m) => ({
    iteration: m.iteration,
    lane: m.lane,
    kind: MARKERS.find((k) => k.kind === m.kind)?.label ?? m.kind,
    label: `iteration ${m.iteration}: ${m.message}`,
  }));
  // Names next to activations only (retirements often coincide and would overprint), one label per
  // iteration listing every mechanism activated there; hovering a marker shows the rest.
  const activations = new Map<number, string[]>();
  for (const m of markers.filter((x) => x.kind === "activated"))
    activations.set(m.iteration, [...(activations.get(m.iteration) ?? []), m.subject.replace(/^m\d+-/, "")]);
  const names = [...activations].map(([iteration, list]) => ({
    iteration,
    lane: "mechanisms",
    name: list.join(", "),
  }));
  const y = { field: "lane", type: "nominal", title: null, scale: { domain: ["Level 1.5", "mechanisms"] } };
  return {
    width: 1080,
    height: 64,
    data: { values },
    layer: [
      {
        name: "markers",
        mark: { type: "point", filled: true, size: 90, fill: "#333", stroke: "#333" },
        encoding: {
          x,
          y,
          shape: {
            field: "kind",
            type: "nominal",
            title: "events",
            scale: { domain: used.map((k) => k.label), range: used.map((k) => k.shape) },
            legend: { orient: "bottom", labelLimit: 400 },
          },
          description: { field: "label" },
        },
      },
      ...(names.length <= 12
        ? [
            {
              data: { values: names },
              mark: { type: "text", align: "left", dx: 8, fontSize: 11, fill: "#333", limit: 160 },
              encoding: { x, y, text: { field: "name" } },
            },
          ]
        : []),
    ],
  };
}
