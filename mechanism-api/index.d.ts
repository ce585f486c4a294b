/**
 * bilevel mechanism API — the whole contract a search mechanism compiles against.
 *
 * A mechanism is one TypeScript file whose default export satisfies `Mechanism<S>`.
 * It may `import type` from "bilevel/mechanism-api" and nothing else. It runs inside
 * an isolated-vm isolate with a fresh context per hook call: nothing survives between
 * calls except the JSON state the host keeps for it (`ctx.state`).
 *
 * This file must stay self-contained (no imports): the sandbox compiler loads its text.
 */

/** A hyperparameter value: numbers for int/float parameters, numbers or strings for choices. */
export type ParamValue = number | string;

/** A full or partial assignment of hyperparameters, keyed by parameter name (e.g. "MATRIX_LR"). */
export type Config = { readonly [param: string]: ParamValue };

/** One dimension of the search space, derived from the trainer's declaration. */
export interface ParamSpec {
  readonly name: string;
  readonly kind: "int" | "float" | "choice";
  /** Inclusive bounds for int/float. */
  readonly min?: number;
  readonly max?: number;
  /** Search on a log scale (learning rates, batch sizes). */
  readonly log?: boolean;
  /** The allowed values of a choice parameter, in order. */
  readonly choices?: readonly ParamValue[];
  /** Int/float: every value must be a multiple of this (e.g. 64). */
  readonly multipleOf?: number;
  /** Int: every value must be a power of two (2**k). */
  readonly powerOfTwo?: boolean;
  /**
   * Conditions every trained config must meet, as Python expressions over the config's names,
   * e.g. "TOTAL_BATCH_SIZE % (DEVICE_BATCH_SIZE * 2048) == 0". A proposal, suggestion or
   * modification that breaks one is refused before any training.
   */
  readonly constraints?: readonly string[];
  readonly default: ParamValue;
  readonly description: string;
  /** True while Level 1.5 has frozen it: proposals and suggestions that change it are refused. */
  readonly frozen?: boolean;
}

/** One change of one parameter. */
export interface Change {
  readonly param: string;
  readonly value: ParamValue;
}

/** A candidate edit of the incumbent config, as the proposer made it. */
export interface Proposal {
  readonly changes: readonly Change[];
  readonly rationale: string;
  /** Who made it: the LLM, the offline proposer, or a mechanism's `suggest`. */
  readonly source: "llm" | "offline" | "mechanism";
  /** The incumbent with `changes` applied: the config that would be trained. */
  readonly config: Config;
}

export type TrialStatus = "ok" | "invalid-config" | "oom" | "diverged" | "timeout" | "crashed";

/** A scored (or failed) training run. */
export interface Trial {
  readonly id: number;
  readonly iteration: number;
  readonly config: Config;
  readonly changes: readonly Change[];
  readonly status: TrialStatus;
  /** Validation bits per byte; null when the trial failed. Lower is better. */
  readonly valBpb: number | null;
  /** Whether the acceptance rule kept it as the new incumbent. */
  readonly kept: boolean;
  /** valBpb minus the incumbent's valBpb at the time (negative = better); null when unknown. */
  readonly delta: number | null;
}

/** What `filter` decides about a proposal. */
export type FilterVerdict =
  | { readonly verdict: "accept" }
  | { readonly verdict: "reject"; readonly reason: string }
  | { readonly verdict: "modify"; readonly changes: readonly Change[]; readonly reason: string };

/** What `suggest` returns to replace the proposer's proposal this iteration. */
export interface Suggestion {
  readonly changes: readonly Change[];
  readonly rationale: string;
}

export type HookName = "init" | "guide" | "suggest" | "filter" | "observe";
export type CapabilityName = "tabu" | "bandit" | "space";

export interface Manifest {
  /** kebab-case, 1–64 characters. */
  readonly name: string;
  /** A positive integer; bump it when behaviour changes. */
  readonly version: number;
  readonly description?: string;
  /** The hooks this mechanism implements; each must be defined on the default export. */
  readonly hooks: readonly HookName[];
  /** The capabilities it uses; calling one not listed (or not granted by the run) throws. */
  readonly capabilities: readonly CapabilityName[];
}

