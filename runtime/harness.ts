// The mechanism regression harness: runs one mechanism through the real sandbox inside a simulated
// Level 1 loop (offline proposer, synthetic objective, strict keep-if-better acceptance), with its
// hooks at the loop's fixed points: init once; per iteration guide, suggest (replaces the proposal),
// filter (reject: ask the proposer again, bounded; modify: apply), train, observe.
//
// The report has two parts. `summary` is behaviour only and is identical for identical seeds and
// source: it is what a baseline stores and compares. `timing` (hook latencies) is never compared.
import { createHash } from "node:crypto";
import type {
  Change,
  Config,
  HookName,
  Json,
  ParamSpec,
  Proposal,
  Trial,
  TrialStatus,
} from "../mechanism-api/index.d.ts";
import { EMPTY_CAPABILITIES } from "../sandbox/index.ts";
import type { CapabilityState, CompiledMechanism, HookContextData, HookOutcome } from "../sandbox/types.ts";
import { applyChanges, checkChanges, defaultConfig, effectiveChanges } from "./changes.ts";
import type { SandboxLike } from "./mechanisms.ts";
import { proposeOffline } from "./offline-proposer.ts";
import { spaceKey } from "./param-scale.ts";
import { createRng } from "./rng.ts";
import { syntheticObjective } from "./synthetic-objective.ts";

export const SUMMARY_FORMAT = "bilevel-mechanism-test/1";
export const HOOKS: readonly HookName[] = ["init", "guide", "suggest", "filter", "observe"];

export interface HarnessSettings {
  readonly seeds: readonly number[];
  readonly iterations: number;
  /** σ of the synthetic objective's seeded noise. */
  readonly noiseSigma: number;
  /** Proposals a filter may reject in one iteration before the iteration is skipped. */
  readonly maxFilterRejections: number;
  /** Trials in ctx.history and in the proposer's view. */
  readonly historyWindow: number;
  readonly maxChanges: number;
}

export const DEFAULT_SETTINGS: Omit<HarnessSettings, "seeds"> = {
  iterations: 30,
  noiseSigma: 0.003,
  maxFilterRejections: 3,
  historyWindow: 12,
  maxChanges: 3,
};

export type HookCounts = Record<HookName, number>;

export interface HarnessFault {
  readonly iteration: number;
  readonly hook: HookName;
  readonly code: string;
  readonly message: string;
}

export interface SeedSummary {
  readonly seed: number;
  /** val_bpb of the default config (iteration 0). */
  readonly baseline: number;
  /** The true minimum observed. */
  readonly best: number;
  /** Iteration of the best trial (0: nothing beat the baseline). */
  readonly bestIteration: number;
  readonly trials: number;
  readonly kept: number;
  /** Failed trials by status. */
  readonly failures: Readonly<Partial<Record<TrialStatus, number>>>;
  /** Hook calls made (successful or not). */
  readonly calls: HookCounts;
  /** guide calls that returned text; the first few distinct texts. */
  readonly guided: number;
  readonly guideSamples: readonly string[];
  /** Suggestions used in place of the proposer's proposal; ones that failed the space check. */
  readonly suggested: number;
  readonly invalidSuggestions: number;
  /** Filter verdicts. */
  readonly rejected: number;
  readonly modified: number;
  readonly invalidModifications: number;
  /** Iterations with no trial because every proposal was rejected. */
  readonly skipped: number;
  readonly faults: readonly HarnessFault[];
  /** The mechanism faulted and was not called again for this seed. */
  readonly quarantined: boolean;
  /** sha256 of the trial sequence (iteration, config, status, score): equal means identical behaviour. */
  readonly trajectory: string;
}

export interface HarnessSummary {
  readonly format: typeof SUMMARY_FORMAT;
  /** null: the control run, without any mechanism. */
  readonly mechanism: {
    readonly name: string;
    readonly version: number;
    readonly hooks: readonly HookName[];
    readonly capabilities: readonly string[];
    readonly sourceHash: string;
  } | null;
  readonly settings: HarnessSettings;
  /** sha256 of the search space the run used: a baseline is only comparable on the same space. */
  readonly spaceHash: string;
  readonly seeds: readonly SeedSummary[];
  readonly totals: {
    readonly calls: HookCounts;
    readonly guided: number;
    readonly suggested: number;
    readonly rejected: number;
    readonly modified: number;
    readonly faults: number;
    readonly meanBest: number;
  };
}

