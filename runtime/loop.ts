// The bilevel loop: orchestration and resume. Level 1 every iteration (runtime/level1/: guide,
// suggest, propose, filter, then train, accept, observe), Level 1.5 every K iterations
// (runtime/level15/), Level 2 every M cycles (runtime/level2/). Each phase ends in one SQLite
// transaction plus a checkpoint, so a run killed anywhere resumes where it stopped: a phase that
// did not commit is redone, a trial that did not finish is reattached (its job still runs) or rerun.
// Up to `parallel` trials are in flight at once (an executor runs them: runtime/executors/); the
// next proposal is made while they train, and each is judged when it finishes. In-flight trials
// are drained at a cycle boundary, before Level 1.5 and Level 2 act.
import { setImmediate } from "node:timers/promises";
import type { Change, Config, Json, ParamSpec, PendingTrial } from "../mechanism-api/index.d.ts";
import type { DryRunTrace, HookContextData } from "../sandbox/types.ts";
import { checkConstraints } from "../trainer/constraints.ts";
import type { Trainer, TrainerProgress, TrialOutcome, TrialRequest } from "../trainer/types.ts";
import { applyChanges, checkChanges, describeChanges, effectiveChanges, withPrevious } from "./changes.ts";
import { configDiff, type ResolvedRunConfig } from "./config.ts";
import { UserError } from "./errors.ts";
import { LocalExecutor } from "./executors/local.ts";
import type { Executor, ExecutorHooks } from "./executors/types.ts";
import { acceptanceRule, decide, estimateNoise, type NoiseEstimate } from "./level1/acceptance.ts";
import { ContextParts, toApiTrial } from "./level1/context-parts.ts";
import { type IterationOutcome, proposeIteration } from "./level1/iteration.ts";
import type { Proposer } from "./level1/proposer.ts";
import { TrialPool } from "./level1/trial-pool.ts";
import { Level2Steward, mechanismRow } from "./level2/steward.ts";
import type { Researcher } from "./level2/types.ts";
import { runLevel15 } from "./level15/step.ts";
import type { Strategist } from "./level15/strategy.ts";
import { type Batch, describe, MechanismManager, type SandboxLike } from "./mechanisms.ts";
import type {
  EventLevel,
  JobRow,
  ProposalRow,
  RunStore,
  SearchConfig,
  TrialKind,
  TrialRow,
} from "./store.ts";
import { trialRequest } from "./trainers.ts";

/** What the display shows at the start of an iteration. */
export interface IterationStatus {
  readonly best: number | null;
  readonly mechanisms: readonly string[];
  readonly strategy: string;
}

export interface LoopObserver {
  event?(level: EventLevel, message: string): void;
  iterationStart?(iteration: number, total: number, status: IterationStatus): void;
  /** `trialId` is the number the trial will have in the store, results.tsv and status. */
  trialStart?(trialId: number, description: string, budgetSeconds: number): void;
  trialProgress?(progress: TrainerProgress): void;
  trialEnd?(trial: TrialRow, best: number | null): void;
}

export interface LoopDeps {
  readonly store: RunStore;
  readonly config: ResolvedRunConfig;
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
  /** Where trials run; default: local slots over `trainer` (config.parallel of them). */
  readonly executor?: Executor;
}

/** A trial handed to the executor: what the loop needs to judge and store it when it ends. */
interface InFlight {
  readonly kind: TrialKind;
  readonly iteration: number;
  readonly seed: number;
  readonly config: Config;
  readonly description: string;
  /** The search trial's proposal; null for a baseline. */
  readonly proposal: ProposalRow | null;
  /** The baseline's repeat index; null for a search trial. */
  readonly repeat: number | null;
  /** The baseline's round (see baselineRound); absent for a search trial. */
  readonly round?: number;
}

export interface RunSummary {
  /** Iterations completed (all of them, unless the run was stopped). */
  readonly iterations: number;
  readonly trials: number;
  readonly kept: number;
  readonly best: { readonly valBpb: number; readonly config: Config; readonly trialId: number } | null;
  readonly baseline: NoiseEstimate | null;
  readonly stopped: boolean;
}

export class BilevelLoop {
  private readonly d: LoopDeps;
  private readonly params: readonly ParamSpec[];
  /** ctx.params and ctx.history, kept while unchanged (each crosses to the sandbox once). */
  private readonly contextParts: ContextParts;
  private readonly mechanisms: MechanismManager;
  private readonly level2: Level2Steward;
  private trials: TrialRow[] = [];
  private search!: SearchConfig;
  private noise: NoiseEstimate | null = null;
  private readonly executor: Executor;
  private readonly pool: TrialPool<InFlight>;
  /** Stops the trials in flight when the run fails (the user's signal stops them too). */
  private readonly stopTrials = new AbortController();
  /** The trials in flight when the run last stopped (a resume reattaches or reruns them). */
  private unfinished: JobRow[] = [];
  /** The last iteration whose after-steps (time budget, Level 1.5, Level 2) are done. */
  private afterDone = 0;