/**
 * Host-kept tabu lists. Entries expire `tenure` iterations after they were added.
 * `contains` matches a config when every parameter present in both is within the
 * tolerance: a fraction (default 0.05) of the parameter's range, measured on the log
 * scale for log parameters; choices must be equal.
 */
export interface TabuApi {
  add(list: string, config: Config, tenure: number): void;
  contains(list: string, config: Config, tolerance?: number): boolean;
  /** Number of live (unexpired) entries. */
  size(list: string): number;
  clear(list: string): void;
}

export type BanditPolicy = "ucb1" | "thompson" | "epsilon-greedy";

export interface ArmStats {
  readonly arm: string;
  readonly pulls: number;
  readonly meanReward: number;
}

/**
 * Host-kept multi-armed bandits, on the call's seeded RNG.
 * Rewards should lie in [0, 1]; Thompson sampling uses a Beta posterior and clips
 * rewards to that range, UCB1 and ε-greedy use them as given.
 */
export interface BanditApi {
  /** Declare arms (idempotent; new ids are added, existing statistics kept). */
  arms(bandit: string, ids: readonly string[]): void;
  select(bandit: string, policy: BanditPolicy, options?: { epsilon?: number; c?: number }): string;
  reward(bandit: string, arm: string, value: number): void;
  stats(bandit: string): readonly ArmStats[];
}

/** Pure helpers over the search space (all values respect bounds, integrality and choices). */
export interface SpaceApi {
  clamp(param: string, value: ParamValue): ParamValue;
  /**
   * Move one parameter of `config` one step up (+1) or down (-1). `step` is a fraction of
   * the range (log range for log parameters), default 0.1; choices move to the next one.
   */
  neighbour(config: Config, param: string, direction: 1 | -1, step?: number): Config;
  /** Normalised distance in [0, 1]: root mean square of per-parameter distances. */
  distance(a: Config, b: Config): number;
  /** n points of a Latin hypercube over `params` (default: all), as partial configs. */
  latinHypercube(n: number, params?: readonly string[]): Config[];
  /**
   * The rows of the smallest standard orthogonal array (L4, L8, L9, L16, L27) that fits
   * `params` at 2 or 3 levels; levels map to low / (mid) / high of each range.
   */
  orthogonalArray(params: readonly string[], levels: 2 | 3): Config[];
}

/** The view a hook gets. Everything is a copy; only `state` is written back. */
export interface Context<S> {
  readonly iteration: number;
  /** The search space; Level 1.5 may mark some parameters `frozen` (changes to those are refused). */
  readonly params: readonly ParamSpec[];
  /** The config proposals start from, and its score. */
  readonly incumbent: { readonly config: Config; readonly valBpb: number | null };
  /** The best trial seen so far (the true minimum), if any. */
  readonly best: { readonly config: Config; readonly valBpb: number } | null;
  /** The most recent trials, oldest first (bounded; see the host's policy). */
  readonly history: readonly Trial[];
  /** This mechanism's state: mutate it, or return a new one from `init`/`observe`. */
  state: S;
  /** Seeded uniform [0, 1): the same run seed, mechanism, iteration and hook give the same stream. */
  random(): number;
  /** Bounded log: lines beyond the per-call limit are dropped and counted. */
  log(message: string): void;
  readonly tabu: TabuApi;
  readonly bandit: BanditApi;
  readonly space: SpaceApi;
}

/** JSON-serialisable state. */
export type Json = null | boolean | number | string | readonly Json[] | { readonly [key: string]: Json };

export interface Mechanism<S = Record<string, Json>> {
  readonly manifest: Manifest;
  /** Once, on activation: the initial state. */
  init?(ctx: Context<S>): S;
  /** Before the proposer is asked: text added to its prompt, or nothing. */
  guide?(ctx: Context<S>): string | undefined | void;
  /** Before the proposer is asked: a proposal that replaces the proposer's, or nothing. */
  suggest?(ctx: Context<S>): Suggestion | undefined | void;
  /** After a proposal, before training: accept, reject (with a reason) or modify. */
  filter?(proposal: Proposal, ctx: Context<S>): FilterVerdict;
  /** After a trial is scored: update state (mutate ctx.state or return the new state). */
  observe?(trial: Trial, ctx: Context<S>): S | undefined | void;
}
