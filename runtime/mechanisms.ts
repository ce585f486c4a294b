// The active mechanisms of a run: loads them into the sandbox, calls their hooks at the loop's
// fixed points, keeps their state, records every call in the ledger, quarantines faults.
import type { Config, HookName, Json, Manifest, Proposal, Trial } from "../mechanism-api/index.d.ts";
import { EMPTY_CAPABILITIES } from "../sandbox/index.ts";
import type {
  CapabilityState,
  CompiledMechanism,
  CompileOutcome,
  DryRunTrace,
  HookBatch,
  HookCall,
  HookContextData,
  HookOutcome,
  HookResult,
  SandboxError,
  ValidationReport,
} from "../sandbox/types.ts";
import { type ChainRule, chainProposal, filterStep } from "./level1/filter-chain.ts";
import type { MechanismRow, RunStore } from "./store.ts";

/** What the loop needs of the sandbox (sandbox/index.ts's Sandbox satisfies it). */
export interface SandboxLike {
  compile(source: string, fileName?: string): Promise<CompileOutcome>;
  load(id: string, mechanism: CompiledMechanism): Promise<{ ok: true } | { ok: false; error: SandboxError }>;
  call(call: HookCall): Promise<HookOutcome>;
  /** One round trip for a hook's calls on several mechanisms (sandbox/host.ts); without it, one call each. */
  callBatch?(batch: HookBatch): Promise<HookOutcome[] | null>;
  unload(id: string): Promise<void>;
  validate(source: string, trace: DryRunTrace, fileName?: string): Promise<ValidationReport>;
}

/** The same sandbox with every hook call sent on its own: the reference the batched path must match. */
export function unbatched(sandbox: SandboxLike): SandboxLike {
  return {
    compile: (source, fileName) => sandbox.compile(source, fileName),
    load: (id, mechanism) => sandbox.load(id, mechanism),
    call: (call) => sandbox.call(call),
    unload: (id) => sandbox.unload(id),
    validate: (source, trace, fileName) => sandbox.validate(source, trace, fileName),
  };
}

export interface ActiveMechanism {
  readonly id: string;
  readonly name: string;
  readonly manifest: Manifest;
  state: Json;
  capabilities: CapabilityState;
}

/** Writes of one loop phase, applied together in one transaction. */
export type Batch = (() => void)[];

export interface HookReport<R extends HookResult> {
  readonly ok: true;
  readonly mechanism: ActiveMechanism;
  readonly result: R;
  readonly outcome: Extract<HookOutcome, { ok: true }>;
}

/** A hook call that faulted: the mechanism is already detached (unloaded, no longer called). */
export interface FaultReport {
  readonly ok: false;
  readonly mechanism: ActiveMechanism;
  readonly hook: HookName;
  readonly outcome: Extract<HookOutcome, { ok: false }>;
  readonly reason: string;
}

export function compiledFromRow(row: MechanismRow): CompiledMechanism | null {
  if (row.js === null || row.manifest === null || row.sourceHash === null || row.jsHash === null) return null;
  return {
    manifest: row.manifest,
    source: row.source,
    js: row.js,
    sourceHash: row.sourceHash,
    jsHash: row.jsHash,
  };
}

export class MechanismManager {
  private readonly active: ActiveMechanism[] = [];
  private readonly store: RunStore;
  private readonly sandbox: SandboxLike;
  private readonly onEvent: (message: string) => void;

  constructor(store: RunStore, sandbox: SandboxLike, onEvent: (message: string) => void = () => {}) {
    this.store = store;
    this.sandbox = sandbox;
    this.onEvent = onEvent;
  }

  list(): readonly ActiveMechanism[] {
    return this.active;
  }

  /**
   * Reload the mechanisms that were active when the run stopped, with their stored state. One that
   * cannot be reloaded is quarantined, in one transaction with its event at `iteration`.
   */
  async restore(iteration: number): Promise<void> {
    for (const row of this.store.mechanisms()) {
      if (row.status !== "active") continue;
      const compiled = compiledFromRow(row);
      const loaded = compiled ? await this.sandbox.load(row.id, compiled) : null;
      if (!compiled || !loaded?.ok) {
        const reason = loaded && !loaded.ok ? loaded.error.message : "stored mechanism has no compiled code";
        this.store.transaction(() => {
          this.store.setMechanismStatus(row.id, "quarantined", `could not be reloaded on resume: ${reason}`);
          this.store.addEvent(
            iteration,
            "2",
            "quarantined",
            `${row.name}: could not be reloaded: ${reason}`,
            {
              id: row.id,
            },
          );
        });
        continue;
      }
      this.active.push({
        id: row.id,
        name: row.name,
        manifest: compiled.manifest,
        state: row.state,
        capabilities: row.capabilities,
      });
    }
  }