  constructor(deps: LoopDeps) {
    this.d = deps;
    this.params = deps.config.searchSpace;
    this.contextParts = new ContextParts(this.params);
    const parallel = deps.config.parallel ?? 1;
    this.pool = new TrialPool(parallel);
    this.executor =
      deps.executor ?? new LocalExecutor(deps.trainer, { slots: parallel, device: deps.config.device });
    this.mechanisms = new MechanismManager(deps.store, deps.sandbox, (m) => this.emit("2", m));
    this.level2 = new Level2Steward({
      store: deps.store,
      config: deps.config,
      params: this.params,
      sandbox: deps.sandbox,
      researcher: deps.researcher,
      mechanisms: this.mechanisms,
      emit: (m) => this.emit("2", m),
    });
  }

  private emit(level: EventLevel, message: string): void {
    this.d.observer?.event?.(level, message);
  }

  // ---- derived state (always recomputed from stored trials, so resume is exact)

  private incumbent(iteration: number): { config: Config; valBpb: number | null } {
    // level1.restartEvery K: after every K iterations the incumbent restarts from the best trial so
    // far (group R of a study, the control for restarts); only trials after the restart count.
    const restart = restartPoint(this.d.config, iteration);
    const kept = lastKept(this.trials.filter((t) => t.kind === "search" && t.iteration > restart));
    if (kept) return { config: kept.config, valBpb: kept.valBpb };
    const best = restart > 0 ? this.best(restart) : null;
    if (best) return { config: best.config, valBpb: best.valBpb };
    // Search trials all use the run seed: compare them with the baseline of that seed (common
    // random numbers); the other seeds only measure σ. The mean stands in if that one failed.
    const sameSeed = this.trials.find(
      (t) => t.kind === "baseline" && t.seed === this.d.config.seed && t.valBpb !== null,
    );
    return { config: this.d.config.startConfig, valBpb: sameSeed?.valBpb ?? this.noise?.mean ?? null };
  }

  private incumbentCommit(): string | null {
    const kept = lastKept(this.trials.filter((t) => t.kind === "search"));
    return (kept ?? this.trials.find((t) => t.kind === "baseline" && t.commit))?.commit ?? null;
  }

