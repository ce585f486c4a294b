// Scenarios for `mechanism check --scenario NAME|FILE`: the situations a run produces that the
// dry run on the synthetic trace does not (an empty history, failed and diverged trials, frozen
// parameters, a repeated proposal, a restart, a full history window), built over the run's own
// search space, or read from a JSON file (format in docs/mechanism-tools.md). Each is a script
// of iterations; runtime/mechanism-scenario-run.ts drives the mechanism's hooks through it.
import { readFileSync } from "node:fs";
import path from "node:path";
import type { Change, Config, ParamSpec, ParamValue, TrialStatus } from "../mechanism-api/index.d.ts";
import { validator } from "../sandbox/validation.ts";
import { applyChanges, checkChanges, defaultConfig } from "./changes.ts";
import { UserError } from "./errors.ts";

export interface ScenarioStep {
  /** What the proposer proposes this iteration (the filter sees it, unless a suggestion replaced it). */
  readonly changes: readonly Change[];
  /** How the trial of the iteration ends; valBpb only for "ok". */
  readonly status: TrialStatus;
  readonly valBpb: number | null;
  /** The incumbent goes back to the best config before the iteration (a run's `level1.restartEvery`). */
  readonly restart: boolean;
}

export interface Scenario {
  readonly name: string;
  readonly description: string;
  /** Parameters marked frozen in ctx.params throughout (Level 1.5's freeze). */
  readonly frozen: readonly string[];
  /** The starting incumbent's val_bpb (the baseline). */
  readonly baseline: number;
  /** A trial is kept when it beats the incumbent by more than this (noise-aware acceptance's k·σ). */
  readonly threshold: number;
  readonly steps: readonly ScenarioStep[];
}

export const BUILT_IN_SCENARIOS = [
  "empty-history",
  "failed-trials",
  "frozen",
  "repeated-proposal",
  "restart",
  "full-window",
] as const;

const BASELINE = 2.5;
const THRESHOLD = 0.001;
const FAILURES: readonly TrialStatus[] = ["oom", "diverged", "crashed", "timeout", "invalid-config"];

/**
 * The built-ins' moves: per `active` parameter, its valid one-parameter changes of the default
 * config, each to a different value and none to the default's. A scenario that moves a parameter
 * again takes its next value, so no scripted change sets a value the incumbent already has (a run
 * drops such changes, so a scenario must not hand them to hooks).
 */
function movesByParam(params: readonly ParamSpec[], active: readonly string[]): Change[][] {
  const base = defaultConfig(params);
  const out: Change[][] = [];
  for (const spec of params) {
    if (!active.includes(spec.name)) continue;
    const values = candidates(spec).filter(
      (value, i, all) =>
        value !== base[spec.name] &&
        all.indexOf(value) === i &&
        checkChanges([{ param: spec.name, value }], params, { active, base }).length === 0,
    );
    if (values.length > 0) out.push(values.map((value) => ({ param: spec.name, value })));
  }
  return out;
}

function candidates(spec: ParamSpec): ParamValue[] {
  if (spec.kind === "choice") return [...(spec.choices ?? [])];
  const { min, max } = spec;
  if (min === undefined || max === undefined) return [];
  const mid = spec.kind === "int" ? Math.round((min + max) / 2) : (min + max) / 2;
  return [max, min, mid];
}

const step = (changes: readonly Change[], status: TrialStatus, valBpb: number | null, restart = false) => ({
  changes,
  status,
  valBpb: status === "ok" ? valBpb : null,
  restart,
});

/** The built-in scenario `name` over `params` (throws a UserError naming the built-ins if unknown). */
export function builtInScenario(name: string, params: readonly ParamSpec[], historyWindow: number): Scenario {
  const names = params.map((p) => p.name);
  const all = movesByParam(params, names);
  // Parameter i mod n; its next value each time the cycle comes round again.
  const at = (i: number): Change[] => {
    const values = all[i % Math.max(1, all.length)];
    const move = values?.[Math.floor(i / Math.max(1, all.length)) % values.length];
    return move ? [move] : [];
  };
  const base = { name, frozen: [] as string[], baseline: BASELINE, threshold: THRESHOLD };
  switch (name) {
    case "empty-history":
      return {
        ...base,
        description: "the first iteration: nothing in ctx.history yet",
        steps: [step(at(0), "ok", 2.48)],
      };
    case "failed-trials":
      return {
        ...base,
        description:
          "trials that fail (out of memory, diverged, crashed, timed out, invalid): valBpb and delta null",
        steps: [...FAILURES.map((s, i) => step(at(i), s, null)), step(at(FAILURES.length), "ok", 2.49)],
      };
    case "frozen": {
      // The free parameter: one with the most values, so its three moves differ.
      const values = [...all].sort((a, b) => b.length - a.length)[0] ?? [];
      const free = values[0]?.param;
      const frozen = names.filter((n) => n !== free);
      const own = (i: number): Change[] => {
        const move = values[i % Math.max(1, values.length)];
        return move ? [move] : [];
      };
      return {
        ...base,
        frozen,
        description: `every parameter but ${free ?? "none"} frozen (ctx.params[i].frozen)`,
        steps: [step(own(0), "ok", 2.49), step(own(1), "ok", 2.495), step(own(2), "diverged", null)],
      };
    }
    case "repeated-proposal":
      // Not kept, so the incumbent stays and the same change is proposed again, as a proposer may.
      return {
        ...base,
        description: "the same proposal three times in a row, not kept, the config already in ctx.history",
        steps: [step(at(0), "ok", 2.5005), step(at(0), "ok", 2.4995), step(at(0), "ok", 2.5002)],
      };
    case "restart":
      return {
        ...base,
        description: "a gain too small to keep becomes the best; then the incumbent restarts from the best",
        steps: [
          step(at(0), "ok", 2.48),
          step(at(1), "ok", 2.4795),
          step(at(2), "ok", 2.49, true),
          step(at(3), "ok", 2.47),
        ],
      };
    case "full-window":
      return {
        ...base,
        description: `more trials than the history window (${historyWindow}): ctx.history is the last ${historyWindow}`,
        steps: Array.from({ length: historyWindow + 3 }, (_, i) =>
          i % 4 === 3
            ? step(at(i), "diverged", null)
            : step(at(i), "ok", Number((2.5 - 0.002 * i).toFixed(4))),
        ),
      };
    default:
      throw new UserError(
        `--scenario ${name}: no such scenario file, and not a built-in (${BUILT_IN_SCENARIOS.join(", ")}, all)`,
        2,
      );
  }
}