  /**
   * Load a validated mechanism and run its `init`. On success it is active and stored;
   * on failure it is stored as quarantined with the reason.
   */
  async activate(row: MechanismRow, context: HookContextData, batch: Batch): Promise<SandboxError | null> {
    const compiled = compiledFromRow(row);
    if (!compiled) throw new Error(`mechanism ${row.id} has not been compiled`);
    const loaded = await this.sandbox.load(row.id, compiled);
    if (!loaded.ok) {
      batch.push(() =>
        this.store.upsertMechanism({ ...row, status: "quarantined", reason: loaded.error.message }),
      );
      return loaded.error;
    }
    const mechanism: ActiveMechanism = {
      id: row.id,
      name: row.name,
      manifest: compiled.manifest,
      state: {},
      capabilities: EMPTY_CAPABILITIES,
    };
    if (compiled.manifest.hooks.includes("init")) {
      const outcome = await this.sandbox.call({
        mechanismId: row.id,
        hook: "init",
        context,
        state: {},
        capabilities: EMPTY_CAPABILITIES,
      });
      this.record(
        batch,
        context.iteration,
        mechanism,
        "init",
        outcome,
        null,
        outcome.ok ? "initialized" : "fault",
        {},
      );
      if (!outcome.ok) {
        await this.sandbox.unload(row.id);
        batch.push(() =>
          this.store.upsertMechanism({ ...row, status: "quarantined", reason: describe(outcome.error) }),
        );
        return outcome.error;
      }
      mechanism.state = outcome.state;
      mechanism.capabilities = outcome.capabilities;
    }
    this.active.push(mechanism);
    const { state, capabilities } = mechanism;
    batch.push(() =>
      this.store.upsertMechanism({
        ...row,
        status: "active",
        state,
        capabilities,
        reason: null,
        activatedIteration: context.iteration,
      }),
    );
    return null;
  }

  /** Stop calling a mechanism; its status and event go into `batch` (the caller's transaction). */
  async deactivate(
    id: string,
    status: "retired" | "quarantined",
    reason: string,
    iteration: number,
    batch: Batch,
  ): Promise<void> {
    const mechanism = await this.detach(id);
    if (!mechanism) return;
    batch.push(() => {
      this.store.setMechanismStatus(id, status, reason);
      this.store.addEvent(iteration, "2", status, `${mechanism.name} ${status}: ${reason}`, { id });
    });
    this.onEvent(`${mechanism.name} ${status}: ${reason}`);
  }

  /** Remove a mechanism from the active list and unload it (nothing is written). */
  private async detach(id: string): Promise<ActiveMechanism | null> {
    const index = this.active.findIndex((m) => m.id === id);
    if (index < 0) return null;
    const [mechanism] = this.active.splice(index, 1);
    await this.sandbox.unload(id);
    return mechanism ?? null;
  }

  /**
   * Call `hook` on every active mechanism that declares it, in activation order. A call that faults
   * detaches the mechanism and is reported as a FaultReport; nothing is written here (the caller
   * stores it with its phase, see recordFault). The calls go to the sandbox in one round trip when
   * it can batch them; the reports are the same either way. Read every report: the calls have run.
   */
  async *callAll<H extends Exclude<HookName, "filter">>(
    hook: H,
    context: HookContextData,
    argument?: Trial,
  ): AsyncGenerator<HookReport<Extract<HookResult, { hook: H }>> | FaultReport> {
    const targets = this.active.filter((m) => m.manifest.hooks.includes(hook));
    yield* this.calls(hook, context, targets, argument, null);
  }

  /**
   * The filter chain for one proposal: each filter sees the proposal as the filters before it left
   * it (filterStep: a valid `modify` replaces the changes), and a `reject` ends it. In one round
   * trip when the sandbox can batch, where the child applies the same rule between the calls.
   */
  async *callFilters(
    context: HookContextData,
    proposal: Proposal,
    rule: ChainRule,
  ): AsyncGenerator<HookReport<Extract<HookResult, { hook: "filter" }>> | FaultReport> {
    const targets = this.active.filter((m) => m.manifest.hooks.includes("filter"));
    yield* this.calls("filter", context, targets, proposal, rule);
  }

  private async *calls<H extends HookName>(
    hook: H,
    context: HookContextData,
    targets: readonly ActiveMechanism[],
    first: Proposal | Trial | undefined,
    chain: ChainRule | null,
  ): AsyncGenerator<HookReport<Extract<HookResult, { hook: H }>> | FaultReport> {
    let argument = first;
    let index = 0;
    while (index < targets.length) {
      const rest = targets.slice(index);
      // A single call gains nothing from a batch (and costs an extra line): sent on its own.
      const batch =
        rest.length > 1
          ? await this.sandbox.callBatch?.(hookBatch(hook, context, rest, argument, chain))
          : null;
      // No batch (none possible, or nothing came back): the next call alone, the reference behaviour.
      const batched = batch !== null && batch !== undefined && batch.length > 0;
      const outcomes = batched ? batch : [await this.call(targets[index]!, hook, context, argument)];
      for (const outcome of outcomes) {
        const mechanism = targets[index++]!;
        if (batched) this.keep(mechanism, outcome);
        const report = await this.report<H>(mechanism, hook, outcome);
        yield report;
        const result: HookResult | null = report.ok ? report.result : null;
        if (chain === null || result?.hook !== "filter") continue;
        // ctx.params: the search space with Level 1.5's frozen flags, which the check does not read.
        const step = filterStep(result.value, (argument as Proposal).changes, chain, context.params);
        if (step.kind === "rejected") return;
        if (step.kind === "modified")
          argument = chainProposal(argument as Proposal, chain.base, step.changes);
      }
    }
  }