  /** The best ok trial; with `until`, of iterations up to it and of the run seed only (a restart's incumbent). */
  private best(until?: number): { config: Config; valBpb: number; trialId: number } | null {
    let best: TrialRow | null = null;
    for (const t of this.trials) {
      if (until !== undefined && (t.iteration > until || t.seed !== this.d.config.seed)) continue;
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

  /** Trial ids follow start order: the next one after every trial stored or handed to an executor. */
  private nextTrialId(): number {
    const ids = [
      ...this.trials.map((t) => t.id),
      ...this.d.store.jobs().map((j) => j.trialId),
      ...this.pool.entries().map((e) => e.trialId),
    ];
    return Math.max(0, ...ids) + 1;
  }

  private context(iteration: number): HookContextData {
    const best = this.best();
    return {
      iteration,
      // Level 1.5's sets bind mechanisms too: they see them, and changes outside the active set are refused.
      params: this.contextParts.searchSpace(this.search.active, this.search.frozen),
      incumbent: this.incumbent(iteration),
      best: best ? { config: best.config, valBpb: best.valBpb } : null,
      history: this.contextParts.trials(this.searchTrials().slice(-this.d.config.proposer.historyWindow)),
      pending: this.pendingSearchTrials(),
      acceptance: acceptanceRule(this.d.config.acceptance.mode, this.noise, this.d.config.acceptance.k),
      seed: this.d.config.seed,
    };
  }

  /** The search trials in flight (not the baselines), in start order. */
  private searchInFlight() {
    return this.pool.entries().filter((e) => e.info.kind === "search");
  }

  /** The search trials in flight as mechanisms see them (ctx.pending). */
  private pendingSearchTrials(): PendingTrial[] {
    return this.searchInFlight().map((e) => ({
      id: e.trialId,
      iteration: e.info.iteration,
      config: e.info.config,
      changes: e.info.proposal?.changes ?? [],
    }));
  }

  private aborted(): boolean {
    return this.d.signal?.aborted ?? false;
  }

  // ---- the run

  async run(): Promise<RunSummary> {
    this.begin();
    try {
      return await this.runFromStore();
    } catch (error) {
      await this.abandonTrials();
      // The record says the run failed, and why (status would otherwise stay "running").
      const message = error instanceof Error ? error.message : String(error);
      try {
        this.d.store.transaction(() => {
          this.d.store.setMeta("status", "failed");
          this.d.store.addEvent(
            this.d.store.completedIterations(),
            "run",
            "failed",
            `run failed: ${message}`,
          );
        });
      } catch {
        // The store itself may be what failed (a full disk): the error below says so.
      }
      throw error;
    }
  }

  private async runFromStore(): Promise<RunSummary> {
    const { store, config } = this.d;
    this.trials = store.trials();
    // results.tsv is rewritten whole from the store (a resume may follow a kill between a commit and an append).
    store.writeResultsTsv();
    // A trainer that keeps history (git) puts its branch on the incumbent (a resume drops an unjudged trial's commit).
    await this.d.trainer.begin?.(this.incumbentCommit());
    const searchRows = store.searchConfigs();
    this.search = searchRows.at(-1)?.config ?? this.initialSearchConfig();
    if (searchRows.length === 0)
      store.addSearchConfig(0, 0, "initial", this.search, "all listed parameters active");
    await this.mechanisms.restore(store.completedIterations());
    this.unfinished = store.jobs({ unfinished: true });
    await this.executor.prepare?.(store.dir, this.d.signal);

    await this.runBaselines();
    if (this.aborted()) return this.finish(true);
    await this.activateStartMechanisms();

    for (let it = 1; it <= config.iterations; it++) {
      // A done iteration may still owe its Level 1.5/2 steps (advance() takes them in order).
      if (store.hasCheckpoint(`iter:${it}:done`)) continue;
      if (!(await this.makeRoom(it))) return this.stopped();
      this.d.observer?.iterationStart?.(it, config.iterations, {
        best: this.best()?.valBpb ?? null,
        mechanisms: this.mechanisms.list().map((m) => m.name),
        strategy: this.search.strategy,
      });
      this.recordRestart(it);
      await this.level2.processApprovals(it, () => this.context(it));
      if (!store.hasCheckpoint(`iter:${it}:proposed`)) await this.proposePhase(it);
      if (this.aborted()) return this.stopped();
      await this.startIteration(it);
    }
    await this.drain();
    if (this.aborted()) return this.finish(true);
    await this.advance();
    return this.finish(this.aborted());
  }

  // ---- trials in flight

  /** Iterations after which every trial in flight finishes first: Level 1.5/2 steps and restarts judge a complete cycle. */
  private boundary(it: number): boolean {
    if (it < 1) return false;
    return it % this.d.config.level15.every === 0 || restartPoint(this.d.config, it + 1) === it;
  }

  /** Before iteration `it`: a free slot (a drained pool at a boundary), then the after-steps due. false: stopped. */
  private async makeRoom(it: number): Promise<boolean> {
    // One turn of the event loop per iteration: with a trainer that answers at once (the surrogate,
    // a synthetic one without delay) nothing else would let a signal or a timer (a study's
    // parent watch) run before the last iteration.
    await setImmediate();
    if (this.boundary(it - 1)) await this.drain();
    else while (this.pool.freeSlot() === null && !this.aborted()) await this.takeNext();
    if (this.aborted()) return false;
    await this.advance();
    return !this.aborted();
  }

  /** Stopped (Ctrl-C, or the run's LLM gave up): the trials in flight end too (aborted, not stored). */
  private async stopped(): Promise<RunSummary> {
    await this.drain();
    return this.finish(true);
  }

  /** The after-steps of every finished iteration, in order (idempotent: each has its checkpoint). */
  private async advance(): Promise<void> {
    const { store, config } = this.d;
    while (this.afterDone < config.iterations && store.hasCheckpoint(`iter:${this.afterDone + 1}:done`)) {
      await this.afterIteration(this.afterDone + 1);
      if (this.aborted()) return;
      this.afterDone++;
    }
  }

  private async drain(): Promise<void> {
    while (this.pool.count > 0) await this.takeNext();
  }

  /** Take back the next trial to finish and store it (an aborted one is left for a resume). */
  private async takeNext(): Promise<void> {
    const done = await this.pool.next();
    if (!done) return;
    if ("error" in done) throw done.error;
    this.d.store.updateJob(done.trialId, { endedMs: done.endedMs });
    if (done.outcome.message === "aborted" && (this.aborted() || this.stopTrials.signal.aborted)) {
      this.d.store.updateJob(done.trialId, { state: "cancelled" });
      return;
    }
    if (done.info.kind === "baseline") await this.storeBaseline(done.trialId, done.info, done.outcome);
    else await this.storeSearch(done.trialId, done.info, done.outcome);
  }

  /** The run failed: stop the trials in flight (an executor cancels its jobs) and wait for them. */
  private async abandonTrials(): Promise<void> {
    this.stopTrials.abort();
    for (let done = await this.pool.next(); done; done = await this.pool.next()) {
      // Their outcomes are not stored: a resume runs them again.
    }
  }

  /** The job a resumed run left in flight for this trial, if any. */
  private unfinishedJob(kind: TrialKind, iteration: number, seed: number): JobRow | undefined {
    return this.unfinished.find((j) => j.kind === kind && j.iteration === iteration && j.seed === seed);
  }

  /** Hand a trial to the executor (reattaching to the job a killed run left, when it still counts). */
  private launch(id: number, info: InFlight, job: JobRow | undefined): void {
    const { config: run, store } = this.d;
    const slot = this.pool.freeSlot() ?? 0;
    const workDir = `${store.dir}/trials/trial-${String(id).padStart(4, "0")}-iter-${info.iteration}-seed-${info.seed}`;
    this.d.observer?.trialStart?.(id, info.description, run.budgetSeconds);
    const signal = this.d.signal
      ? AbortSignal.any([this.d.signal, this.stopTrials.signal])
      : this.stopTrials.signal;
    const request: TrialRequest = {
      ...trialRequest(run, { config: info.config, seed: info.seed, workDir }),
      description: info.description,
      // One progress bar: shown when one trial runs at a time.
      ...(this.pool.size === 1
        ? { onProgress: (p: TrainerProgress) => this.d.observer?.trialProgress?.(p) }
        : {}),
      signal,
    };
    const hooks: ExecutorHooks = {
      submitted: (jobId) =>
        store.putJob({
          trialId: id,
          iteration: info.iteration,
          kind: info.kind,
          proposalId: info.proposal?.id ?? null,
          seed: info.seed,
          description: info.description,
          executor: this.executor.kind,
          slot,
          jobId,
          workDir,
          state: "submitted",
          submittedMs: Date.now(),
          startedMs: null,
          endedMs: null,
          recordedMs: null,
        }),
      started: (atMs) => store.updateJob(id, { state: "running", startedMs: atMs }),
    };
    const trial = { trialId: id, slot, request };
    const outcome = (job && this.executor.reattach(job, trial, hooks)) || this.executor.run(trial, hooks);
    this.pool.add(id, slot, info, outcome);
  }

  /** Store the start (or the resume) of the run; a resume's config was checked by the caller. */
  private begin(): void {
    const { store, config } = this.d;
    const mode = this.d.proposer.kind === "llm" ? "online" : "offline";
    const before = store.runConfig();
    const iteration = store.hasCheckpoint("baseline") ? this.d.store.completedIterations() : 0;
    store.transaction(() => {
      store.setMeta("run_config", JSON.stringify(config));
      store.setMeta("status", "running");
      if (before === null) {
        store.setMeta("created_at", new Date().toISOString());
        store.setMeta("mode", mode);
        const how =
          mode === "online"
            ? "LLM proposer"
            : "OFFLINE: no LLM endpoint, non-LLM proposer, rule-based Level 1.5, Level 2 from the built-in mechanism library";
        store.addEvent(0, "run", "start", `run ${config.name} started on ${config.device} (${how})`);
        return;
      }
      const previousMode = store.getMeta("mode");
      if (previousMode !== mode && !previousMode?.endsWith(`then ${mode}`))
        store.setMeta("mode", `${previousMode} then ${mode}`);
      // The sections that differ from the stored config (configDiff names their leaves).
      const changed = [...new Set(configDiff(before, config).map((field) => field.split(".")[0]))];
      const note = changed.length > 0 ? `; changed: ${changed.join(", ")}` : "";
      store.addEvent(
        iteration,
        "run",
        "resume",
        `run ${config.name} resumed after iteration ${iteration} (${mode})${note}`,
      );
    });
    this.emit(
      "run",
      `run ${config.name} ${before === null ? "started" : "resumed"} (${mode}, ${config.device})`,
    );
  }

  private initialSearchConfig(): SearchConfig {
    const names = this.params.map((p) => p.name);
    const listed = this.d.config.activeParams;
    const active = listed ? names.filter((n) => listed.includes(n)) : names;
    return { strategy: "balanced", active, frozen: names.filter((n) => !active.includes(n)), guidance: "" };
  }

  private finish(stopped: boolean): RunSummary {
    const { store } = this.d;
    const best = this.best();
    const iterations = this.d.store.completedIterations();
    // What stopped it, when the stop says (the run command aborts with e.g. "stopped by SIGTERM").
    const reason = this.d.signal?.reason;
    const cause = typeof reason === "string" ? reason : null;
    store.transaction(() => {
      store.setMeta("status", stopped ? "stopped" : "finished");
      if (stopped) {
        store.addEvent(
          iterations,
          "run",
          "stop",
          `run stopped after iteration ${iterations}${cause ? `: ${cause}` : ""}`,
        );
        if (cause && !store.getMeta("stop_reason")) store.setMeta("stop_reason", cause);
      } else {
        store.addEvent(
          iterations,
          "run",
          "finish",
          `run finished: best val_bpb ${best ? best.valBpb.toFixed(4) : "n/a"}`,
        );
      }
    });
    return {
      iterations,
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
    const round = this.baselineRound(repeats);
    for (let r = 0; r < repeats; r++) {
      if (store.hasCheckpoint(baselineCheckpoint(round, r))) continue;
      while (this.pool.freeSlot() === null && !this.aborted()) await this.takeNext();
      if (this.aborted()) break;
      const seed = config.seed + r;
      const job = this.unfinishedJob("baseline", 0, seed);
      const info: InFlight = {
        kind: "baseline",
        iteration: 0,
        seed,
        config: config.startConfig,
        description: `baseline run ${r + 1} (seed ${seed})${round > 0 ? `, round ${round + 1}` : ""}`,
        proposal: null,
        repeat: r,
        round,
      };
      this.launch(job?.trialId ?? this.nextTrialId(), info, job);
    }
    await this.drain();
    if (this.aborted()) return;
    this.measureNoise();
  }

  /**
   * Which round of baselines this run is in. A run whose every baseline failed stopped (exit 1,
   * "the starting config does not train"); resumed, presumably after a fix, it runs the baselines
   * again as a new round of trials (the failed ones stay in the record) instead of replaying the
   * failures for ever. Round 0's checkpoints keep their old names.
   */
  private baselineRound(repeats: number): number {
    const { store } = this.d;
    let round = Number(store.getMeta("baseline_round") ?? 0) || 0;
    if (store.hasCheckpoint("baseline")) return round;
    const done = Array.from({ length: repeats }, (_, r) => store.hasCheckpoint(baselineCheckpoint(round, r)));
    const ok = this.trials.some((t) => t.kind === "baseline" && t.valBpb !== null);
    if (!done.every(Boolean) || ok) return round;
    round++;
    const message = `every baseline run so far failed: running the ${repeats} baseline run(s) again (round ${round + 1})`;
    store.transaction(() => {
      store.setMeta("baseline_round", String(round));
      store.addEvent(0, "1", "baseline-again", message, { round });
    });
    this.emit("1", message);
    return round;
  }

  private async storeBaseline(id: number, info: InFlight, outcome: TrialOutcome): Promise<void> {
    const row: TrialRow = {
      id,
      iteration: 0,
      kind: "baseline",
      proposalId: null,
      seed: info.seed,
      config: outcome.ranConfig ?? info.config,
      changes: [],
      status: outcome.status,
      valBpb: outcome.valBpb,
      kept: false,
      delta: null,
      result: (outcome.result as unknown as Json) ?? null,
      message: outcome.message,
      durationMs: outcome.durationMs,
      description: info.description,
      commit: outcome.commit ?? null,
    };
    await this.storeTrial(row, () =>
      this.d.store.checkpoint(baselineCheckpoint(info.round ?? 0, info.repeat ?? 0)),
    );
  }

  private measureNoise(): void {
    const { config, store } = this.d;
    const values = this.trials
      .filter((t) => t.kind === "baseline" && t.valBpb !== null)
      .map((t) => t.valBpb as number);
    if (values.length === 0) {
      const last = this.trials.filter((t) => t.kind === "baseline").at(-1);
      throw new BaselineError(
        `every baseline run failed (the starting config does not train): ${last ? `${last.status}: ${last.message}` : "no baseline ran"}; logs under ${store.dir}/trials`,
      );
    }
    this.noise = estimateNoise(values, config.acceptance.minSigma);
    if (store.hasCheckpoint("baseline")) return;
    const noise = this.noise;
    const message = `baseline val_bpb ${noise.mean.toFixed(4)} ± σ ${noise.sigma.toFixed(4)} over ${noise.n} run(s)`;
    const unmeasured = unmeasuredNoise(values, config.acceptance);
    store.transaction(() => {
      store.setMeta("noise", JSON.stringify(noise));
      store.addEvent(0, "1", "baseline", message, { ...noise });
      if (unmeasured) store.addEvent(0, "1", "noise-unmeasured", unmeasured, { values });
      store.checkpoint("baseline");
    });
    this.emit("1", message);
    if (unmeasured) this.emit("1", unmeasured);
  }

  /**
   * Store a finished trial (with `also` in the same transaction), append its results.tsv row, tell
   * the trainer the verdict (git: a discarded trial leaves the branch), show it.
   */
  private async storeTrial(row: TrialRow, also: () => void): Promise<void> {
    const { store } = this.d;
    store.transaction(() => {
      const id = store.addTrial(row);
      if (id !== row.id) throw new Error(`trial id mismatch: expected ${row.id}, got ${id}`);
      store.updateJob(row.id, { state: "done", recordedMs: Date.now() });
      also();
    });
    // Kept in id order (start order); trials in flight may finish in another order.
    const at = this.trials.findIndex((t) => t.id > row.id);
    this.trials.splice(at < 0 ? this.trials.length : at, 0, row);
    store.appendResult(row);
    await this.d.trainer.judged?.({ commit: row.commit ?? null, kept: row.kept, kind: row.kind });
    this.d.observer?.trialEnd?.(row, this.best()?.valBpb ?? null);
  }

  /**
   * Hand-written start mechanisms: each is validated on the live trace; one that fails (it may pass
   * `check` on the synthetic trace and throw on this one) is stored as quarantined with the reason,
   * and the run goes on.
   */
  private async activateStartMechanisms(): Promise<void> {
    const { store } = this.d;
    if (store.hasCheckpoint("start-mechanisms")) return;
    for (const [index, m] of (this.d.startMechanisms ?? []).entries()) {
      const checkpoint = `start-mechanism:${index}`;
      if (store.hasCheckpoint(checkpoint)) continue;
      const name = fileStem(m.file);
      const trace = this.liveTrace(0);
      const report = await this.d.sandbox.validate(m.source, trace, `${name}.ts`);
      if (report.ok) {
        await this.level2.install(
          0,
          { status: "validated", origin: "file", name, source: m.source, report },
          checkpoint,
          trace.context,
        );
        continue;
      }
      const stand =
        this.searchTrials().length === 0
          ? " (no search trial yet: a synthetic proposal and trial stand in)"
          : "";
      const reason = `failed validation on the live trace${stand}: ${report.error ? describe(report.error) : "unknown error"}`;
      store.transaction(() => {
        const id = `m${store.mechanisms().length + 1}-${name}`;
        const row = mechanismRow(id, { name, origin: "file", source: m.source, report }, 0);
        store.upsertMechanism({ ...row, status: "quarantined", reason });
        store.addEvent(0, "2", "quarantined", `${name} (${m.file}) quarantined: ${reason}`, { id });
        store.checkpoint(checkpoint);
      });
      this.emit("2", `${name} (${m.file}) quarantined: ${reason}`);
    }
    store.checkpoint("start-mechanisms");
  }

  // ---- Level 1, phase A: guide, suggest, propose, filter (runtime/level1/iteration.ts)

  private async proposePhase(it: number): Promise<void> {
    const { config, store } = this.d;
    const outcome = await proposeIteration(
      {
        iteration: it,
        context: this.context(it),
        params: this.params,
        search: this.search,
        history: this.searchTrials().slice(-config.proposer.historyWindow),
        crashLessons: this.crashLessons(),
        pending: this.searchInFlight().map((e) => ({
          config: e.info.config,
          description: e.info.description,
        })),
        settings: {
          maxChanges: config.proposer.maxChanges,
          maxFilterRejections: config.proposer.maxFilterRejections,
          seed: config.seed,
        },
        ...(this.d.signal ? { signal: this.d.signal } : {}),
      },
      this.mechanisms,
      this.d.proposer,
    );
    // Stopped meanwhile (Ctrl-C, or the run's LLM gave up): nothing is stored, a resume redoes the phase.
    if (outcome.aborted || this.aborted()) return;
    const batch: Batch = [() => this.storeIteration(it, outcome)];
    this.mechanisms.saveStates(batch);
    store.transaction(() => {
      for (const write of batch) write();
      store.checkpoint(`iter:${it}:proposed`);
    });
    for (const e of outcome.events) this.emit("1", e.message);
  }

  /** The proposals, ledger rows and events of phase A (inside its transaction). */
  private storeIteration(it: number, outcome: IterationOutcome): void {
    const { store } = this.d;
    const ids = outcome.proposals.map((p) =>
      store.addProposal({ iteration: it, ...p, changes: [...p.changes] }),
    );
    const pid = (index: number | null) => (index === null ? null : (ids[index] ?? null));
    for (const h of outcome.hooks) {
      this.mechanisms.record(null, it, h.mechanism, h.hook, h.outcome, pid(h.proposal), h.label, h.detail);
    }
    for (const f of outcome.faults) this.mechanisms.recordFault(null, it, f.fault, pid(f.proposal));
    for (const e of outcome.events) store.addEvent(it, "1", e.kind, e.message);
  }

  private crashLessons(): string[] {
    return this.searchTrials()
      .filter((t) => t.status !== "ok")
      .slice(-5)
      .map((t) => `${t.description} -> ${t.status}: ${t.message.slice(0, 160)}`);
  }

  // ---- Level 1, phase B: train, accept, observe

  /** Phase B starts: the accepted proposal's trial goes to the executor (or none: the iteration is done). */
  private async startIteration(it: number): Promise<void> {
    const { store, config } = this.d;
    const proposal = store.proposals(it).find((p) => p.status === "accepted" || p.status === "training");
    if (!proposal || proposal.config === null) {
      store.transaction(() => {
        store.addEvent(it, "1", "no-trial", `iteration ${it} produced no trainable proposal`);
        store.checkpoint(`iter:${it}:done`);
      });
      this.emit("1", `iteration ${it} produced no trainable proposal`);
      return;
    }
    const job = this.unfinishedJob("search", it, config.seed);
    const by = proposal.mechanismId ? ` [suggested by ${proposal.mechanismId}]` : "";
    const info: InFlight = {
      kind: "search",
      iteration: it,
      seed: config.seed,
      config: proposal.config,
      description: job?.description ?? `${describeChanges(this.incumbent(it).config, proposal.changes)}${by}`,
      proposal,
      repeat: null,
    };
    const id = job?.trialId ?? this.nextTrialId();
    // The last gate: a config that breaks a declared constraint never reaches the trainer.
    const broken = checkConstraints(this.params, proposal.config);
    if (broken.length > 0) await this.storeSearch(id, info, refusedOutcome(broken));
    else this.launch(id, info, job);
  }

  /** Phase B ends: judged against the incumbent of the moment it finished, observed, stored. */
  private async storeSearch(id: number, info: InFlight, outcome: TrialOutcome): Promise<void> {
    const { store } = this.d;
    const it = info.iteration;
    const proposal = info.proposal as ProposalRow;
    const description = info.description;
    const trial = this.judge(it, id, proposal, description, outcome, this.incumbent(it).valBpb);

    const batch: Batch = [];
    for await (const r of this.mechanisms.callAll("observe", this.context(it), toApiTrial(trial))) {
      if (r.ok)
        this.mechanisms.record(batch, it, r.mechanism, "observe", r.outcome, proposal.id, "observed", {});
      else this.mechanisms.recordFault(batch, it, r, proposal.id);
    }
    this.mechanisms.saveStates(batch);
    const score = trial.valBpb?.toFixed(4) ?? trial.status;
    const verdict = trial.kept
      ? "KEPT"
      : trial.status === "ok"
        ? "discarded"
        : `${trial.status.toUpperCase()}, discarded`;
    await this.storeTrial(trial, () => {
      store.setProposalStatus(proposal.id, "trained");
      for (const write of batch) write();
      store.linkLedgerToTrial(trial.id, proposal.id, it, proposal.source === "llm");
      store.addEvent(
        it,
        "1",
        trial.kept ? "kept" : "discarded",
        `#${trial.id} ${description}: ${score} — ${verdict}: ${trial.message}`,
        {
          trialId: trial.id,
        },
      );
      store.checkpoint(`iter:${it}:done`);
    });
  }

  /** The trial row with the acceptance decision against the incumbent. */
  private judge(
    it: number,
    id: number,
    proposal: { id: number; config: Config | null; changes: TrialRow["changes"] },
    description: string,
    outcome: TrialOutcome,
    incumbentBpb: number | null,
  ): TrialRow {
    const { config } = this.d;
    let kept = false;
    let delta: number | null = null;
    let message = outcome.message;
    if (outcome.status === "ok" && outcome.valBpb !== null && incumbentBpb !== null) {
      const decision = decide(
        config.acceptance.mode,
        outcome.valBpb,
        incumbentBpb,
        this.noise,
        config.acceptance.k,
      );
      ({ kept, delta } = decision);
      message = decision.reason;
    }
    return {
      id,
      iteration: it,
      kind: "search",
      proposalId: proposal.id,
      seed: config.seed,
      // What ran, read back from the trainer's file where it can (a user's train.py).
      config:
        outcome.ranConfig ?? proposal.config ?? applyChanges(this.incumbent(it).config, proposal.changes),
      changes: proposal.changes,
      status: outcome.status,
      valBpb: outcome.valBpb,
      kept,
      delta,
      result: (outcome.result as unknown as Json) ?? null,
      message,
      durationMs: outcome.durationMs,
      description,
      commit: outcome.commit ?? null,
    };
  }

  // ---- between iterations: time budgets, Level 1.5, Level 2, retirement

  /**
   * After Level 1: the time budgets, then every `level15.every` iterations Level 1.5, Level 2 every
   * `level2.everyCycles` cycles, and retirement. Checkpoints are named by iteration, so a resume that
   * changes these cadences neither skips nor repeats a step; the cycle is the count of Level 1.5
   * steps taken.
   */
  private async afterIteration(it: number): Promise<void> {
    const { config, store } = this.d;
    await this.atCheckpoint(`iter:${it}:budget`, (batch) => this.level2.enforceBudget(it, batch));
    if (it % config.level15.every !== 0) return;
    const level15 = `iter:${it}:level15`;
    const cycle = store.countCheckpoints("iter:%:level15") + (store.hasCheckpoint(level15) ? 0 : 1);
    // enabled false (groups A, D, R of a study): no Level 1.5 step, but its checkpoint still marks
    // the cycle, so Level 2 keeps its cadence (group D: every level2.everyCycles cycles, as C).
    if (!store.hasCheckpoint(level15) && config.level15.enabled === false) store.checkpoint(level15);
    else if (!store.hasCheckpoint(level15)) {
      this.search = await runLevel15({
        store,
        config,
        params: this.params,
        strategist: this.d.strategist,
        search: this.search,
        trials: this.trials,
        iteration: it,
        cycle,
        checkpoint: level15,
        emit: (m) => this.emit("1.5", m),
      });
    }
    if (config.level2.everyCycles > 0 && cycle % config.level2.everyCycles === 0) {
      const checkpoint = `iter:${it}:level2`;
      if (!store.hasCheckpoint(checkpoint))
        await this.level2.session(it, checkpoint, this.liveTrace(it), this.trials);
    }
    await this.atCheckpoint(`iter:${it}:retire`, (batch) => this.level2.retire(it, this.trials, batch));
  }

  /** Run a step whose writes go into one transaction with its checkpoint, unless it is done already. */
  private async atCheckpoint(checkpoint: string, step: (batch: Batch) => Promise<void>): Promise<void> {
    const { store } = this.d;
    if (store.hasCheckpoint(checkpoint)) return;
    const batch: Batch = [];
    await step(batch);
    store.transaction(() => {
      for (const write of batch) write();
      store.checkpoint(checkpoint);
    });
  }

  /** An event at each restart of the incumbent (level1.restartEvery), once per iteration. */
  private recordRestart(it: number): void {
    const { store, config } = this.d;
    const restart = restartPoint(config, it);
    if (restart === 0 || restart !== it - 1 || store.hasCheckpoint(`iter:${it}:restart`)) return;
    const best = this.best(restart);
    const message = best
      ? `restart: the incumbent is reset to the best trial so far, #${best.trialId} (val_bpb ${best.valBpb.toFixed(4)})`
      : "restart: no ok trial yet, the incumbent stays the start config";
    store.transaction(() => {
      store.addEvent(it, "1", "restart", message, best ? { trialId: best.trialId, valBpb: best.valBpb } : {});
      store.checkpoint(`iter:${it}:restart`);
    });
    this.emit("1", message);
  }

  /**
   * The dry-run trace for validation: the live context, and a proposal and trial as the run would
   * hand them now. Their changes are the latest trial's that still change the incumbent (else the
   * synthetic trace's), valid for the active parameters, each with the incumbent's value as
   * `previous`: a kept trial's own changes are no-ops against the incumbent it became.
   */
  private liveTrace(it: number): DryRunTrace {
    const fallback = this.d.syntheticTrace(this.params, this.d.config.seed);
    const context = this.context(it);
    const base = context.incumbent.config;
    const active = context.params.filter((p) => !p.frozen).map((p) => p.name);
    const usable = (changes: readonly Change[]): Change[] | null => {
      const effective = effectiveChanges(base, changes);
      return checkChanges(effective, this.params, { active, base }).length === 0 ? effective : null;
    };
    const trials = [...this.searchTrials()].reverse();
    const latest = trials.find((t) => usable(t.changes) !== null);
    const stand =
      usable(fallback.proposal.changes) ??
      fallback.context.history.map((t) => usable(t.changes)).find((c) => c !== null) ??
      withPrevious(base, fallback.proposal.changes);
    const changes = latest ? usable(latest.changes)! : stand;
    const config = applyChanges(base, changes);
    // Before any search trial, the synthetic trial stands in, dated this iteration as observe's would be.
    const trial = latest ? toApiTrial(latest) : { ...fallback.trial, iteration: it };
    return {
      context,
      proposal: { changes, rationale: latest ? "latest trial" : "stand-in", source: "offline", config },
      trial: { ...trial, changes, config },
    };
  }
}

/**
 * The kept trial that is the incumbent: the last kept in the order trials finished. Each kept trial
 * beat the one kept before it, so that is the kept trial with the lowest val_bpb, whatever order
 * the trials started in (trials in flight finish out of order; the store keeps start order).
 */
function lastKept(trials: readonly TrialRow[]): TrialRow | undefined {
  let found: TrialRow | undefined;
  for (const t of trials) {
    if (t.kept && (found === undefined || (t.valBpb ?? Infinity) <= (found.valBpb ?? Infinity))) found = t;
  }
  return found;
}

/** A trial refused before training (a broken constraint): no trainer time, nothing ran. */
function refusedOutcome(broken: readonly string[]): TrialOutcome {
  return {
    status: "invalid-config",
    valBpb: null,
    result: null,
    message: `refused before training: ${broken.join("; ")}`,
    exitCode: null,
    durationMs: 0,
    logPath: "",
  };
}

/**
 * When repeated baselines gave identical scores, what that means, in words (null otherwise): the
 * script ignores the seed, so σ is the floor and a keep may be run-to-run noise the run cannot see.
 */
export function unmeasuredNoise(
  values: readonly number[],
  acceptance: { readonly mode: string; readonly minSigma: number; readonly k: number },
): string | null {
  if (values.length < 2 || new Set(values).size > 1 || acceptance.mode === "strict") return null;
  const floor = acceptance.minSigma;
  return (
    `noise is unmeasured: the ${values.length} baseline runs (seeds differ) gave the same val_bpb ${values[0]?.toFixed(6)}, so the script ignores the seed. ` +
    `σ falls to its floor acceptance.minSigma = ${floor}: a trial is kept when it beats the incumbent by more than k·σ = ${(acceptance.k * floor).toFixed(6)}, ` +
    "which may be smaller than the real run-to-run noise on the GPU, so some keeps may be luck. " +
    'To measure it, seed the script from $BILEVEL_SEED (e.g. torch.manual_seed(int(os.environ.get("BILEVEL_SEED", 42)))) or give it a SEED constant; ' +
    "or raise acceptance.minSigma to the noise you expect."
  );
}

/** The checkpoint of baseline `repeat` in `round` (round 0: the names stores have always used). */
function baselineCheckpoint(round: number, repeat: number): string {
  return round === 0 ? `baseline:${repeat}` : `baseline:${round}:${repeat}`;
}

/** Every baseline failed: the run cannot judge any change (exit 1, the run folder keeps the logs). */
export class BaselineError extends UserError {
  override name = "BaselineError";
}

/**
 * The last iteration after which the incumbent restarted, for a trial of `iteration`: the largest
 * multiple of level1.restartEvery below it (0: no restart yet, or restarts off). Configs stored
 * before the option existed have no level1 section: no restarts.
 */
export function restartPoint(config: ResolvedRunConfig, iteration: number): number {
  const every = (config as Partial<ResolvedRunConfig>).level1?.restartEvery ?? 0;
  if (every <= 0 || iteration <= 1) return 0;
  return Math.floor((iteration - 1) / every) * every;
}

function fileStem(file: string): string {
  return (file.split("/").at(-1) ?? file).replace(/\.ts$/, "");
}
