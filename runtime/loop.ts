// The bilevel loop. Level 1 every iteration (guide/suggest -> propose -> filter -> train ->
// accept -> observe), Level 1.5 every K iterations, Level 2 every M cycles. Each phase ends in
// one SQLite transaction plus a checkpoint, so a run killed anywhere resumes where it stopped:
// a phase that did not commit is redone, a trial that did not finish is rerun.
import path from "node:path";
import type { Change, Config, Json, ParamSpec, Proposal, Trial } from "../mechanism-api/index.d.ts";
import { EMPTY_CAPABILITIES } from "../sandbox/index.ts";
import type { DryRunTrace, HookContextData, SandboxError, ValidationReport } from "../sandbox/types.ts";
import type { Trainer, TrainerProgress, TrialOutcome } from "../trainer/types.ts";
import { decide, estimateNoise, type NoiseEstimate } from "./acceptance.ts";
import { applyChanges, checkChanges, defaultConfig, describeChanges, effectiveChanges } from "./changes.ts";
import { ConfigError, type RunConfig } from "./config.ts";
import type { Proposer } from "./level1.ts";
import { enforceCaps, type StrategyRequest } from "./level15.ts";
import { type Batch, describe, MechanismManager, type SandboxLike } from "./mechanisms.ts";
import { ACTING_OUTCOMES } from "./report.ts";
import type { EventLevel, MechanismOrigin, MechanismRow, RunStore, SearchConfig, TrialRow } from "./store.ts";

/** What the display shows at the start of an iteration. */
export interface IterationStatus {
  readonly best: number | null;
  readonly mechanisms: readonly string[];
  readonly strategy: string;
}

export interface LoopObserver {
  event?(level: EventLevel, message: string): void;
  iterationStart?(
    iteration: number,
    total: number,
    status: {
      readonly best: number | null;
      readonly mechanisms: readonly string[];
      readonly strategy: string;
    },
  ): void;
  trialStart?(iteration: number, description: string, budgetSeconds: number): void;
  trialProgress?(progress: TrainerProgress): void;
  trialEnd?(trial: TrialRow, best: number | null): void;
}

/** Level 1.5: returns the requested adjustment, or a reason why there is none. */
export interface Strategist {
  readonly kind: "llm" | "rules";
  decide(input: {
    iteration: number;
    current: SearchConfig;
    params: readonly ParamSpec[];
    trials: readonly TrialRow[];
    keptThisCycle: number;
  }): Promise<{ ok: true; request: StrategyRequest } | { ok: false; reason: string }>;
}

/** A Level 2 candidate: validated (ready to activate) or rejected, with the reason. */
export type ResearchResult =
  | {
      readonly status: "validated";
      readonly origin: MechanismOrigin;
      readonly name: string;
      readonly source: string;
      readonly report: ValidationReport;
    }
  | {
      readonly status: "rejected";
      readonly origin: MechanismOrigin;
      readonly name: string;
      readonly source: string;
      readonly reason: string;
      readonly report: ValidationReport | null;
    }
  | { readonly status: "none"; readonly reason: string };

/** Level 2: one research session (LLM-generated code, or a pick from the built-in library offline). */
export interface Researcher {
  readonly kind: "llm" | "library";
  research(input: {
    iteration: number;
    trace: DryRunTrace;
    trials: readonly TrialRow[];
    params: readonly ParamSpec[];
    active: readonly { name: string; description: string; hooks: readonly string[] }[];
    tried: readonly string[];
    validate: (source: string) => Promise<ValidationReport>;
  }): Promise<ResearchResult>;
}

export interface LoopDeps {
  readonly store: RunStore;
  readonly config: RunConfig;
  readonly params: readonly ParamSpec[];
  readonly trainer: Trainer;
  readonly sandbox: SandboxLike;
  readonly proposer: Proposer;
  readonly strategist: Strategist;
  readonly researcher: Researcher;
  /** Builds the fallback dry-run trace when the live one lacks a proposal or trial. */
  readonly syntheticTrace: (params: readonly ParamSpec[], seed?: number) => DryRunTrace;
  /** Hand-written mechanisms to activate at the start: file name and source. */
  readonly startMechanisms?: readonly { readonly file: string; readonly source: string }[];
  readonly observer?: LoopObserver;
  readonly signal?: AbortSignal;
}

export interface RunSummary {
  readonly iterations: number;
  readonly trials: number;
  readonly kept: number;
  readonly best: { readonly valBpb: number; readonly config: Config; readonly trialId: number } | null;
  readonly baseline: NoiseEstimate | null;
  readonly stopped: boolean;
}