  /** A call's report; a fault detaches the mechanism first (the sandbox has quarantined it). */
  private async report<H extends HookName>(
    mechanism: ActiveMechanism,
    hook: H,
    outcome: HookOutcome,
  ): Promise<HookReport<Extract<HookResult, { hook: H }>> | FaultReport> {
    if (outcome.ok) {
      return { ok: true, mechanism, result: outcome.result as Extract<HookResult, { hook: H }>, outcome };
    }
    await this.detach(mechanism.id);
    const reason = describe(outcome.error);
    this.onEvent(`${mechanism.name} quarantined: ${reason}`);
    return { ok: false, mechanism, hook, outcome, reason };
  }

  /** Store a fault: the ledger row, the quarantine and its event (null batch: write now). */
  recordFault(batch: Batch | null, iteration: number, fault: FaultReport, proposalId: number | null): void {
    this.record(batch, iteration, fault.mechanism, fault.hook, fault.outcome, proposalId, "fault", {});
    const { id, name } = fault.mechanism;
    const write = () => {
      this.store.setMechanismStatus(id, "quarantined", fault.reason);
      this.store.addEvent(iteration, "2", "quarantined", `${name} quarantined: ${fault.reason}`, { id });
    };
    if (batch === null) write();
    else batch.push(write);
  }

  private async call(
    mechanism: ActiveMechanism,
    hook: HookName,
    context: HookContextData,
    argument?: Proposal | Trial,
  ): Promise<HookOutcome> {
    const call: HookCall = {
      mechanismId: mechanism.id,
      hook,
      context,
      state: mechanism.state,
      capabilities: mechanism.capabilities,
      ...(argument === undefined ? {} : { argument }),
    };
    const outcome = await this.sandbox.call(call);
    this.keep(mechanism, outcome);
    return outcome;
  }

  /** A successful call's state and capability data become the mechanism's. */
  private keep(mechanism: ActiveMechanism, outcome: HookOutcome): void {
    if (!outcome.ok) return;
    mechanism.state = outcome.state;
    mechanism.capabilities = outcome.capabilities;
  }

  /** Record one hook call in the ledger, with the outcome the loop derived from its result (null batch: write now). */
  record(
    batch: Batch | null,
    iteration: number,
    mechanism: ActiveMechanism,
    hook: HookName,
    outcome: HookOutcome,
    proposalId: number | null,
    label: string,
    detail: Json,
  ): void {
    const full: Json = outcome.ok
      ? {
          ...(detail as Record<string, Json>),
          ...(outcome.logs.length > 0 ? { logs: [...outcome.logs] } : {}),
          capabilityCalls: outcome.capabilityCalls,
        }
      : { error: { ...outcome.error } };
    const write = () =>
      this.store.addLedger({
        iteration,
        mechanismId: mechanism.id,
        hook,
        outcome: label,
        detail: full,
        latencyMs: outcome.durationMs,
        proposalId,
        trialId: null,
      });
    if (batch === null) write();
    else batch.push(write);
  }

  /** Persist the in-memory state of every active mechanism (part of a phase's batch). */
  saveStates(batch: Batch): void {
    for (const m of this.active) {
      const { id, state, capabilities } = m;
      batch.push(() => this.store.setMechanismState(id, state, capabilities));
    }
  }
}

function hookBatch(
  hook: HookName,
  context: HookContextData,
  mechanisms: readonly ActiveMechanism[],
  argument: Proposal | Trial | undefined,
  chain: ChainRule | null,
): HookBatch {
  return {
    hook,
    context,
    ...(argument === undefined ? {} : { argument }),
    calls: mechanisms.map(({ id, state, capabilities }) => ({ mechanismId: id, state, capabilities })),
    ...(chain === null ? {} : { chain: { base: chain.base, active: chain.active } }),
  };
}

export function describe(error: SandboxError): string {
  const at = error.line !== undefined ? ` at ${error.line}:${error.column ?? 0}` : "";
  return `${error.stage}/${error.code}${at}: ${error.message}`;
}

export function configKey(config: Config): string {
  return JSON.stringify(
    Object.keys(config)
      .sort()
      .map((k) => [k, config[k]]),
  );
}
