// Baselines of the mechanism regression harness: a saved `HarnessSummary` (behaviour only, never
// timing), validated on load, and the comparison that decides what counts as a regression.
import { Ajv, type ErrorObject } from "ajv";
import {
  type HarnessSettings,
  type HarnessSummary,
  HOOKS,
  type SeedSummary,
  SUMMARY_FORMAT,
} from "./harness.ts";

const hookCounts = {
  type: "object",
  additionalProperties: false,
  required: [...HOOKS],
  properties: Object.fromEntries(HOOKS.map((h) => [h, { type: "integer", minimum: 0 }])),
} as const;
const count = { type: "integer", minimum: 0 } as const;
const score = { type: "number" } as const;

const SEED_SCHEMA = {
  type: "object",
  additionalProperties: false,
  required: [
    "seed",
    "baseline",
    "best",
    "bestIteration",
    "trials",
    "kept",
    "failures",
    "calls",
    "guided",
    "guideSamples",
    "suggested",
    "invalidSuggestions",
    "rejected",
    "modified",
    "invalidModifications",
    "skipped",
    "faults",
    "quarantined",
    "trajectory",
  ],
  properties: {
    seed: { type: "integer" },
    baseline: score,
    best: score,
    bestIteration: count,
    trials: count,
    kept: count,
    failures: {
      type: "object",
      additionalProperties: false,
      properties: Object.fromEntries(
        ["invalid-config", "oom", "diverged", "timeout", "crashed"].map((s) => [s, count]),
      ),
    },
    calls: hookCounts,
    guided: count,
    guideSamples: { type: "array", items: { type: "string" } },
    suggested: count,
    invalidSuggestions: count,
    rejected: count,
    modified: count,
    invalidModifications: count,
    skipped: count,
    faults: {
      type: "array",
      items: {
        type: "object",
        additionalProperties: false,
        required: ["iteration", "hook", "code", "message"],
        properties: {
          iteration: count,
          hook: { enum: [...HOOKS, "validation", "budget"] },
          code: { type: "string" },
          message: { type: "string" },
        },
      },
    },
    quarantined: { type: "boolean" },
    trajectory: { type: "string", pattern: "^[0-9a-f]{64}$" },
  },
} as const;

const SUMMARY_SCHEMA = {
  type: "object",
  additionalProperties: false,
  required: ["format", "mechanism", "settings", "spaceHash", "seeds", "totals"],
  properties: {
    format: { const: SUMMARY_FORMAT },
    mechanism: {
      anyOf: [
        { type: "null" },
        {
          type: "object",
          additionalProperties: false,
          required: ["name", "version", "hooks", "capabilities", "sourceHash"],
          properties: {
            name: { type: "string" },
            version: { type: "integer" },
            hooks: { type: "array", items: { enum: [...HOOKS] } },
            capabilities: { type: "array", items: { type: "string" } },
            sourceHash: { type: "string" },
          },
        },
      ],
    },
    settings: {
      type: "object",
      additionalProperties: false,
      required: [
        "seeds",
        "iterations",
        "noiseSigma",
        "maxFilterRejections",
        "historyWindow",
        "maxChanges",
        "acceptance",
        "k",
        "minSigma",
        "baselineRepeats",
      ],
      properties: {
        acceptance: { enum: ["noise-aware", "strict"] },
        k: { type: "number", minimum: 0 },
        minSigma: { type: "number", minimum: 0 },
        baselineRepeats: { type: "integer", minimum: 1 },
        seeds: { type: "array", minItems: 1, items: { type: "integer" } },
        iterations: { type: "integer", minimum: 1 },
        noiseSigma: { type: "number", minimum: 0 },
        maxFilterRejections: count,
        historyWindow: { type: "integer", minimum: 1 },
        maxChanges: { type: "integer", minimum: 1, maximum: 3 },
        objective: { type: "string" },
      },
    },
    spaceHash: { type: "string", pattern: "^[0-9a-f]{64}$" },
    seeds: { type: "array", minItems: 1, items: SEED_SCHEMA },
    totals: {
      type: "object",
      additionalProperties: false,
      required: ["calls", "guided", "suggested", "rejected", "modified", "faults", "meanBest"],
      properties: {
        calls: hookCounts,
        guided: count,
        suggested: count,
        rejected: count,
        modified: count,
        faults: count,
        meanBest: score,
      },
    },
  },
} as const;

const ajv = new Ajv({ allErrors: true, strict: true, allowUnionTypes: true, coerceTypes: false });
const validateSummary = ajv.compile<HarnessSummary>(SUMMARY_SCHEMA);

function describeErrors(errors: readonly ErrorObject[] | null | undefined): string {
  return (errors ?? [])
    .slice(0, 5)
    .map((e) => `${e.instancePath || "(root)"} ${e.message ?? "is invalid"}`)
    .join("; ");
}

