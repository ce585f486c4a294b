// Drive a compiled mechanism's hooks through a scenario (runtime/mechanism-scenarios.ts), iteration
// by iteration, in the loop's order: init once, then guide, suggest, filter (a valid suggestion
// first, then the scenario's proposal if the suggestion is rejected), the scripted trial, observe.
// The mechanism's state and capability data carry over from call to call as in a run. The first
// fault ends the scenario, with the hook, the iteration and the mechanism's own line:column.
import type {
  Change,
  Config,
  FilterVerdict,
  HookName,
  Json,
  ParamSpec,
  Proposal,
  Trial,
} from "../mechanism-api/index.d.ts";
import { EMPTY_CAPABILITIES } from "../sandbox/index.ts";
import type {
  CapabilityState,
  CompiledMechanism,
  HookContextData,
  HookOutcome,
  SandboxError,
} from "../sandbox/types.ts";
import { applyChanges, checkChanges, defaultConfig, effectiveChanges, withPrevious } from "./changes.ts";
import { type ChainRule, filterStep } from "./level1/filter-chain.ts";
import type { Scenario, ScenarioStep } from "./mechanism-scenarios.ts";
import type { SandboxLike } from "./mechanisms.ts";

export interface ScenarioResult {
  readonly name: string;
  readonly description: string;
  readonly ok: boolean;
  /** Iterations driven (up to the fault) and hook calls made. */
  readonly iterations: number;
  readonly calls: number;
  /** The fault, and the iteration it happened at (0: init). */
  readonly error?: SandboxError;
  readonly iteration?: number;
}

class Fault extends Error {
  readonly error: SandboxError;
  readonly iteration: number;
  constructor(error: SandboxError, iteration: number) {
    super(error.message);
    this.error = error;
    this.iteration = iteration;
  }
}

/** One scenario's run of the mechanism: what its hooks see, and what they have kept. */
class Drive {
  state: Json = {};
  capabilities: CapabilityState = EMPTY_CAPABILITIES;
  calls = 0;
  incumbent: { config: Config; valBpb: number | null };
  best: { config: Config; valBpb: number } | null;
  readonly history: Trial[] = [];
  readonly params: ParamSpec[];
  private readonly sandbox: SandboxLike;
  private readonly id: string;
  private readonly compiled: CompiledMechanism;
  private readonly scenario: Scenario;
  private readonly historyWindow: number;

  constructor(
    sandbox: SandboxLike,
    id: string,
    compiled: CompiledMechanism,
    scenario: Scenario,
    params: readonly ParamSpec[],
    historyWindow: number,
  ) {
    this.sandbox = sandbox;
    this.id = id;
    this.compiled = compiled;
    this.scenario = scenario;
    this.historyWindow = historyWindow;
    this.params = params.map((p) =>
      scenario.frozen.includes(p.name) ? { ...p, active: false, frozen: true } : { ...p, active: true },
    );
    const start = defaultConfig(params);
    this.incumbent = { config: start, valBpb: scenario.baseline };
    this.best = { config: start, valBpb: scenario.baseline };
  }

  has(hook: HookName): boolean {
    return this.compiled.manifest.hooks.includes(hook);
  }

  context(iteration: number): HookContextData {
    return {
      iteration,
      params: this.params,
      incumbent: this.incumbent,
      best: this.best,
      history: this.history.slice(-this.historyWindow),
      // The scenario's threshold as a noise-aware rule with k = 1 (the run default), σ = threshold.
      acceptance: {
        rule: "noise-aware",
        k: 1,
        sigma: this.scenario.threshold,
        threshold: this.scenario.threshold,
      },
      seed: 1,
    };
  }

  /** Call a hook; a fault ends the scenario. Returns the hook's result value. */
  async call(hook: HookName, iteration: number, argument?: Proposal | Trial): Promise<unknown> {
    const outcome: HookOutcome = await this.sandbox.call({
      mechanismId: this.id,
      hook,
      context: this.context(iteration),
      state: this.state,
      capabilities: this.capabilities,
      ...(argument === undefined ? {} : { argument }),
    });
    this.calls++;
    if (!outcome.ok) throw new Fault(outcome.error, iteration);
    this.state = outcome.state;
    this.capabilities = outcome.capabilities;
    return outcome.result.value;
  }

  /** As a run hands it to `filter`: each change with the incumbent's value it replaces. */
  proposal(changes: readonly Change[], source: Proposal["source"], rationale: string): Proposal {
    const base = this.incumbent.config;
    return { changes: withPrevious(base, changes), rationale, source, config: applyChanges(base, changes) };
  }