/** The scenario file's JSON shape (docs/mechanism-tools.md). */
interface ScenarioFile {
  name?: string;
  description?: string;
  frozen?: string[];
  baseline?: number;
  threshold?: number;
  steps: {
    changes: Record<string, number | string>;
    status?: TrialStatus;
    valBpb?: number;
    restart?: boolean;
  }[];
}

const isScenarioFile = validator<ScenarioFile>({
  type: "object",
  additionalProperties: false,
  required: ["steps"],
  properties: {
    name: { type: "string", minLength: 1, maxLength: 64 },
    description: { type: "string", maxLength: 500 },
    frozen: { type: "array", maxItems: 256, items: { type: "string" } },
    baseline: { type: "number", exclusiveMinimum: 0 },
    threshold: { type: "number", minimum: 0 },
    steps: {
      type: "array",
      minItems: 1,
      maxItems: 200,
      items: {
        type: "object",
        additionalProperties: false,
        required: ["changes"],
        properties: {
          changes: {
            type: "object",
            minProperties: 1,
            additionalProperties: { type: ["number", "string"] },
          },
          status: { enum: ["ok", ...FAILURES] },
          valBpb: { type: "number", exclusiveMinimum: 0 },
          restart: { type: "boolean" },
        },
      },
    },
  },
});

/** A scenario file, checked against the search space: every mistake is a UserError (exit 2) naming the step. */
export function readScenarioFile(file: string, params: readonly ParamSpec[]): Scenario {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, "utf8"));
  } catch (error) {
    throw new UserError(`--scenario ${file}: ${(error as Error).message}`, 2);
  }
  if (!isScenarioFile(raw)) throw new UserError(`--scenario ${file}: ${isScenarioFile.explain()}`, 2);
  const frozen = raw.frozen ?? [];
  const names = params.map((p) => p.name);
  const unknown = frozen.filter((n) => !names.includes(n));
  if (unknown.length > 0)
    throw new UserError(`--scenario ${file}: frozen: unknown parameter ${unknown.join(", ")}`, 2);
  const active = names.filter((n) => !frozen.includes(n));
  let config: Config = defaultConfig(params);
  const steps = raw.steps.map((s, i) => {
    const changes = Object.entries(s.changes).map(([param, value]) => ({ param, value }));
    const problems = checkChanges(changes, params, { active, base: config });
    if (problems.length > 0)
      throw new UserError(`--scenario ${file}: steps[${i}]: ${problems.join("; ")}`, 2);
    const status = s.status ?? "ok";
    if (status === "ok" && s.valBpb === undefined)
      throw new UserError(`--scenario ${file}: steps[${i}]: an "ok" trial needs its valBpb`, 2);
    config = applyChanges(config, changes);
    return step(changes, status, s.valBpb ?? null, s.restart ?? false);
  });
  return {
    name: raw.name ?? path.basename(file, ".json"),
    description: raw.description ?? `from ${path.basename(file)}`,
    frozen,
    baseline: raw.baseline ?? BASELINE,
    threshold: raw.threshold ?? THRESHOLD,
    steps,
  };
}

/**
 * The scenarios `--scenario` asks for, in order: each value a built-in name (which wins over a
 * file of that name), `all` (every built-in), or a scenario file. A UserError (exit 2) before anything runs for an unknown name or
 * a bad file.
 */
export function resolveScenarios(
  given: readonly string[],
  params: readonly ParamSpec[],
  historyWindow: number,
  isFile: (value: string) => boolean,
): Scenario[] {
  const out: Scenario[] = [];
  for (const value of given) {
    if (value === "all")
      out.push(...BUILT_IN_SCENARIOS.map((n) => builtInScenario(n, params, historyWindow)));
    else if (!(BUILT_IN_SCENARIOS as readonly string[]).includes(value) && isFile(value))
      out.push(readScenarioFile(value, params));
    else out.push(builtInScenario(value, params, historyWindow));
  }
  return out;
}
