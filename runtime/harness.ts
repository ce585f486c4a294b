// The mechanism regression harness (`bilevel mechanism test`): the run's own loop (runtime/loop.ts)
// on the synthetic objective, per seed, with the mechanism as the run's one start mechanism and the
// outer levels off. So a mechanism meets exactly the hook order, filter chain, acceptance and
// quarantine rules of a real run; the summary is read back from each seed's store.
//
// The report has two parts. `summary` is behaviour only and is identical for identical seeds and
// source: it is what a baseline stores and compares. `timing` (hook latencies) is never compared.
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import type { HookName, Json, ParamSpec, TrialStatus } from "../mechanism-api/index.d.ts";
import { syntheticTrace } from "../sandbox/index.ts";
import type { CompiledMechanism } from "../sandbox/types.ts";
import { defaultConfig } from "./changes.ts";
import { type AcceptanceMode, DEFAULT_RUN_CONFIG, type ResolvedRunConfig, type RunConfig } from "./config.ts";
import { OfflineProposer } from "./level1/offline-proposer.ts";
import { LibraryResearcher } from "./level2/library.ts";
import { RuleStrategist } from "./level15/strategists.ts";
import { BilevelLoop } from "./loop.ts";
import { recordingSandbox, seedEvents, type TraceEvent } from "./mechanism-trace.ts";
import type { SandboxLike } from "./mechanisms.ts";
import { spaceKey } from "./param-scale.ts";
import { type MechanismRow, RunStore, type TrialRow } from "./store.ts";
import { createTrainer, SyntheticTrainer } from "./trainers.ts";

// /2: the harness runs the loop itself (noise-aware acceptance by default, σ from baselines).
export const SUMMARY_FORMAT = "bilevel-mechanism-test/2";
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
  /** The run's acceptance rule (noise-aware: σ from baseline runs of other seeds), k, σ floor, baselines. */
  readonly acceptance: AcceptanceMode;
  readonly k: number;
  readonly minSigma: number;
  readonly baselineRepeats: number;
  /**
   * Absent: the synthetic objective. "surrogate:NAME@SHA12": the surrogate of that recording (the
   * base config's trainer; noiseSigma is then the σ added to its predictions).
   */
  readonly objective?: string;
}

/** The settings a run config implies (its proposer and acceptance sections). */
export function settingsFromConfig(
  config: Pick<RunConfig, "proposer" | "acceptance">,
): Omit<HarnessSettings, "seeds" | "iterations" | "noiseSigma"> {
  const { proposer, acceptance } = config;
  return {
    maxFilterRejections: proposer.maxFilterRejections,
    historyWindow: proposer.historyWindow,
    maxChanges: proposer.maxChanges,
    acceptance: acceptance.mode,
    k: acceptance.k,
    minSigma: acceptance.minSigma,
    baselineRepeats: acceptance.baselineRepeats,
  };
}

export const DEFAULT_SETTINGS: Omit<HarnessSettings, "seeds"> = {
  iterations: 30,
  noiseSigma: 0.003,
  ...settingsFromConfig(DEFAULT_RUN_CONFIG),
};

export type HookCounts = Record<HookName, number>;