export interface LatencyStats {
  readonly calls: number;
  readonly medianMs: number;
  readonly p99Ms: number;
}

export interface HarnessTiming {
  readonly hooks: Readonly<Partial<Record<HookName, LatencyStats>>>;
  readonly wallMs: number;
}

export interface HarnessReport {
  readonly summary: HarnessSummary;
  readonly timing: HarnessTiming;
}

/** What the harness needs of the sandbox (sandbox/index.ts's Sandbox satisfies it). */
export type HarnessSandbox = Pick<SandboxLike, "load" | "call" | "unload">;

const zeroCounts = (): HookCounts => ({ init: 0, guide: 0, suggest: 0, filter: 0, observe: 0 });
const MAX_GUIDE_SAMPLES = 3;

/**
 * Run `mechanism` (null: no mechanism, the control) for every seed of `settings`.
 * Never throws for mechanism faults: they are recorded and the seed goes on without it.
 */
export async function runHarness(
  sandbox: HarnessSandbox,
  mechanism: CompiledMechanism | null,
  params: readonly ParamSpec[],
  settings: HarnessSettings,
): Promise<HarnessReport> {
  const started = performance.now();
  const space = params.map(apiParam);
  const latencies = new Map<HookName, number[]>();
  const seeds: SeedSummary[] = [];
  for (const seed of settings.seeds) {
    seeds.push(await runSeed(sandbox, mechanism, space, settings, seed, latencies));
  }
  const totals = {
    calls: zeroCounts(),
    guided: 0,
    suggested: 0,
    rejected: 0,
    modified: 0,
    faults: 0,
    meanBest: round(seeds.reduce((a, s) => a + s.best, 0) / Math.max(1, seeds.length)),
  };
  for (const s of seeds) {
    for (const h of HOOKS) totals.calls[h] += s.calls[h];
    totals.guided += s.guided;
    totals.suggested += s.suggested;
    totals.rejected += s.rejected;
    totals.modified += s.modified;
    totals.faults += s.faults.length;
  }
  const hooks: Partial<Record<HookName, LatencyStats>> = {};
  for (const [hook, values] of latencies) hooks[hook] = latencyStats(values);
  return {
    summary: {
      format: SUMMARY_FORMAT,
      mechanism: mechanism
        ? {
            name: mechanism.manifest.name,
            version: mechanism.manifest.version,
            hooks: [...mechanism.manifest.hooks],
            capabilities: [...mechanism.manifest.capabilities],
            sourceHash: mechanism.sourceHash,
          }
        : null,
      settings: { ...settings, seeds: [...settings.seeds] },
      spaceHash: createHash("sha256").update(JSON.stringify(space)).digest("hex"),
      seeds,
      totals,
    },
    timing: { hooks, wallMs: performance.now() - started },
  };
}

/** Only the fields of the API's ParamSpec: the sandbox rejects anything else (e.g. a trainer's gpuDefault). */
function apiParam(p: ParamSpec): ParamSpec {
  const { name, kind, min, max, log, choices, description } = p;
  return {
    name,
    kind,
    ...(min === undefined ? {} : { min }),
    ...(max === undefined ? {} : { max }),
    ...(log === undefined ? {} : { log }),
    ...(choices === undefined ? {} : { choices: [...choices] }),
    default: p.default,
    description,
  };
}

export function latencyStats(values: readonly number[]): LatencyStats {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] ?? 0;
  return { calls: sorted.length, medianMs: at(0.5), p99Ms: at(0.99) };
}

/** Scores are rounded so that summaries compare exactly and read well. */
function round(x: number): number {
  return Number(x.toFixed(6));
}