export function toApiTrial(t: TrialRow): Trial {
  return {
    id: t.id,
    iteration: t.iteration,
    config: t.config,
    changes: t.changes,
    status: t.status,
    valBpb: t.valBpb,
    kept: t.kept,
    delta: t.delta,
  };
}

/** Settings that every stored trial depends on: a resumed run must keep them. */
export const FIXED_ON_RESUME: readonly (keyof RunConfig)[] = [
  "seed",
  "budgetSeconds",
  "maxSteps",
  "device",
  "dataDir",
  "trainer",
  "acceptance",
  "startConfig",
];

export class BilevelLoop {
  private readonly d: LoopDeps;
  private readonly mechanisms: MechanismManager;
  private trials: TrialRow[] = [];
  private search!: SearchConfig;
  private noise: NoiseEstimate | null = null;
  private readonly startConfig: Config;

  constructor(deps: LoopDeps) {
    this.d = deps;
    this.mechanisms = new MechanismManager(deps.store, deps.sandbox, (m) => this.emit("2", m));
    this.startConfig = { ...defaultConfig(deps.params), ...deps.config.startConfig };
  }

  private emit(level: EventLevel, message: string): void {
    this.d.observer?.event?.(level, message);
  }

  private event(iteration: number, level: EventLevel, kind: string, message: string, data: Json = {}): void {
    this.d.store.addEvent(iteration, level, kind, message, data);
    this.emit(level, message);
  }

  /** An event that belongs to a phase: shown now, stored with the phase's commit. */
  private queueEvent(
    batch: Batch,
    iteration: number,
    level: EventLevel,
    kind: string,
    message: string,
  ): void {
    batch.push(() => this.d.store.addEvent(iteration, level, kind, message));
    this.emit(level, message);
  }

  private commit(batch: Batch, checkpoint?: string): void {
    this.d.store.transaction(() => {
      for (const write of batch) write();
      if (checkpoint) this.d.store.checkpoint(checkpoint);
    });
    batch.length = 0;
  }

  // ---- derived state (always recomputed from stored trials, so resume is exact)

  private incumbent(): { config: Config; valBpb: number | null } {
    const kept = this.trials.filter((t) => t.kind === "search" && t.kept).at(-1);
    if (kept) return { config: kept.config, valBpb: kept.valBpb };
    // Search trials all use the run seed: compare them with the baseline of that seed (common
    // random numbers); the other seeds only measure σ. The mean stands in if that one failed.
    const sameSeed = this.trials.find((t) => t.kind === "baseline" && t.seed === this.d.config.seed);
    return { config: this.startConfig, valBpb: sameSeed?.valBpb ?? this.noise?.mean ?? null };
  }

  private best(): { config: Config; valBpb: number; trialId: number } | null {
    let best: TrialRow | null = null;
    for (const t of this.trials) {
      if (t.valBpb !== null && t.status === "ok" && (best === null || t.valBpb < (best.valBpb ?? Infinity)))
        best = t;
    }
    return best && best.valBpb !== null
      ? { config: best.config, valBpb: best.valBpb, trialId: best.id }
      : null;
  }

  private searchTrials(): TrialRow[] {
    return this.trials.filter((t) => t.kind === "search");
  }

  private context(iteration: number): HookContextData {
    const best = this.best();
    return {
      iteration,
      // Level 1.5's frozen set binds mechanisms too: they see it, and changes to frozen parameters are refused.
      params: this.d.params.map((p) => (this.search.frozen.includes(p.name) ? { ...p, frozen: true } : p)),
      incumbent: this.incumbent(),
      best: best ? { config: best.config, valBpb: best.valBpb } : null,
      history: this.searchTrials().slice(-this.d.config.proposer.historyWindow).map(toApiTrial),
      seed: this.d.config.seed,
    };
  }

  private aborted(): boolean {
    return this.d.signal?.aborted ?? false;
  }

  // ---- the run

