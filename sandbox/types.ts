// The sandbox's public contract, shared by the host (sandbox/), the loop (runtime/) and the CLI.
// Everything here is plain data: it crosses the process boundary to the sandbox child as JSON.
import type {
  Acceptance,
  BanditSettings,
  CapabilityName,
  Change,
  Config,
  FilterVerdict,
  HookName,
  Json,
  Manifest,
  ParamSpec,
  PendingTrial,
  Proposal,
  Suggestion,
  Trial,
} from "../mechanism-api/index.d.ts";

/** Where a mechanism failed. */
export type SandboxStage = "compile" | "lint" | "load" | HookName;

/** Why it failed. */
export type SandboxErrorCode =
  | "type-error" // the TypeScript compiler rejected it
  | "syntax-error"
  | "forbidden-syntax" // the AST lint rejected it
  | "invalid-manifest"
  | "missing-hook" // declared in the manifest but not defined (or defined but not declared)
  | "timeout" // the host-side deadline or the isolate's timeout passed
  | "memory" // the isolate's memory limit, or the child's OS cap
  | "invalid-result" // the hook returned something that fails the schema, is not JSON, or is too large
  | "invalid-state" // the state is not JSON, or exceeds the state size cap
  | "capability-denied" // called a capability it did not declare, or the policy does not grant
  | "capability-budget" // too many capability calls in one hook call
  | "capability-error" // a capability was called with bad arguments
  | "thrown" // the hook threw
  | "crashed" // the sandbox child died
  | "quarantined"; // the mechanism faulted before and is no longer called

export interface SandboxError {
  readonly stage: SandboxStage;
  readonly code: SandboxErrorCode;
  /** Plain text: no host stack, no host paths. */
  readonly message: string;
  /** 1-based position in the mechanism's TypeScript source, for code errors. */
  readonly line?: number;
  readonly column?: number;
}

/** Limits that a run's policy sets; every field has a safe default. */
export interface SandboxPolicy {
  /** Capabilities mechanisms may get; a manifest asking for more is rejected at load. */
  readonly grantedCapabilities: readonly CapabilityName[];
  /** Host-side deadline for one hook call, including capability calls. */
  readonly hookTimeoutMs: number;
  /** isolated-vm memoryLimit per isolate. */
  readonly isolateMemoryMb: number;
  /** Capability calls allowed in one hook call. */
  readonly capabilityCallBudget: number;
  /** Max bytes of JSON crossing the boundary in either direction (arguments, results, state). */
  readonly maxJsonBytes: number;
  /** Max bytes of a mechanism's state. */
  readonly maxStateBytes: number;
  /**
   * Max bytes of a mechanism's host-kept capability data (tabu lists, bandit statistics) as JSON.
   * The effective cap is at most half of maxJsonBytes, so that the next call still fits.
   */
  readonly maxCapabilityStateBytes: number;
  /** Max log lines per hook call (more are dropped and counted). */
  readonly maxLogLines: number;
}

/** The host-kept data of the tabu and bandit capabilities for one mechanism (JSON, persisted with its state). */
export interface CapabilityState {
  /** Each list's entries in the order added; `added` is absent on entries stored before it existed. */
  readonly tabu: {
    readonly [list: string]: readonly {
      readonly config: Config;
      readonly expires: number;
      readonly added?: number;
    }[];
  };
  /** Per arm: real pulls, reward sum and (once its bandit discounts) the discounted pull count. */
  readonly bandit: {
    readonly [bandit: string]: {
      readonly [arm: string]: {
        readonly pulls: number;
        readonly rewardSum: number;
        readonly weight?: number;
      };
    };
  };
  /** Each bandit's settings from `arms()`; absent until a bandit has any. */
  readonly banditSettings?: { readonly [bandit: string]: BanditSettings };
}

/** The data a hook's `ctx` is built from (the host adds random/log/capabilities inside the isolate). */
export interface HookContextData {
  readonly iteration: number;
  readonly params: readonly ParamSpec[];
  readonly incumbent: { readonly config: Config; readonly valBpb: number | null };
  readonly best: { readonly config: Config; readonly valBpb: number } | null;
  readonly history: readonly Trial[];
  /** Trials in flight (a run with `parallel` > 1); absent means none. */
  readonly pending?: readonly PendingTrial[];
  readonly acceptance: Acceptance;
  /** The run seed; random() is seeded from (seed, mechanism id, iteration, hook). */
  readonly seed: number;
}