interface SeedRun {
  readonly params: readonly ParamSpec[];
  readonly settings: HarnessSettings;
  readonly seed: number;
  readonly trials: Trial[];
  incumbent: { config: Config; valBpb: number };
  best: { config: Config; valBpb: number; iteration: number };
}

async function runSeed(
  sandbox: HarnessSandbox,
  mechanism: CompiledMechanism | null,
  params: readonly ParamSpec[],
  settings: HarnessSettings,
  seed: number,
  latencies: Map<HookName, number[]>,
): Promise<SeedSummary> {
  const start = defaultConfig(params);
  const baselineScore = syntheticObjective(params, start, {
    noiseSigma: settings.noiseSigma,
    noiseSeed: seed,
    draw: 0,
  });
  if (baselineScore.valBpb === null)
    throw new Error(`the default config does not train: ${baselineScore.message}`);
  const run: SeedRun = {
    params,
    settings,
    seed,
    trials: [],
    incumbent: { config: start, valBpb: baselineScore.valBpb },
    best: { config: start, valBpb: baselineScore.valBpb, iteration: 0 },
  };
  const counts = {
    calls: zeroCounts(),
    guided: 0,
    guideSamples: [] as string[],
    suggested: 0,
    invalidSuggestions: 0,
    rejected: 0,
    modified: 0,
    invalidModifications: 0,
    skipped: 0,
  };
  const faults: HarnessFault[] = [];
  const failures: Partial<Record<TrialStatus, number>> = {};

  // The mechanism's host-kept data; `live` turns false when it faults (quarantine for this seed).
  const id = mechanism ? mechanism.manifest.name : "";
  let live = false;
  let state: Json = {};
  let capabilities: CapabilityState = EMPTY_CAPABILITIES;
  const declares = (hook: HookName): boolean => live && mechanism?.manifest.hooks.includes(hook) === true;
  const call = async (
    hook: HookName,
    iteration: number,
    argument?: Proposal | Trial,
  ): Promise<Extract<HookOutcome, { ok: true }> | null> => {
    counts.calls[hook] += 1;
    const outcome = await sandbox.call({
      mechanismId: id,
      hook,
      context: context(run, iteration),
      state,
      capabilities,
      ...(argument === undefined ? {} : { argument }),
    });
    const list = latencies.get(hook) ?? [];
    list.push(outcome.durationMs);
    latencies.set(hook, list);
    if (!outcome.ok) {
      faults.push({ iteration, hook, code: outcome.error.code, message: outcome.error.message });
      live = false;
      return null;
    }
    state = outcome.state;
    capabilities = outcome.capabilities;
    return outcome;
  };

  if (mechanism) {
    const loaded = await sandbox.load(id, mechanism);
    if (!loaded.ok) {
      faults.push({ iteration: 0, hook: "init", code: loaded.error.code, message: loaded.error.message });
    } else {
      live = true;
      if (declares("init")) await call("init", 0);
    }
  }

  try {
    for (let it = 1; it <= settings.iterations; it++) {
      const incumbent = run.incumbent;
      if (declares("guide")) {
        const out = await call("guide", it);
        const text = out?.result.hook === "guide" ? out.result.value : null;
        if (text !== null && text.trim() !== "") {
          counts.guided += 1;
          const sample = text.slice(0, 200);
          if (counts.guideSamples.length < MAX_GUIDE_SAMPLES && !counts.guideSamples.includes(sample)) {
            counts.guideSamples.push(sample);
          }
        }
      }
      let suggestion: { changes: Change[]; rationale: string } | null = null;
      if (declares("suggest")) {
        const out = await call("suggest", it);
        const value = out?.result.hook === "suggest" ? out.result.value : null;
        if (value) {
          const changes = effectiveChanges(incumbent.config, value.changes);
          if (checkChanges(changes, params).length === 0) {
            suggestion = { changes, rationale: value.rationale };
            counts.suggested += 1;
          } else {
            counts.invalidSuggestions += 1;
          }
        }
      }

      const rejected: Config[] = [];
      let accepted: Change[] | null = null;
      for (let attempt = 0; attempt <= settings.maxFilterRejections && accepted === null; attempt++) {
        let proposal: Proposal;
        if (suggestion !== null && attempt === 0) {
          proposal = makeProposal(incumbent.config, suggestion.changes, suggestion.rationale, "mechanism");
        } else {
          const offered = proposeOffline({
            params,
            incumbent: incumbent.config,
            history: run.trials.slice(-settings.historyWindow),
            rng: createRng("harness-proposer", seed, it, attempt),
            maxChanges: settings.maxChanges,
            avoid: rejected,
          });
          if (!offered.ok) break;
          proposal = makeProposal(incumbent.config, offered.changes, offered.rationale, "offline");
        }
        let changes = [...proposal.changes];
        let verdict: "accepted" | "rejected" = "accepted";
        if (declares("filter")) {
          const out = await call("filter", it, proposal);
          const v = out?.result.hook === "filter" ? out.result.value : null;
          if (v?.verdict === "reject") verdict = "rejected";
          else if (v?.verdict === "modify") {
            const modified = effectiveChanges(incumbent.config, v.changes);
            if (checkChanges(modified, params).length === 0) {
              changes = modified;
              counts.modified += 1;
            } else {
              counts.invalidModifications += 1;
            }
          }
        }
        if (verdict === "rejected") {
          counts.rejected += 1;
          rejected.push(proposal.config);
        } else {
          accepted = changes;
        }
      }
      if (accepted === null) {
        counts.skipped += 1;
        continue;
      }

      const trial = train(run, it, accepted);
      if (trial.status !== "ok") failures[trial.status] = (failures[trial.status] ?? 0) + 1;
      if (declares("observe")) await call("observe", it, trial);
    }
  } finally {
    if (mechanism) await sandbox.unload(id);
  }

  return {
    seed,
    baseline: round(baselineScore.valBpb),
    best: round(run.best.valBpb),
    bestIteration: run.best.iteration,
    trials: run.trials.length,
    kept: run.trials.filter((t) => t.kept).length,
    failures,
    ...counts,
    faults,
    quarantined: mechanism !== null && !live,
    trajectory: fingerprint(params, run.trials),
  };
}