  async run(): Promise<RunSummary> {
    const { store, config } = this.d;
    const mode = this.d.proposer.kind === "llm" ? "online" : "offline";
    const before = store.runConfig();
    if (before === null) {
      store.transaction(() => {
        store.setMeta("run_config", JSON.stringify(config));
        store.setMeta("created_at", new Date().toISOString());
        store.setMeta("mode", mode);
        store.addEvent(
          0,
          "run",
          "start",
          `run ${config.name} started (${mode === "online" ? "LLM proposer" : "OFFLINE: no LLM endpoint, non-LLM proposer, rule-based Level 1.5, Level 2 from the built-in mechanism library"})`,
        );
      });
    } else {
      const changed = (Object.keys(config) as (keyof RunConfig)[]).filter(
        (k) => JSON.stringify(before[k]) !== JSON.stringify(config[k]),
      );
      const refused = changed.filter((k) => FIXED_ON_RESUME.includes(k));
      if (refused.length > 0) {
        throw new ConfigError(
          `cannot resume with a different ${refused.join(", ")}: the baselines (σ) and every trial so far were measured with the stored values; start a new run instead`,
        );
      }
      const previousMode = store.getMeta("mode");
      store.transaction(() => {
        store.setMeta("run_config", JSON.stringify(config));
        if (previousMode !== mode) store.setMeta("mode", `${previousMode} then ${mode}`);
        store.addEvent(
          0,
          "run",
          "resume",
          `run ${config.name} resumed (${mode})${changed.length > 0 ? `; changed: ${changed.map((k) => `${k} ${JSON.stringify(before[k])} -> ${JSON.stringify(config[k])}`).join(", ")}` : ""}`,
        );
      });
    }
    this.emit("run", `run ${config.name} ${before === null ? "started" : "resumed"} (${mode})`);
    store.setMeta("status", "running");
    this.trials = store.trials();
    const searchRows = store.searchConfigs();
    this.search = searchRows.at(-1)?.config ?? this.initialSearchConfig();
    if (searchRows.length === 0)
      store.addSearchConfig(0, 0, "initial", this.search, "all listed parameters active");
    await this.mechanisms.restore(0);

    await this.runBaselines();
    if (this.aborted()) return this.finish(true);
    await this.activateStartMechanisms();

    for (let it = 1; it <= config.iterations; it++) {
      if (store.hasCheckpoint(`iter:${it}:done`)) {
        // A run killed between iterations may still owe this one its Level 1.5/2 steps.
        await this.afterIteration(it);
        continue;
      }
      this.d.observer?.iterationStart?.(it, config.iterations, {
        best: this.best()?.valBpb ?? null,
        mechanisms: this.mechanisms.list().map((m) => m.name),
        strategy: this.search.strategy,
      });
      await this.processApprovals(it);
      if (!store.hasCheckpoint(`iter:${it}:proposed`)) await this.proposePhase(it);
      if (this.aborted()) return this.finish(true);
      await this.trainPhase(it);
      if (this.aborted()) return this.finish(true);
      await this.afterIteration(it);
      if (this.aborted()) return this.finish(true);
    }
    return this.finish(false);
  }

  private initialSearchConfig(): SearchConfig {
    const names = this.d.params.map((p) => p.name);
    const active = this.d.config.activeParams
      ? names.filter((n) => this.d.config.activeParams?.includes(n))
      : names;
    return { strategy: "balanced", active, frozen: names.filter((n) => !active.includes(n)), guidance: "" };
  }

  private finish(stopped: boolean): RunSummary {
    const { store } = this.d;
    store.setMeta("status", stopped ? "stopped" : "finished");
    store.writeResultsTsv();
    const best = this.best();
    if (!stopped) {
      this.event(
        this.d.config.iterations,
        "run",
        "finish",
        `run finished: best val_bpb ${best ? best.valBpb.toFixed(4) : "n/a"}`,
      );
    }
    return {
      iterations: this.d.config.iterations,
      trials: this.trials.length,
      kept: this.trials.filter((t) => t.kept).length,
      best,
      baseline: this.noise,
      stopped,
    };
  }

  // ---- baselines: σ for noise-aware acceptance

