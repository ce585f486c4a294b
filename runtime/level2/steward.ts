// Level 2 in a run: research sessions, activation (with approval), duplicate refusal, retirement,
// and each mechanism's time budget per iteration. Every decision is stored with its reason.
import type { ParamSpec } from "../../mechanism-api/index.d.ts";
import { EMPTY_CAPABILITIES } from "../../sandbox/index.ts";
import type { DryRunTrace, HookContextData, SandboxError, ValidationReport } from "../../sandbox/types.ts";
import type { ResolvedRunConfig } from "../config.ts";
import { type Batch, describe, type MechanismManager, type SandboxLike } from "../mechanisms.ts";
import { ACTING_OUTCOMES } from "../report.ts";
import type { MechanismRow, RunStore, TrialRow } from "../store.ts";
import type { Researcher, ResearchResult } from "./types.ts";

export interface StewardDeps {
  readonly store: RunStore;
  readonly config: ResolvedRunConfig;
  readonly params: readonly ParamSpec[];
  readonly sandbox: SandboxLike;
  readonly researcher: Researcher;
  readonly mechanisms: MechanismManager;
  readonly emit: (message: string) => void;
}

export class Level2Steward {
  private readonly d: StewardDeps;

  constructor(deps: StewardDeps) {
    this.d = deps;
  }

  /** One research session at `checkpoint`, unless the active limit is reached. */
  async session(
    it: number,
    checkpoint: string,
    trace: DryRunTrace,
    trials: readonly TrialRow[],
  ): Promise<void> {
    const { config, store } = this.d;
    const active = this.d.mechanisms.list();
    if (active.length >= config.policy.maxActiveMechanisms) {
      const message = `Level 2 skipped: ${active.length} mechanisms active (max ${config.policy.maxActiveMechanisms})`;
      store.transaction(() => {
        store.addEvent(it, "2", "skipped", message);
        store.checkpoint(checkpoint);
      });
      this.d.emit(message);
      return;
    }
    const kind = this.d.researcher.kind === "llm" ? "LLM" : "offline: built-in library";
    store.addEvent(it, "2", "session", `Level 2 research session (${kind})`);
    this.d.emit(`Level 2 research session (${kind})`);
    const result = await this.d.researcher.research({
      iteration: it,
      trace,
      trials,
      params: this.d.params,
      active: active.map((m) => ({
        name: m.name,
        description: m.manifest.description ?? "",
        hooks: m.manifest.hooks,
      })),
      tried: store.mechanisms().map((r) => r.name),
      validate: (source) => this.d.sandbox.validate(source, trace),
    });
    await this.install(it, result, checkpoint, trace.context);
  }

  /** Record a Level 2 result (and activate it); `checkpoint` is written in the same transaction. */
  async install(
    it: number,
    result: ResearchResult,
    checkpoint: string,
    context: HookContextData,
  ): Promise<void> {
    const { store, config } = this.d;
    if (result.status === "none")
      return this.conclude(it, checkpoint, "none", `Level 2 produced no mechanism: ${result.reason}`);
    const id = `m${store.mechanisms().length + 1}-${result.name}`.slice(0, 80);
    const base = mechanismRow(id, result, it);
    const designed =
      result.designName && result.designName !== result.name ? ` (designed as ${result.designName})` : "";
    const refusal = result.status === "rejected" ? result.reason : this.duplicateOf(base);
    if (refusal !== null) {
      const who = result.origin === "file" ? "start mechanism" : "Level 2 rejected";
      const message = `${who} ${result.name}${designed}${result.origin === "file" ? " refused" : ""}: ${refusal}`;
      return this.conclude(it, checkpoint, "rejected", message, { ...base, reason: refusal });
    }
    if (!config.policy.autoActivate && result.origin !== "file") {
      const message = `${result.name}${designed} validated; waiting for: bilevel mechanism approve ${store.dir} ${id}`;
      return this.conclude(it, checkpoint, "pending-approval", message, {
        ...base,
        status: "pending-approval",
      });
    }
    await this.activateRow(it, base, context, checkpoint);
  }

  /** Store a session's end (and the mechanism row, if any) with its checkpoint, in one transaction. */
  private conclude(it: number, checkpoint: string, kind: string, message: string, row?: MechanismRow): void {
    const { store } = this.d;
    store.transaction(() => {
      if (row) store.upsertMechanism(row);
      store.addEvent(it, "2", kind, message, row ? { id: row.id } : {});
      store.checkpoint(checkpoint);
    });
    this.d.emit(message);
  }

  /** Why `row` may not be activated next to the active mechanisms (same code or same name), or null. */
  private duplicateOf(row: MechanismRow): string | null {
    const active = this.d.store.mechanisms().filter((m) => m.status === "active" && m.id !== row.id);
    const sameCode = active.find((m) => row.sourceHash !== null && m.sourceHash === row.sourceHash);
    if (sameCode) return `the same code is already active as ${sameCode.id}`;
    // The manifest's name, whatever the origin (a file's or library entry's row is named by its file).
    const name = row.manifest?.name;
    const sameName = active.find((m) => name !== undefined && m.manifest?.name === name);
    if (sameName) return `a mechanism named ${name} is already active (${sameName.id})`;
    return null;
  }