function makeProposal(
  base: Config,
  changes: readonly Change[],
  rationale: string,
  source: Proposal["source"],
): Proposal {
  return { changes: [...changes], rationale, source, config: applyChanges(base, changes) };
}

/** Train one trial on the synthetic objective and apply strict keep-if-better acceptance. */
function train(run: SeedRun, iteration: number, changes: readonly Change[]): Trial {
  const config = applyChanges(run.incumbent.config, changes);
  const id = run.trials.length + 1;
  const score = syntheticObjective(run.params, config, {
    noiseSigma: run.settings.noiseSigma,
    noiseSeed: run.seed,
    draw: id,
  });
  const valBpb = score.valBpb;
  const kept = valBpb !== null && valBpb < run.incumbent.valBpb;
  const trial: Trial = {
    id,
    iteration,
    config,
    changes: [...changes],
    status: score.status,
    valBpb,
    kept,
    delta: valBpb === null ? null : round(valBpb - run.incumbent.valBpb),
  };
  run.trials.push(trial);
  if (kept && valBpb !== null) run.incumbent = { config, valBpb };
  if (valBpb !== null && valBpb < run.best.valBpb) run.best = { config, valBpb, iteration };
  return trial;
}

function context(run: SeedRun, iteration: number): HookContextData {
  return {
    iteration,
    params: run.params,
    incumbent: { config: run.incumbent.config, valBpb: run.incumbent.valBpb },
    best: { config: run.best.config, valBpb: run.best.valBpb },
    history: run.trials.slice(-run.settings.historyWindow),
    seed: run.seed,
  };
}

function fingerprint(params: readonly ParamSpec[], trials: readonly Trial[]): string {
  const hash = createHash("sha256");
  for (const t of trials) {
    hash.update(`${t.iteration}|${spaceKey(params, t.config)}|${t.status}|${t.valBpb ?? "-"}\n`);
  }
  return hash.digest("hex");
}
