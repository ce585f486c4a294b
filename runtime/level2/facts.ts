// The run's rules as a Level 2 session must know them: budget, acceptance, what a mechanism sees,
// what the loop does with what it returns, and how it is judged. Every sentence of `formatFacts`
// states what the loop does today (runtime/loop.ts, level1/iteration.ts, level2/steward.ts), with
// this run's numbers, so a model designing a mechanism does not have to guess; every round of a
// session carries it.
import type { ResolvedRunConfig } from "../config.ts";
import { decide, type NoiseEstimate } from "../level1/acceptance.ts";
import type { TrialRow } from "../store.ts";

export interface RunFacts {
  /** The session runs after this iteration (iterations are numbered from 1). */
  readonly iteration: number;
  readonly iterations: number;
  /** Iterations between two Level 2 sessions; 0: this run holds no further session. */
  readonly researchEvery: number;
  /** Iterations between two retirement checks (the Level 1.5 cadence). */
  readonly retireCheckEvery: number;
  readonly acceptance: {
    readonly mode: "noise-aware" | "strict";
    readonly k: number;
    readonly noise: NoiseEstimate | null;
    /** The improvement a trial must beat to be kept (the acceptance rule's own threshold). */
    readonly threshold: number;
  };
  /** val_bpb of the run seed's baseline: the first incumbent; null when it failed or is not run yet. */
  readonly baseline: number | null;
  readonly restartEvery: number;
  readonly historyWindow: number;
  readonly maxChanges: number;
  readonly maxFilterRejections: number;
  readonly retireWindow: number;
  readonly maxActiveMechanisms: number;
  /** false: a validated mechanism waits for a person's approval before it acts. */
  readonly autoActivate: boolean;
  readonly limits: {
    readonly hookTimeoutMs: number;
    readonly capabilityCallBudget: number;
    readonly maxStateBytes: number;
    readonly maxLogLines: number;
    readonly mechanismBudgetMs: number;
    readonly maxOverruns: number;
  };
}

/** The facts of `config` after iteration `iteration`, with the measured noise and the stored trials. */
export function runFacts(input: {
  readonly config: ResolvedRunConfig;
  readonly iteration: number;
  readonly noise: NoiseEstimate | null;
  readonly trials: readonly TrialRow[];
}): RunFacts {
  const { config, noise } = input;
  const { mode, k } = config.acceptance;
  const policy = config.policy;
  const baseline = input.trials.find(
    (t) => t.kind === "baseline" && t.seed === config.seed && t.valBpb !== null,
  );
  return {
    iteration: input.iteration,
    iterations: config.iterations,
    researchEvery: config.level2.everyCycles * config.level15.every,
    retireCheckEvery: config.level15.every,
    // Scores 0 and 0: the threshold depends only on the mode, k and σ.
    acceptance: { mode, k, noise, threshold: decide(mode, 0, 0, noise, k).threshold },
    baseline: baseline?.valBpb ?? noise?.mean ?? null,
    restartEvery: config.level1?.restartEvery ?? 0,
    historyWindow: config.proposer.historyWindow,
    maxChanges: config.proposer.maxChanges,
    maxFilterRejections: config.proposer.maxFilterRejections,
    retireWindow: config.level2.retireWindow,
    maxActiveMechanisms: policy.maxActiveMechanisms,
    autoActivate: policy.autoActivate,
    limits: {
      hookTimeoutMs: policy.hookTimeoutMs,
      capabilityCallBudget: policy.capabilityCallBudget,
      maxStateBytes: policy.maxStateBytes,
      maxLogLines: policy.maxLogLines,
      mechanismBudgetMs: policy.mechanismBudgetMs,
      maxOverruns: policy.maxOverruns,
    },
  };
}

const bpb = (v: number) => v.toFixed(4);

function budgetLine(f: RunFacts): string {
  const left = Math.max(0, f.iterations - f.iteration);
  const start = f.autoActivate
    ? `a mechanism validated now acts from iteration ${f.iteration + 1}`
    : "a mechanism validated now waits for a person's approval, and acts from the iteration after it";
  const next =
    f.researchEvery > 0 && f.iteration + f.researchEvery <= f.iterations
      ? ` The next research session is after iteration ${f.iteration + f.researchEvery}.`
      : " No further research session is due in this run.";
  return `- Budget: this session runs after iteration ${f.iteration} of ${f.iterations} (numbered from 1): ${left} iteration(s) left, one trial each at most; ${start}.${next}`;
}