  private async runBaselines(): Promise<void> {
    const { config, store } = this.d;
    const repeats = config.acceptance.mode === "strict" ? 1 : config.acceptance.baselineRepeats;
    for (let r = 0; r < repeats; r++) {
      if (store.hasCheckpoint(`baseline:${r}`)) continue;
      if (this.aborted()) return;
      const seed = config.seed + r;
      const outcome = await this.train(0, this.startConfig, seed, `baseline ${r + 1}/${repeats}`);
      const row: Omit<TrialRow, "id"> = {
        iteration: 0,
        kind: "baseline",
        proposalId: null,
        seed,
        config: this.startConfig,
        changes: [],
        status: outcome.status,
        valBpb: outcome.valBpb,
        kept: false,
        delta: null,
        result: (outcome.result as unknown as Json) ?? null,
        message: outcome.message,
        durationMs: outcome.durationMs,
        description: `baseline run ${r + 1} (seed ${seed})`,
      };
      store.transaction(() => {
        const id = store.addTrial(row);
        this.trials.push({ ...row, id });
        store.checkpoint(`baseline:${r}`);
      });
      this.d.observer?.trialEnd?.({ ...row, id: this.trials.at(-1)?.id ?? 0 }, this.best()?.valBpb ?? null);
    }
    const values = this.trials
      .filter((t) => t.kind === "baseline" && t.valBpb !== null)
      .map((t) => t.valBpb as number);
    if (values.length === 0) {
      const last = this.trials.filter((t) => t.kind === "baseline").at(-1);
      throw new Error(
        `every baseline run failed (the starting config does not train): ${last ? `${last.status}: ${last.message}` : "no baseline ran"}; logs under ${path.join(store.dir, "trials")}`,
      );
    }
    this.noise = estimateNoise(values, config.acceptance.minSigma);
    if (!store.hasCheckpoint("baseline")) {
      const noise = this.noise;
      const message = `baseline val_bpb ${noise.mean.toFixed(4)} ± σ ${noise.sigma.toFixed(4)} over ${noise.n} run(s)`;
      store.transaction(() => {
        store.setMeta("noise", JSON.stringify(noise));
        store.addEvent(0, "1", "baseline", message, { ...noise });
        store.checkpoint("baseline");
      });
      this.emit("1", message);
    }
  }

  private async activateStartMechanisms(): Promise<void> {
    const { store } = this.d;
    if (store.hasCheckpoint("start-mechanisms")) return;
    for (const [index, m] of (this.d.startMechanisms ?? []).entries()) {
      if (store.hasCheckpoint(`start-mechanism:${index}`)) continue;
      const name = path.basename(m.file).replace(/\.ts$/, "");
      const report = await this.d.sandbox.validate(m.source, this.liveTrace(0), path.basename(m.file));
      if (!report.ok) {
        throw new Error(
          `mechanism ${m.file} failed validation: ${report.error ? describe(report.error) : "unknown error"}`,
        );
      }
      await this.install(
        0,
        { status: "validated", origin: "file", name, source: m.source, report },
        `start-mechanism:${index}`,
      );
    }
    store.checkpoint("start-mechanisms");
  }

  // ---- Level 1, phase A: guide, suggest, propose, filter

