// The active mechanisms of a run: loads them into the sandbox, calls their hooks at the loop's
// fixed points, keeps their state, records every call in the ledger, quarantines faults.
import type { Config, HookName, Json, Manifest, Proposal, Trial } from "../mechanism-api/index.d.ts";
import { EMPTY_CAPABILITIES } from "../sandbox/index.ts";
import type {
  CapabilityState,
  CompiledMechanism,
  CompileOutcome,
  DryRunTrace,
  HookCall,
  HookContextData,
  HookOutcome,
  HookResult,
  SandboxError,
  ValidationReport,
} from "../sandbox/types.ts";
import type { MechanismRow, RunStore } from "./store.ts";

/** What the loop needs of the sandbox (sandbox/index.ts's Sandbox satisfies it). */
export interface SandboxLike {
  compile(source: string, fileName?: string): Promise<CompileOutcome>;
  load(id: string, mechanism: CompiledMechanism): Promise<{ ok: true } | { ok: false; error: SandboxError }>;
  call(call: HookCall): Promise<HookOutcome>;
  unload(id: string): Promise<void>;
  validate(source: string, trace: DryRunTrace, fileName?: string): Promise<ValidationReport>;
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
   * stores it with its phase, see recordFault).
   */
  async *callAll<H extends HookName>(
    hook: H,
    context: HookContextData,
    /** The hook's argument; a function is asked again for each mechanism (a filter sees earlier modifications). */
    argument?: Proposal | Trial | (() => Proposal | Trial),
  ): AsyncGenerator<HookReport<Extract<HookResult, { hook: H }>> | FaultReport> {
    for (const mechanism of [...this.active]) {
      if (!mechanism.manifest.hooks.includes(hook)) continue;
      const arg = typeof argument === "function" ? argument() : argument;
      const outcome = await this.call(mechanism, hook, context, arg);
      if (!outcome.ok) {
        await this.detach(mechanism.id);
        const reason = describe(outcome.error);
        this.onEvent(`${mechanism.name} quarantined: ${reason}`);
        yield { ok: false, mechanism, hook, outcome, reason };
        continue;
      }
      yield { ok: true, mechanism, result: outcome.result as Extract<HookResult, { hook: H }>, outcome };
    }
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
    if (outcome.ok) {
      mechanism.state = outcome.state;
      mechanism.capabilities = outcome.capabilities;
    }
    return outcome;
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