/** Parse a saved baseline; a clear error for anything that is not one. */
export function parseBaseline(
  text: string,
): { ok: true; summary: HarnessSummary } | { ok: false; error: string } {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    return { ok: false, error: `not JSON (${error instanceof Error ? error.message : String(error)})` };
  }
  if (!validateSummary(value)) {
    return { ok: false, error: `not a ${SUMMARY_FORMAT} summary: ${describeErrors(validateSummary.errors)}` };
  }
  const seeds = value.settings.seeds;
  if (value.seeds.length !== seeds.length || value.seeds.some((s, i) => s.seed !== seeds[i])) {
    return { ok: false, error: "its per-seed results do not match its settings.seeds" };
  }
  return { ok: true, summary: value };
}

/** Settings that differ between two summaries, as "name: a vs b" lines (empty: comparable). */
export function settingsDiff(a: HarnessSettings, b: HarnessSettings): string[] {
  const diffs: string[] = [];
  // Both summaries' keys: an optional setting (objective) present on one side only differs too.
  for (const key of new Set([...Object.keys(a), ...Object.keys(b)]) as Set<keyof HarnessSettings>) {
    const x = JSON.stringify(a[key]);
    const y = JSON.stringify(b[key]);
    if (x !== y) diffs.push(`${key}: ${x} vs ${y}`);
  }
  return diffs;
}

export interface Comparison {
  /** Empty: no regression. */
  readonly regressions: readonly string[];
  /** Informational: improvements, changed behaviour, a different mechanism. */
  readonly notes: readonly string[];
}

/** What fires and what acts, for "a hook that used to fire no longer fires". */
const ACTIONS: readonly {
  key: keyof SeedSummary & ("guided" | "suggested" | "rejected" | "modified");
  what: string;
}[] = [
  { key: "guided", what: "guide no longer returns guidance" },
  { key: "suggested", what: "suggest no longer makes (valid) suggestions" },
  { key: "rejected", what: "filter no longer rejects anything" },
  { key: "modified", what: "filter no longer modifies anything" },
];

/**
 * Regressions of `current` against `baseline` (same settings required): a seed whose best is worse
 * by more than `tolerance`, a hook that fired and no longer does (or no longer acts), new faults.
 */
export function compareToBaseline(
  current: HarnessSummary,
  baseline: HarnessSummary,
  tolerance: number,
): Comparison {
  const diffs = settingsDiff(current.settings, baseline.settings);
  if (diffs.length > 0)
    return { regressions: [`settings differ from the baseline's: ${diffs.join("; ")}`], notes: [] };
  if (current.spaceHash !== baseline.spaceHash) {
    return {
      regressions: [
        "the search space (trainer/search-space.json) changed since the baseline was recorded: results are not comparable; re-record it with --save-baseline",
      ],
      notes: [],
    };
  }
  const regressions: string[] = [];
  const notes: string[] = [];
  const name = (s: HarnessSummary) =>
    s.mechanism ? `${s.mechanism.name} v${s.mechanism.version}` : "no mechanism";
  if (name(current) !== name(baseline))
    notes.push(`comparing ${name(current)} with a baseline of ${name(baseline)}`);
  else if (current.mechanism?.sourceHash !== baseline.mechanism?.sourceHash)
    notes.push("the source changed since the baseline");

  let identical = 0;
  baseline.seeds.forEach((b, i) => {
    const c = current.seeds[i] as SeedSummary;
    const diff = c.best - b.best;
    if (diff > tolerance) {
      regressions.push(
        `seed ${b.seed}: best ${c.best.toFixed(4)} is worse than the baseline's ${b.best.toFixed(4)} by ${diff.toFixed(4)} (tolerance ${tolerance})`,
      );
    } else if (diff < -tolerance) {
      notes.push(`seed ${b.seed}: best improved ${b.best.toFixed(4)} -> ${c.best.toFixed(4)}`);
    }
    if (c.trajectory === b.trajectory) identical++;
  });
  notes.push(
    identical === baseline.seeds.length
      ? "behaviour identical to the baseline (same trials on every seed)"
      : `behaviour differs from the baseline on ${baseline.seeds.length - identical} of ${baseline.seeds.length} seeds`,
  );

  for (const hook of HOOKS) {
    const was = baseline.totals.calls[hook];
    const now = current.totals.calls[hook];
    if (was > 0 && now === 0) regressions.push(`hook ${hook} no longer fires (baseline: ${was} calls)`);
  }
  for (const { key, what } of ACTIONS) {
    const was = baseline.seeds.reduce((a, s) => a + s[key], 0);
    const now = current.seeds.reduce((a, s) => a + s[key], 0);
    if (was > 0 && now === 0) regressions.push(`${what} (baseline: ${was})`);
  }

  // Faults as a multiset of (seed, hook, code): any beyond the baseline's are new.
  const known = new Map<string, number>();
  for (const s of baseline.seeds) {
    for (const f of s.faults)
      known.set(`${s.seed}|${f.hook}|${f.code}`, (known.get(`${s.seed}|${f.hook}|${f.code}`) ?? 0) + 1);
  }
  for (const s of current.seeds) {
    for (const f of s.faults) {
      const key = `${s.seed}|${f.hook}|${f.code}`;
      const left = known.get(key) ?? 0;
      if (left > 0) known.set(key, left - 1);
      else
        regressions.push(
          `new fault: seed ${s.seed}, iteration ${f.iteration}, ${f.hook}/${f.code}: ${f.message}`,
        );
    }
  }
  return { regressions, notes };
}