  private async proposePhase(it: number): Promise<void> {
    const { config, params, store } = this.d;
    const batch: Batch = [];
    const ctx = this.context(it);
    const incumbent = ctx.incumbent;

    const guidance: { mechanism: string; text: string }[] = [];
    for await (const r of this.mechanisms.callAll("guide", ctx, batch)) {
      const text = r.result.value;
      if (text !== null && text.trim() !== "")
        guidance.push({ mechanism: r.mechanism.name, text: text.slice(0, 500) });
      this.mechanisms.record(batch, it, r.mechanism, "guide", r.outcome, null, text ? "guided" : "silent", {
        text: text ?? null,
      });
    }

    let suggestion: {
      mechanismId: string;
      name: string;
      changes: Change[];
      rationale: string;
      /** Writes the suggest ledger row once the proposal it became has an id. */
      record: (proposalId: number, target: Batch) => void;
    } | null = null;
    for await (const r of this.mechanisms.callAll("suggest", ctx, batch)) {
      const value = r.result.value;
      if (value === null || suggestion !== null) {
        this.mechanisms.record(
          batch,
          it,
          r.mechanism,
          "suggest",
          r.outcome,
          null,
          value ? "overridden" : "silent",
          {
            ...(value ? { changes: value.changes as unknown as Json } : {}),
          },
        );
        continue;
      }
      const changes = effectiveChanges(incumbent.config, value.changes);
      // Level 1.5's frozen set binds mechanisms too: the search config is the outer levels' lever.
      const errors = checkChanges(changes, params, { active: this.search.active });
      if (errors.length > 0) {
        this.mechanisms.record(batch, it, r.mechanism, "suggest", r.outcome, null, "invalid-suggestion", {
          changes: value.changes as unknown as Json,
          errors,
        });
        continue;
      }
      suggestion = {
        mechanismId: r.mechanism.id,
        name: r.mechanism.name,
        changes,
        rationale: value.rationale,
        record: (pid, target) =>
          this.mechanisms.record(target, it, r.mechanism, "suggest", r.outcome, pid, "suggested", {
            changes: changes as unknown as Json,
            rationale: value.rationale,
          }),
      };
    }

    const rejected: { changes: readonly Change[]; reason: string }[] = [];
    let accepted: number | null = null;
    for (let attempt = 0; attempt <= config.proposer.maxFilterRejections && accepted === null; attempt++) {
      if (this.aborted()) return;
      let source: Proposal["source"];
      let changes: Change[];
      let rationale: string;
      let mechanismId: string | null = null;
      if (suggestion !== null && attempt === 0) {
        source = "mechanism";
        ({ changes, rationale, mechanismId } = { ...suggestion });
        this.queueEvent(
          batch,
          it,
          "1",
          "suggested",
          `${suggestion.name} suggested ${describeChanges(incumbent.config, changes)}`,
        );
      } else {
        const result = await this.d.proposer.propose({
          iteration: it,
          params,
          search: this.search,
          incumbent,
          best: ctx.best,
          history: this.searchTrials().slice(-config.proposer.historyWindow),
          crashLessons: this.crashLessons(),
          guidance,
          rejected,
          maxChanges: config.proposer.maxChanges,
          seed: config.seed,
          attempt,
        });
        if (!result.ok) {
          batch.push(() =>
            store.addProposal({
              iteration: it,
              attempt,
              source: this.d.proposer.kind,
              mechanismId: null,
              changes: [],
              rationale: "",
              config: null,
              status: "invalid",
              reason: result.reason,
            }),
          );
          this.queueEvent(batch, it, "1", "invalid-proposal", `invalid proposal: ${result.reason}`);
          break;
        }
        source = this.d.proposer.kind;
        changes = [...result.changes];
        rationale = result.rationale;
      }

      // Filters: each active mechanism may accept, reject or modify, in activation order.
      let verdict: { status: "accepted" } | { status: "rejected"; reason: string; by: string } = {
        status: "accepted",
      };
      const filterLedger: ((proposalId: number, target: Batch) => void)[] = [];
      if (suggestion !== null && attempt === 0) filterLedger.push(suggestion.record);
      // Each filter sees the proposal as the filters before it left it.
      for await (const r of this.mechanisms.callAll("filter", ctx, batch, () =>
        this.proposal(incumbent.config, changes, rationale, source),
      )) {
        const v = r.result.value;
        if (v.verdict === "reject") {
          verdict = { status: "rejected", reason: v.reason, by: r.mechanism.name };
          filterLedger.push((pid, target) =>
            this.mechanisms.record(target, it, r.mechanism, "filter", r.outcome, pid, "rejected", {
              reason: v.reason,
              changes: changes as unknown as Json,
            }),
          );
          break;
        }
        if (v.verdict === "modify") {
          const modified = effectiveChanges(incumbent.config, v.changes);
          const errors = checkChanges(modified, params, { active: this.search.active });
          if (errors.length > 0) {
            filterLedger.push((pid, target) =>
              this.mechanisms.record(
                target,
                it,
                r.mechanism,
                "filter",
                r.outcome,
                pid,
                "invalid-modification",
                {
                  errors,
                  changes: v.changes as unknown as Json,
                },
              ),
            );
            continue;
          }
          const before = changes;
          changes = modified;
          this.queueEvent(
            batch,
            it,
            "1",
            "modified",
            `${r.mechanism.name} modified the proposal: ${describeChanges(incumbent.config, before)} => ${describeChanges(incumbent.config, modified)} (${v.reason})`,
          );
          filterLedger.push((pid, target) =>
            this.mechanisms.record(target, it, r.mechanism, "filter", r.outcome, pid, "modified", {
              from: before as unknown as Json,
              to: modified as unknown as Json,
              reason: v.reason,
            }),
          );
          continue;
        }
        filterLedger.push((pid, target) =>
          this.mechanisms.record(target, it, r.mechanism, "filter", r.outcome, pid, "accepted", {}),
        );
      }

      const proposalRow = {
        iteration: it,
        attempt,
        source,
        mechanismId,
        changes,
        rationale,
        config: applyChanges(incumbent.config, changes),
        status: verdict.status,
        reason: verdict.status === "rejected" ? `${verdict.by}: ${verdict.reason}` : null,
      };
      // The proposal row goes first so that the ledger rows can point at it.
      batch.push(() => {
        const pid = store.addProposal(proposalRow);
        const ledgerRows: Batch = [];
        for (const write of filterLedger) write(pid, ledgerRows);
        for (const write of ledgerRows) write();
      });
      if (verdict.status === "rejected") {
        rejected.push({ changes, reason: verdict.reason });
        this.queueEvent(
          batch,
          it,
          "1",
          "rejected",
          `${verdict.by} rejected ${describeChanges(incumbent.config, changes)}: ${verdict.reason}`,
        );
      } else {
        accepted = attempt;
      }
    }
    if (accepted === null && rejected.length > config.proposer.maxFilterRejections) {
      this.queueEvent(
        batch,
        it,
        "1",
        "all-rejected",
        `every proposal of iteration ${it} was rejected by a filter: no trial`,
      );
    }
    this.mechanisms.saveStates(batch);
    this.commit(batch, `iter:${it}:proposed`);
  }