/** One hook invocation. `state` and `capabilities` are the mechanism's current host-kept data. */
export interface HookCall {
  readonly mechanismId: string;
  readonly hook: HookName;
  readonly context: HookContextData;
  readonly state: Json;
  readonly capabilities: CapabilityState;
  /** The proposal for `filter`, the trial for `observe`; absent otherwise. */
  readonly argument?: Proposal | Trial;
}

/**
 * One hook called on several mechanisms in one round trip to the child, in order. Each call still
 * gets a fresh context, its own isolate timeout and host-side deadline, and its own outcome.
 */
export interface HookBatch {
  readonly hook: HookName;
  readonly context: HookContextData;
  /** Every call's argument; for a chain, the first filter's proposal. */
  readonly argument?: Proposal | Trial;
  readonly calls: readonly Pick<HookCall, "mechanismId" | "state" | "capabilities">[];
  /**
   * filter only: each filter sees the proposal as the filters before it left it (a valid `modify`
   * replaces its changes, checked against `base` and `active`), and a `reject` ends the batch.
   */
  readonly chain?: { readonly base: Config; readonly active: readonly string[] };
}

/**
 * The module that holds the filter chain's rule (runtime/level1/filter-chain.ts), which the run names
 * in SandboxOptions.chainRule: the child applies the run's own rule between a chain's calls.
 */
export interface ChainRuleModule {
  /** The changes the next filter sees after `verdict` (kind "rejected": the chain ends). */
  filterStep(
    verdict: FilterVerdict,
    changes: readonly Change[],
    rule: NonNullable<HookBatch["chain"]>,
    params: readonly ParamSpec[],
  ): { readonly kind: string; readonly changes: readonly Change[] };
  chainProposal(
    offered: Pick<Proposal, "rationale" | "source">,
    base: Config,
    changes: readonly Change[],
  ): Proposal;
}

export type HookResult =
  | { readonly hook: "init"; readonly value: Json }
  | { readonly hook: "guide"; readonly value: string | null }
  | { readonly hook: "suggest"; readonly value: Suggestion | null }
  | { readonly hook: "filter"; readonly value: FilterVerdict }
  | { readonly hook: "observe"; readonly value: null };

export type HookOutcome =
  | {
      readonly ok: true;
      readonly result: HookResult;
      /** The state after the call (init: its return value). */
      readonly state: Json;
      readonly capabilities: CapabilityState;
      readonly logs: readonly string[];
      readonly droppedLogLines: number;
      readonly capabilityCalls: number;
      /** Wall time of the round trip as the host measured it. */
      readonly durationMs: number;
    }
  | { readonly ok: false; readonly error: SandboxError; readonly durationMs: number };

/** Compile + lint output: what the loop stores for a mechanism. */
export interface CompiledMechanism {
  readonly manifest: Manifest;
  readonly source: string;
  readonly js: string;
  readonly sourceHash: string; // sha256 hex of the TypeScript source
  readonly jsHash: string; // sha256 hex of the compiled JavaScript
}

export type CompileOutcome =
  | { readonly ok: true; readonly mechanism: CompiledMechanism; readonly durationMs: number }
  | { readonly ok: false; readonly errors: readonly SandboxError[]; readonly durationMs: number };

/** A trace to dry-run hooks on: the search space, a few trials, an incumbent. */
export interface DryRunTrace {
  readonly context: HookContextData;
  /** A proposal to feed `filter`, and a trial to feed `observe`. */
  readonly proposal: Proposal;
  readonly trial: Trial;
}

/** Result of compile → lint → load → dry run of every declared hook. */
export interface ValidationReport {
  readonly ok: boolean;
  readonly manifest: Manifest | null;
  readonly stages: readonly {
    readonly stage: SandboxStage;
    readonly ok: boolean;
    readonly durationMs: number;
    readonly error?: SandboxError;
  }[];
  /** The first failure, if any. */
  readonly error: SandboxError | null;
  /** When compiling or linting failed: the errors found (the earliest 20), in source order; `error` is the failing stage's first. */
  readonly errors?: readonly SandboxError[];
  readonly compiled: CompiledMechanism | null;
}