  async activateRow(
    it: number,
    row: MechanismRow,
    context: HookContextData,
    checkpoint?: string,
  ): Promise<void> {
    const duplicate = this.duplicateOf(row);
    if (duplicate !== null) {
      // An approval (or a stored row) must not bring in a second copy either.
      const message = `${row.name} not activated: ${duplicate}`;
      this.d.store.transaction(() => {
        this.d.store.upsertMechanism({ ...row, status: "rejected", reason: duplicate });
        this.d.store.addEvent(it, "2", "rejected", message, { id: row.id });
        if (checkpoint) this.d.store.checkpoint(checkpoint);
      });
      this.d.emit(message);
      return;
    }
    const batch: Batch = [];
    const error: SandboxError | null = await this.d.mechanisms.activate(row, context, batch);
    const message = error
      ? `${row.name} failed to activate: ${describe(error)}`
      : `${row.name} activated (${row.origin}; hooks: ${row.manifest?.hooks.join(", ")})`;
    const { store } = this.d;
    store.transaction(() => {
      for (const write of batch) write();
      store.addEvent(it, "2", error ? "quarantined" : "activated", message, { id: row.id });
      if (checkpoint) store.checkpoint(checkpoint);
    });
    this.d.emit(message);
  }

  /** Activate mechanisms approved with `bilevel mechanism approve` since the last iteration. */
  async processApprovals(it: number, context: () => HookContextData): Promise<void> {
    for (const row of this.d.store.mechanisms()) {
      if (row.status !== "approved") continue;
      if (this.d.mechanisms.list().length >= this.d.config.policy.maxActiveMechanisms) {
        this.d.store.setMechanismStatus(
          row.id,
          "pending-approval",
          "approved, but the active limit is reached",
        );
        continue;
      }
      await this.activateRow(it, row, context());
    }
  }

  /** Retire mechanisms that acted within the window but touched no kept trial (writes go to `batch`). */
  async retire(it: number, trials: readonly TrialRow[], batch: Batch): Promise<void> {
    const window = this.d.config.level2.retireWindow;
    if (window === 0) return;
    const ledger = this.d.store.ledger();
    const rows = this.d.store.mechanisms();
    const keptIds = new Set(trials.filter((t) => t.kept).map((t) => t.id));
    for (const m of [...this.d.mechanisms.list()]) {
      const row = rows.find((r) => r.id === m.id);
      if (!row || row.activatedIteration === null || it - row.activatedIteration < window) continue;
      const recent = ledger.filter(
        (l) => l.mechanismId === m.id && l.iteration > it - window && ACTING_OUTCOMES.includes(l.outcome),
      );
      if (recent.length === 0 || recent.some((l) => l.trialId !== null && keptIds.has(l.trialId))) continue;
      await this.d.mechanisms.deactivate(
        m.id,
        "retired",
        `acted ${recent.length} times in the last ${window} iterations (suggested, modified, rejected or guided) without touching a kept trial`,
        it,
        batch,
      );
    }
  }

  /**
   * Each mechanism's hook time in iteration `it` (read back from the ledger) against the policy's
   * budget: an overrun is recorded; past `maxOverruns` overruns the mechanism is quarantined.
   */
  async enforceBudget(it: number, batch: Batch): Promise<void> {
    const { store, config } = this.d;
    const budget = config.policy.mechanismBudgetMs;
    const spent = new Map<string, number>();
    for (const l of store.ledger()) {
      if (l.iteration === it) spent.set(l.mechanismId, (spent.get(l.mechanismId) ?? 0) + l.latencyMs);
    }
    const overruns = store.events().filter((e) => e.kind === "overrun");
    for (const m of [...this.d.mechanisms.list()]) {
      const ms = spent.get(m.id) ?? 0;
      if (ms <= budget) continue;
      const count = overruns.filter((e) => (e.data as { id?: string }).id === m.id).length + 1;
      const message = `${m.name} spent ${ms.toFixed(0)} ms in hooks this iteration (budget ${budget} ms; overrun ${count} of ${config.policy.maxOverruns} allowed)`;
      batch.push(() => store.addEvent(it, "2", "overrun", message, { id: m.id, ms, budgetMs: budget }));
      this.d.emit(message);
      if (count > config.policy.maxOverruns) {
        await this.d.mechanisms.deactivate(
          m.id,
          "quarantined",
          `over its time budget: ${count} iterations over ${budget} ms of hook time`,
          it,
          batch,
        );
      }
    }
  }
}

/** A new mechanism's row (status "rejected" until activation says otherwise), from its report. */
export function mechanismRow(
  id: string,
  candidate: {
    readonly name: string;
    readonly origin: MechanismRow["origin"];
    readonly source: string;
    readonly report: ValidationReport | null;
    readonly designName?: string;
  },
  iteration: number,
): MechanismRow {
  const compiled = candidate.report?.compiled ?? null;
  return {
    id,
    name: candidate.name,
    origin: candidate.origin,
    status: "rejected",
    source: candidate.source,
    js: compiled?.js ?? null,
    sourceHash: compiled?.sourceHash ?? null,
    jsHash: compiled?.jsHash ?? null,
    manifest: compiled?.manifest ?? candidate.report?.manifest ?? null,
    validation: candidate.report,
    state: {},
    capabilities: EMPTY_CAPABILITIES,
    reason: null,
    createdIteration: iteration,
    activatedIteration: null,
    designName: candidate.designName ?? null,
  };
}