  private proposal(
    base: Config,
    changes: readonly Change[],
    rationale: string,
    source: Proposal["source"],
  ): Proposal {
    return { changes, rationale, source, config: applyChanges(base, changes) };
  }

  private crashLessons(): string[] {
    return this.searchTrials()
      .filter((t) => t.status !== "ok")
      .slice(-5)
      .map((t) => `${t.description} -> ${t.status}: ${t.message.slice(0, 160)}`);
  }

  // ---- Level 1, phase B: train, accept, observe

  private async trainPhase(it: number): Promise<void> {
    const { store, config } = this.d;
    const proposal = store.proposals(it).find((p) => p.status === "accepted" || p.status === "training");
    if (!proposal || proposal.config === null) {
      store.transaction(() => {
        store.addEvent(it, "1", "no-trial", `iteration ${it} produced no trainable proposal`);
        store.checkpoint(`iter:${it}:done`);
      });
      return;
    }
    const incumbent = this.incumbent();
    const description = `${describeChanges(incumbent.config, proposal.changes)}${proposal.mechanismId ? ` [suggested by ${proposal.mechanismId}]` : ""}`;
    const outcome = await this.train(it, proposal.config, config.seed, description);
    if (this.aborted() && outcome.message === "aborted") return;

    let kept = false;
    let delta: number | null = null;
    let reason: string = outcome.message;
    if (outcome.status === "ok" && outcome.valBpb !== null && incumbent.valBpb !== null) {
      const decision = decide(
        config.acceptance.mode,
        outcome.valBpb,
        incumbent.valBpb,
        this.noise,
        config.acceptance.k,
      );
      kept = decision.kept;
      delta = decision.delta;
      reason = decision.reason;
    }
    const row: Omit<TrialRow, "id"> = {
      iteration: it,
      kind: "search",
      proposalId: proposal.id,
      seed: config.seed,
      config: proposal.config,
      changes: proposal.changes,
      status: outcome.status,
      valBpb: outcome.valBpb,
      kept,
      delta,
      result: (outcome.result as unknown as Json) ?? null,
      message: outcome.status === "ok" ? reason : outcome.message,
      durationMs: outcome.durationMs,
      description,
    };
    const trialId = (this.trials.at(-1)?.id ?? 0) + 1;
    const trial: TrialRow = { ...row, id: trialId };

    const batch: Batch = [];
    const ctx = this.context(it);
    for await (const r of this.mechanisms.callAll("observe", ctx, batch, toApiTrial(trial))) {
      this.mechanisms.record(batch, it, r.mechanism, "observe", r.outcome, proposal.id, "observed", {});
    }
    this.mechanisms.saveStates(batch);
    store.transaction(() => {
      const id = store.addTrial(row);
      if (id !== trialId) throw new Error(`trial id mismatch: expected ${trialId}, got ${id}`);
      store.setProposalStatus(proposal.id, "trained");
      for (const write of batch) write();
      store.linkLedgerToTrial(id, proposal.id, it, proposal.source === "llm");
      store.addEvent(
        it,
        "1",
        kept ? "kept" : "discarded",
        `#${it} ${description}: ${outcome.valBpb?.toFixed(4) ?? outcome.status} — ${row.message}`,
      );
      store.checkpoint(`iter:${it}:done`);
    });
    this.trials.push(trial);
    this.d.observer?.trialEnd?.(trial, this.best()?.valBpb ?? null);
  }

  private async train(it: number, config: Config, seed: number, description: string): Promise<TrialOutcome> {
    const { config: run, store } = this.d;
    this.d.observer?.trialStart?.(it, description, run.budgetSeconds);
    const workDir = path.join(store.dir, "trials", `iter-${String(it).padStart(4, "0")}-seed-${seed}`);
    return this.d.trainer.run({
      config,
      budgetSeconds: run.budgetSeconds,
      ...(run.maxSteps !== null ? { maxSteps: run.maxSteps } : {}),
      seed,
      device: run.device,
      ...(run.dataDir !== null ? { dataDir: run.dataDir } : {}),
      workDir,
      onProgress: (p) => this.d.observer?.trialProgress?.(p),
      ...(this.d.signal ? { signal: this.d.signal } : {}),
    });
  }