function acceptanceLines(f: RunFacts): string[] {
  const { mode, k, noise, threshold } = f.acceptance;
  const first =
    f.baseline === null
      ? "the start config's baseline run"
      : `the start config's baseline run on the run seed (val_bpb ${bpb(f.baseline)})`;
  const sigma = noise
    ? `σ = ${bpb(noise.sigma)}: the standard deviation of val_bpb over ${noise.n} baseline run(s) of the start config`
    : "σ is not measured";
  const rule =
    mode === "strict" || noise === null
      ? "a trial is kept when Δ < 0 (any gain)"
      : `a trial is kept only when Δ < −k·σ = −${k} × ${bpb(noise.sigma)} = −${bpb(threshold)}; a smaller gain is treated as noise and discarded`;
  return [
    "- Scores: val_bpb, lower is better. Δ (delta) = a trial's val_bpb minus the incumbent's val_bpb when it ran (negative = better).",
    `  The first incumbent is ${first}; each kept trial becomes the incumbent.${
      f.restartEvery > 0
        ? ` Every ${f.restartEvery} iterations the incumbent restarts from the best trial so far.`
        : ""
    }`,
    `- Acceptance (${mode}): ${rule}. ${sigma}. A failed trial (no val_bpb: invalid config, oom, diverged, timeout, crashed) is never kept.`,
  ];
}

/** The facts as prompt lines: the same text in every round of a session. */
export function formatFacts(f: RunFacts): string {
  const l = f.limits;
  return [
    "Facts of this run (the loop enforces these; the numbers are this run's settings):",
    budgetLine(f),
    ...acceptanceLines(f),
    `- ctx.history: the last ${f.historyWindow} search trials (baselines excluded), oldest first; empty before the first trial. ctx.incumbent.valBpb and ctx.best may be null.`,
    `- Each iteration: guide, then suggest, then each proposal goes through the filters until one is accepted. A rejected proposal goes back to the proposer with the reason, at most ${f.maxFilterRejections} time(s): when all ${f.maxFilterRejections + 1} proposals of an iteration are rejected, it has no trial. The accepted proposal is trained, then observe sees the trial.`,
    `- The proposer changes at most ${f.maxChanges} parameter(s) per proposal. A suggestion or a modify is not held to that number, but each change must be to an active (not frozen) parameter, inside its range and step rules, and the result must keep every constraint; otherwise it is ignored (ledger: invalid-suggestion, invalid-modification) and the proposer is asked instead, or the proposal goes on unmodified.`,
    `- Limits per hook call: ${l.hookTimeoutMs} ms, ${l.capabilityCallBudget} capability calls, ${l.maxLogLines} log lines; the state is at most ${l.maxStateBytes} bytes of JSON. A mechanism's hook time over ${l.mechanismBudgetMs} ms in one iteration is an overrun; more than ${l.maxOverruns} overruns quarantine it.`,
    ...judgementLines(f),
  ].join("\n");
}

function judgementLines(f: RunFacts): string[] {
  const retire =
    f.retireWindow > 0
      ? `Checked every ${f.retireCheckEvery} iterations: once active for ${f.retireWindow} iterations, a mechanism that acted in the last ${f.retireWindow} (suggested, modified or rejected a proposal, or returned guide text) without any of those acts leading to a kept trial is retired; one that did not act at all is left alone. What leads to a trial: a suggestion or modify of the proposal that was trained, and guide text when the LLM proposer wrote that proposal (the offline proposer ignores guidance). A rejection leads to no trial, so it never earns credit.`
      : "Mechanisms are not retired in this run (level2.retireWindow is 0).";
  return [
    `- How a mechanism is judged: a fault in any hook (a throw, a timeout, an invalid result or state, a capability call it may not make) quarantines it for the rest of the run. ${retire} At most ${f.maxActiveMechanisms} mechanism(s) are active at once.`,
  ];
}