  /** What a run checks a mechanism's changes against: the incumbent, and the parameters not frozen. */
  private rule(): ChainRule {
    return { base: this.incumbent.config, active: this.params.filter((p) => !p.frozen).map((p) => p.name) };
  }

  /**
   * A suggestion as the run would use it: unchanged values dropped, then valid changes of active
   * parameters only (an invalid one is ignored, and never filtered).
   */
  suggestion(value: unknown): Proposal | null {
    const s = value as { changes?: Change[]; rationale?: string } | null;
    if (!s?.changes) return null;
    const { base, active } = this.rule();
    const changes = effectiveChanges(base, s.changes);
    const problems = checkChanges(changes, this.params, { active, base });
    return problems.length === 0 ? this.proposal(changes, "mechanism", s.rationale ?? "") : null;
  }

  /**
   * The proposal the filter lets through, or null if every one was rejected: its verdict applied by
   * the run's own rule (filterStep), so an invalid modification is ignored as in a run.
   */
  async filtered(iteration: number, offers: readonly Proposal[]): Promise<Proposal | null> {
    for (const offer of offers) {
      if (!this.has("filter")) return offer;
      const verdict = (await this.call("filter", iteration, offer)) as FilterVerdict;
      const step = filterStep(verdict, offer.changes, this.rule(), this.params);
      if (step.kind === "rejected") continue;
      return step.kind === "modified" ? this.proposal(step.changes, offer.source, offer.rationale) : offer;
    }
    return null;
  }

  /** The trial the step scripts for `proposal`, kept under the scenario's acceptance threshold. */
  trial(iteration: number, proposal: Proposal, step: ScenarioStep): Trial {
    const incumbent = this.incumbent.valBpb;
    const kept =
      step.valBpb !== null && (incumbent === null || step.valBpb < incumbent - this.scenario.threshold);
    const delta =
      step.valBpb !== null && incumbent !== null ? Number((step.valBpb - incumbent).toFixed(6)) : null;
    const id = this.history.length + 2; // trial 1 is the baseline
    return {
      id,
      iteration,
      config: proposal.config,
      changes: proposal.changes,
      status: step.status,
      valBpb: step.valBpb,
      kept,
      delta,
    };
  }

  async iteration(i: number, step: ScenarioStep): Promise<void> {
    if (step.restart && this.best) this.incumbent = { ...this.best };
    if (this.has("guide")) await this.call("guide", i);
    const suggested = this.has("suggest") ? this.suggestion(await this.call("suggest", i)) : null;
    const scripted = this.proposal(step.changes, "offline", `scenario ${this.scenario.name}, iteration ${i}`);
    const chosen = await this.filtered(i, suggested ? [suggested, scripted] : [scripted]);
    if (!chosen) return; // every proposal rejected: no trial this iteration, as in a run
    const trial = this.trial(i, chosen, step);
    if (this.has("observe")) await this.call("observe", i, trial);
    this.history.push(trial);
    if (trial.kept && trial.valBpb !== null) this.incumbent = { config: trial.config, valBpb: trial.valBpb };
    if (trial.valBpb !== null && (this.best === null || trial.valBpb < this.best.valBpb))
      this.best = { config: trial.config, valBpb: trial.valBpb };
  }
}

/** Run `compiled` through `scenario` in `sandbox` (loaded under a fresh id, unloaded after). */
export async function runScenario(
  sandbox: SandboxLike,
  compiled: CompiledMechanism,
  scenario: Scenario,
  params: readonly ParamSpec[],
  historyWindow: number,
): Promise<ScenarioResult> {
  const id = `scenario-${scenario.name}-${compiled.sourceHash.slice(0, 12)}`;
  const head = { name: scenario.name, description: scenario.description };
  const loaded = await sandbox.load(id, compiled);
  if (!loaded.ok) return { ...head, ok: false, iterations: 0, calls: 0, error: loaded.error, iteration: 0 };
  const drive = new Drive(sandbox, id, compiled, scenario, params, historyWindow);
  let done = 0;
  try {
    if (drive.has("init")) await drive.call("init", 0);
    for (const [i, step] of scenario.steps.entries()) {
      await drive.iteration(i + 1, step);
      done = i + 1;
    }
    return { ...head, ok: true, iterations: done, calls: drive.calls };
  } catch (error) {
    if (!(error instanceof Fault)) throw error;
    return {
      ...head,
      ok: false,
      iterations: done,
      calls: drive.calls,
      error: error.error,
      iteration: error.iteration,
    };
  } finally {
    await sandbox.unload(id);
  }
}