  // ---- between iterations: Level 1.5, Level 2, retirement

  private async afterIteration(it: number): Promise<void> {
    const { config, store } = this.d;
    if (it % config.level15.every !== 0) return;
    const cycle = it / config.level15.every;
    if (!store.hasCheckpoint(`cycle:${cycle}:level15`)) await this.level15(it, cycle);
    if (config.level2.everyCycles > 0 && cycle % config.level2.everyCycles === 0) {
      if (!store.hasCheckpoint(`cycle:${cycle}:level2`)) await this.level2(it, cycle);
    }
    if (!store.hasCheckpoint(`cycle:${cycle}:retire`)) {
      await this.retire(it);
      store.checkpoint(`cycle:${cycle}:retire`);
    }
  }

  private async level15(it: number, cycle: number): Promise<void> {
    const { config, params, store } = this.d;
    const since = it - config.level15.every;
    const keptThisCycle = this.searchTrials().filter((t) => t.iteration > since && t.kept).length;
    const result = await this.d.strategist.decide({
      iteration: it,
      current: this.search,
      params,
      trials: this.trials,
      keptThisCycle,
    });
    if (!result.ok) {
      store.transaction(() => {
        store.addEvent(it, "1.5", "no-change", `Level 1.5 made no change: ${result.reason}`);
        store.checkpoint(`cycle:${cycle}:level15`);
      });
      this.emit("1.5", `Level 1.5 made no change: ${result.reason}`);
      return;
    }
    const { config: next, notes } = enforceCaps(this.search, result.request, params, config.level15);
    const changed = JSON.stringify(next) !== JSON.stringify(this.search);
    const froze = next.frozen.filter((p) => !this.search.frozen.includes(p));
    const unfroze = this.search.frozen.filter((p) => !next.frozen.includes(p));
    const summary = [
      `strategy ${next.strategy}`,
      froze.length > 0 ? `froze ${froze.join(", ")}` : "",
      unfroze.length > 0 ? `unfroze ${unfroze.join(", ")}` : "",
      `${next.active.length} active`,
      notes.length > 0 ? `${notes.length} request(s) refused by the caps` : "",
    ]
      .filter((x) => x !== "")
      .join("; ");
    store.transaction(() => {
      store.addSearchConfig(it, cycle, this.d.strategist.kind, next, result.request.rationale);
      store.addEvent(
        it,
        "1.5",
        changed ? "adjusted" : "unchanged",
        `Level 1.5 (${this.d.strategist.kind}): ${summary}`,
        {
          rationale: result.request.rationale,
          notes,
        },
      );
      store.checkpoint(`cycle:${cycle}:level15`);
    });
    this.search = next;
    this.emit("1.5", `Level 1.5 (${this.d.strategist.kind}): ${summary} — ${result.request.rationale}`);
  }

  /** The dry-run trace for validation: the live context, with the latest proposal and trial. */
  private liveTrace(it: number): DryRunTrace {
    const fallback = this.d.syntheticTrace(this.d.params, this.d.config.seed);
    const context = this.context(it);
    const last = this.searchTrials().at(-1);
    return {
      context,
      proposal: last
        ? this.proposal(context.incumbent.config, last.changes, "latest trial", "offline")
        : fallback.proposal,
      trial: last ? toApiTrial(last) : fallback.trial,
    };
  }

  private async level2(it: number, cycle: number): Promise<void> {
    const { config, store } = this.d;
    const rows = store.mechanisms();
    const active = this.mechanisms.list();
    if (active.length >= config.policy.maxActiveMechanisms) {
      store.transaction(() => {
        store.addEvent(
          it,
          "2",
          "skipped",
          `Level 2 skipped: ${active.length} mechanisms active (max ${config.policy.maxActiveMechanisms})`,
        );
        store.checkpoint(`cycle:${cycle}:level2`);
      });
      return;
    }
    this.event(
      it,
      "2",
      "session",
      `Level 2 research session (${this.d.researcher.kind === "llm" ? "LLM" : "offline: built-in library"})`,
    );
    const trace = this.liveTrace(it);
    const result = await this.d.researcher.research({
      iteration: it,
      trace,
      trials: this.trials,
      params: this.d.params,
      active: active.map((m) => ({
        name: m.name,
        description: m.manifest.description ?? "",
        hooks: m.manifest.hooks,
      })),
      tried: rows.map((r) => r.name),
      validate: (source) => this.d.sandbox.validate(source, trace),
    });
    await this.install(it, result, `cycle:${cycle}:level2`);
  }