export interface HarnessFault {
  readonly iteration: number;
  /** The hook that faulted, or what quarantined the mechanism without a hook call. */
  readonly hook: HookName | "validation" | "budget";
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

/** The mechanism under test: its source (validated on the live trace at the start, as in a run) and compiled form. */
export interface HarnessMechanism {
  readonly fileName: string;
  readonly source: string;
  readonly compiled: CompiledMechanism;
}

const zeroCounts = (): HookCounts => ({ init: 0, guide: 0, suggest: 0, filter: 0, observe: 0 });
const MAX_GUIDE_SAMPLES = 3;

/** Receives each seed's trace (every hook call and trial, in order) once the seed has run. */
export type TraceSink = (events: readonly TraceEvent[]) => void;

/**
 * Run `mechanism` (null: no mechanism, the control) for every seed of `settings`, each seed one run
 * of the loop in a temporary folder. `base` supplies the policy (the run's or --config's).
 * Never throws for mechanism faults: they are recorded and the seed goes on without it.
 */
export async function runHarness(
  sandbox: SandboxLike,
  mechanism: HarnessMechanism | null,
  params: readonly ParamSpec[],
  settings: HarnessSettings,
  base: ResolvedRunConfig,
  onTrace?: TraceSink,
): Promise<HarnessReport> {
  const started = performance.now();
  const latencies = new Map<HookName, number[]>();
  const seeds: SeedSummary[] = [];
  for (const seed of settings.seeds) {
    const run = { sandbox, mechanism, params, settings, base, seed };
    seeds.push(await runSeed(run, latencies, onTrace));
  }
  const hooks: Partial<Record<HookName, LatencyStats>> = {};
  for (const [hook, values] of latencies) hooks[hook] = latencyStats(values);
  const m = mechanism?.compiled;
  return {
    summary: {
      format: SUMMARY_FORMAT,
      mechanism: m
        ? {
            name: m.manifest.name,
            version: m.manifest.version,
            hooks: [...m.manifest.hooks],
            capabilities: [...m.manifest.capabilities],
            sourceHash: m.sourceHash,
          }
        : null,
      settings: { ...settings, seeds: [...settings.seeds] },
      spaceHash: createHash("sha256").update(JSON.stringify(params)).digest("hex"),
      seeds,
      totals: totalsOf(seeds),
    },
    timing: { hooks, wallMs: performance.now() - started },
  };
}

function totalsOf(seeds: readonly SeedSummary[]): HarnessSummary["totals"] {
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
  return totals;
}

/** The run config of one harness seed: the synthetic objective, the outer levels off. */
export function harnessRunConfig(
  base: ResolvedRunConfig,
  params: readonly ParamSpec[],
  settings: HarnessSettings,
  seed: number,
): ResolvedRunConfig {
  return {
    ...base,
    name: "mechanism-test",
    seed,
    iterations: settings.iterations,
    budgetSeconds: 1,
    maxSteps: null,
    device: "cpu",
    dataDir: null,
    trainer: settings.objective
      ? base.trainer
      : { kind: "synthetic", delayMs: 0, noise: settings.noiseSigma },
    proposer: {
      ...base.proposer,
      maxChanges: settings.maxChanges,
      maxFilterRejections: settings.maxFilterRejections,
      historyWindow: settings.historyWindow,
    },
    acceptance: {
      mode: settings.acceptance,
      k: settings.k,
      minSigma: settings.minSigma,
      baselineRepeats: settings.baselineRepeats,
    },
    // Level 1.5 and Level 2 would change the search around the mechanism: off.
    level15: { ...base.level15, every: settings.iterations + 1 },
    level2: { ...base.level2, everyCycles: 0, retireWindow: 0 },
    activeParams: null,
    mechanisms: [],
    searchSpace: params,
    startConfig: defaultConfig(params),
  };
}

interface SeedRun {
  readonly sandbox: SandboxLike;
  readonly mechanism: HarnessMechanism | null;
  readonly params: readonly ParamSpec[];
  readonly settings: HarnessSettings;
  readonly base: ResolvedRunConfig;
  readonly seed: number;
}

async function runSeed(
  { sandbox, mechanism, params, settings, base, seed }: SeedRun,
  latencies: Map<HookName, number[]>,
  onTrace: TraceSink | undefined,
): Promise<SeedSummary> {
  const dir = mkdtempSync(path.join(tmpdir(), "bilevel-mechanism-test-"));
  const store = RunStore.open(dir);
  const recorded: TraceEvent[] = [];
  try {
    const config = harnessRunConfig(base, params, settings, seed);
    const loop = new BilevelLoop({
      store,
      config,
      trainer: settings.objective
        ? createTrainer(config, params)
        : new SyntheticTrainer(params, 0, settings.noiseSigma),
      sandbox: onTrace ? recordingSandbox(sandbox, seed, (e) => recorded.push(e)) : sandbox,
      proposer: new OfflineProposer(),
      strategist: new RuleStrategist(config.level15),
      researcher: new LibraryResearcher(),
      syntheticTrace,
      startMechanisms: mechanism ? [{ file: mechanism.fileName, source: mechanism.source }] : [],
    });
    await loop.run();
    const names = new Map(store.mechanisms().map((m) => [m.id, m.name]));
    onTrace?.(seedEvents(seed, recorded, store.trials(), store.ledger(), names));
    return summarise(store, params, seed, latencies);
  } finally {
    for (const m of store.mechanisms()) if (m.status === "active") await sandbox.unload(m.id);
    store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** One seed's summary, read back from its store. */
function summarise(
  store: RunStore,
  params: readonly ParamSpec[],
  seed: number,
  latencies: Map<HookName, number[]>,
): SeedSummary {
  const trials = store.trials();
  const search = trials.filter((t) => t.kind === "search");
  const baseline = trials.find((t) => t.kind === "baseline" && t.seed === seed);
  if (baseline?.valBpb == null)
    throw new Error(`the default config does not train: ${baseline?.message ?? "no baseline"}`);
  let best: TrialRow = baseline;
  for (const t of search) if (t.valBpb !== null && t.valBpb < (best.valBpb ?? Infinity)) best = t;
  const ledger = store.ledger();
  const count = (outcome: string) => ledger.filter((l) => l.outcome === outcome).length;
  const calls = zeroCounts();
  const faults: HarnessFault[] = [];
  const guideSamples: string[] = [];
  for (const l of ledger) {
    calls[l.hook] += 1;
    latencies.set(l.hook, [...(latencies.get(l.hook) ?? []), l.latencyMs]);
    const text = (l.detail as { text?: Json }).text;
    if (l.outcome === "guided" && typeof text === "string") {
      const sample = text.slice(0, 200);
      if (guideSamples.length < MAX_GUIDE_SAMPLES && !guideSamples.includes(sample))
        guideSamples.push(sample);
    }
    const error = (l.detail as { error?: { code?: string; message?: string } }).error;
    if (l.outcome === "fault" && error) {
      faults.push({
        iteration: l.iteration,
        hook: l.hook,
        code: error.code ?? "?",
        message: error.message ?? "",
      });
    }
  }
  const row = store.mechanisms()[0];
  if (faults.length === 0 && row?.status === "quarantined") faults.push(quarantineFault(store, row));
  const failures: Partial<Record<TrialStatus, number>> = {};
  for (const t of search) if (t.status !== "ok") failures[t.status] = (failures[t.status] ?? 0) + 1;
  return {
    seed,
    baseline: round(baseline.valBpb),
    best: round(best.valBpb ?? baseline.valBpb),
    bestIteration: best.iteration,
    trials: search.length,
    kept: search.filter((t) => t.kept).length,
    failures,
    calls,
    guided: count("guided"),
    guideSamples,
    suggested: count("suggested"),
    invalidSuggestions: count("invalid-suggestion"),
    rejected: count("rejected"),
    modified: count("modified"),
    invalidModifications: count("invalid-modification"),
    skipped: store.events().filter((e) => e.kind === "no-trial").length,
    faults,
    quarantined: row !== undefined && row.status !== "active",
    trajectory: fingerprint(params, search),
  };
}

/** A quarantine that no hook call caused: failed validation on the live trace, or the time budget. */
function quarantineFault(store: RunStore, row: MechanismRow): HarnessFault {
  const event = store
    .events()
    .find((e) => e.kind === "quarantined" && (e.data as { id?: Json }).id === row.id);
  const overBudget = row.reason?.startsWith("over its time budget") ?? false;
  const refused = row.validation && !row.validation.ok ? row.validation.error : null;
  return {
    iteration: event?.iteration ?? 0,
    hook: overBudget ? "budget" : "validation",
    code: overBudget ? "time-budget" : (refused?.code ?? "quarantined"),
    message: row.reason ?? "",
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

/** sha256 of a trial sequence (iteration, config, status, score): equal means identical behaviour. */
export function fingerprint(params: readonly ParamSpec[], trials: readonly TrialRow[]): string {
  const hash = createHash("sha256");
  for (const t of trials) {
    hash.update(`${t.iteration}|${spaceKey(params, t.config)}|${t.status}|${t.valBpb ?? "-"}\n`);
  }
  return hash.digest("hex");
}