  /** Record a Level 2 result (and activate it); `checkpoint` is written in the same transaction. */
  private async install(it: number, result: ResearchResult, checkpoint: string): Promise<void> {
    const { store, config } = this.d;
    if (result.status === "none") {
      store.transaction(() => {
        store.addEvent(it, "2", "none", `Level 2 produced no mechanism: ${result.reason}`);
        store.checkpoint(checkpoint);
      });
      this.emit("2", `Level 2 produced no mechanism: ${result.reason}`);
      return;
    }
    const id = `m${store.mechanisms().length + 1}-${result.name}`.slice(0, 80);
    const compiled = result.report?.compiled ?? null;
    const base: MechanismRow = {
      id,
      name: result.name,
      origin: result.origin,
      status: "rejected",
      source: result.source,
      js: compiled?.js ?? null,
      sourceHash: compiled?.sourceHash ?? null,
      jsHash: compiled?.jsHash ?? null,
      manifest: compiled?.manifest ?? result.report?.manifest ?? null,
      validation: result.report,
      state: {},
      capabilities: EMPTY_CAPABILITIES,
      reason: null,
      createdIteration: it,
      activatedIteration: null,
    };
    if (result.status === "rejected") {
      store.transaction(() => {
        store.upsertMechanism({ ...base, reason: result.reason });
        store.addEvent(it, "2", "rejected", `Level 2 rejected ${result.name}: ${result.reason}`, { id });
        store.checkpoint(checkpoint);
      });
      this.emit("2", `Level 2 rejected ${result.name}: ${result.reason}`);
      return;
    }
    if (!config.policy.autoActivate && result.origin !== "file") {
      store.transaction(() => {
        store.upsertMechanism({ ...base, status: "pending-approval" });
        store.addEvent(
          it,
          "2",
          "pending-approval",
          `${result.name} validated; waiting for: bilevel mechanism approve ${store.dir} ${id}`,
          { id },
        );
        store.checkpoint(checkpoint);
      });
      this.emit("2", `${result.name} validated and waits for approval (id ${id})`);
      return;
    }
    await this.activateRow(it, base, checkpoint);
  }

  private async activateRow(it: number, row: MechanismRow, checkpoint?: string): Promise<void> {
    const batch: Batch = [];
    const error: SandboxError | null = await this.mechanisms.activate(row, this.context(it), batch);
    const message = error
      ? `${row.name} failed to activate: ${describe(error)}`
      : `${row.name} activated (${row.origin}; hooks: ${row.manifest?.hooks.join(", ")})`;
    batch.push(() =>
      this.d.store.addEvent(it, "2", error ? "quarantined" : "activated", message, { id: row.id }),
    );
    this.commit(batch, checkpoint);
    this.emit("2", message);
  }

  private async processApprovals(it: number): Promise<void> {
    for (const row of this.d.store.mechanisms()) {
      if (row.status !== "approved") continue;
      if (this.mechanisms.list().length >= this.d.config.policy.maxActiveMechanisms) {
        this.d.store.setMechanismStatus(
          row.id,
          "pending-approval",
          "approved, but the active limit is reached",
        );
        continue;
      }
      await this.activateRow(it, row);
    }
  }

  private async retire(it: number): Promise<void> {
    const window = this.d.config.level2.retireWindow;
    if (window === 0) return;
    const ledger = this.d.store.ledger();
    const keptIds = new Set(this.trials.filter((t) => t.kept).map((t) => t.id));
    for (const m of [...this.mechanisms.list()]) {
      const row = this.d.store.mechanisms().find((r) => r.id === m.id);
      if (!row || row.activatedIteration === null || it - row.activatedIteration < window) continue;
      const recent = ledger.filter(
        (l) => l.mechanismId === m.id && l.iteration > it - window && ACTING_OUTCOMES.includes(l.outcome),
      );
      if (recent.length === 0) continue;
      const helped = recent.some((l) => l.trialId !== null && keptIds.has(l.trialId));
      if (!helped) {
        await this.mechanisms.deactivate(
          m.id,
          "retired",
          `fired ${recent.length} times in the last ${window} iterations without touching a kept trial`,
          it,
        );
      }
    }
  }
}
