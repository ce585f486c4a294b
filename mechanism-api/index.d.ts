/**
 * bilevel mechanism API, version 1 ({@link ApiVersion}): the whole contract a search mechanism
 * compiles against.
 *
 * A mechanism is one TypeScript file whose default export satisfies {@link Mechanism}. It may
 * `import type` from "bilevel/mechanism-api" and nothing else. It runs inside an isolated-vm
 * isolate with a fresh context per hook call: nothing survives between calls except the JSON
 * state the host keeps for it ({@link Context.state}) and the host-kept capability data.
 *
 * Lifecycle (mechanism-api/README.md, "Lifecycle", has the details):
 * - Iterations are numbered from 1; iteration 0 is the baselines. `init` runs once, when the
 *   mechanism is activated, and sees that iteration: 0 for a run's start mechanisms; for one a
 *   Level 2 session activates, the iteration that session ended (its other hooks start in the
 *   next one); for one `mechanism approve` lets in, the iteration it joins.
 * - One iteration calls, in this order: every `guide`, every `suggest`, the proposer (unless a
 *   suggestion replaces it), the `filter` chain, the trial, every `observe`. Within a hook,
 *   mechanisms are called in activation order.
 * - State persists from every hook: whatever `ctx.state` holds when a hook returns (or `init`'s
 *   return value, or `observe`'s if not `undefined`) is stored and handed to the next call.
 * - A hook call *fired* when it ran to completion, and *acted* when what it returned changed what
 *   the loop did (guide text given, a suggestion used, a proposal rejected or modified); `status`
 *   prints both. With `level2.retireWindow` W (default 12), a mechanism active for W iterations
 *   that acted in the last W without touching a kept trial is retired.
 * - A hook that throws, times out or returns something invalid quarantines the mechanism: it is
 *   never called again in this run; the run and the other mechanisms go on.
 *
 * Versioning: a manifest may name the API version it was written for ({@link Manifest.apiVersion});
 * without one it is read as version 1. Later versions only add to this contract or bump the version.
 *
 * This file must stay self-contained (no imports): the sandbox compiler loads its text.
 */

/**
 * The version of this contract. A manifest whose `apiVersion` is greater is refused at `check`
 * ("the mechanism is written for mechanism API version 2, but this runtime has version 1"). The
 * host's copy of the same number is `API_VERSION` in mechanism-api/version.ts.
 */
export type ApiVersion = 1;

/**
 * The capabilities this file's manifest declares. The sandbox compiler sets it, per file, to the
 * union of `manifest.capabilities` before type-checking, so that {@link Context} offers only those;
 * read outside that compiler (your editor) it is every capability.
 */
export type DeclaredCapability = CapabilityName;

/** A hyperparameter value: numbers for int/float parameters, numbers or strings for choices. */
export type ParamValue = number | string;

/** A full or partial assignment of hyperparameters, keyed by parameter name (e.g. "MATRIX_LR"). */
export type Config = { readonly [param: string]: ParamValue };

/**
 * One dimension of the search space, derived from the trainer's declaration. In
 * {@link Context.params} every parameter of the run appears, with `active` and `frozen` set.
 */
export interface ParamSpec {
  /** The parameter's name, as in {@link Config} keys (e.g. "MATRIX_LR"); 1–200 characters. */
  readonly name: string;
  /** Integer, real, or one of {@link ParamSpec.choices}. */
  readonly kind: "int" | "float" | "choice";
  /** Inclusive lower bound for int/float. */
  readonly min?: number;
  /** Inclusive upper bound for int/float. */
  readonly max?: number;
  /** Search on a log scale (learning rates, batch sizes): distances and steps are taken on log(value). */
  readonly log?: boolean;
  /** The allowed values of a choice parameter, in order (at most 256). */
  readonly choices?: readonly ParamValue[];
  /** Int/float: every value must be a multiple of this (e.g. 64). */
  readonly multipleOf?: number;
  /** Int: every value must be a power of two (2**k). */
  readonly powerOfTwo?: boolean;
  /**
   * Conditions every trained config must meet, as Python expressions over the config's names,
   * e.g. "TOTAL_BATCH_SIZE % (DEVICE_BATCH_SIZE * 2048) == 0" (at most 32). A proposal,
   * suggestion or modification that breaks one is refused before any training.
   */
  readonly constraints?: readonly string[];
  /** The value the run starts from when its config does not set one. */
  readonly default: ParamValue;
  /** What the parameter does, in words (at most 4000 characters). */
  readonly description: string;
  /**
   * Whether the search may change it now (Level 1.5's active set). A suggestion or modification
   * that changes an inactive parameter is refused. Always set in {@link Context.params}.
   */
  readonly active?: boolean;
  /** True while Level 1.5 has frozen it: proposals and suggestions that change it are refused. */
  readonly frozen?: boolean;
}

/**
 * One change of one parameter, relative to the incumbent. The value it replaces is the
 * incumbent's: `ctx.incumbent.config[param]`, in `filter` (for the proposal) and in `observe`
 * (for the trial, whose incumbent `ctx.incumbent` still is).
 */
export interface Change {
  /** The parameter's name (one of {@link Context.params}). */
  readonly param: string;
  /** Its new value, within the parameter's range, kind and constraints. */
  readonly value: ParamValue;
}

/** A candidate edit of the incumbent config, as the proposer made it. */
export interface Proposal {
  /** At most the run's `proposer.maxChanges` changes (default 3), relative to the incumbent. */
  readonly changes: readonly Change[];
  /** Why the proposer made it (at most 4000 characters). */
  readonly rationale: string;
  /** Who made it: the LLM, the offline proposer, or a mechanism's `suggest`. */
  readonly source: "llm" | "offline" | "mechanism";
  /** The incumbent with `changes` applied: the config that would be trained. */
  readonly config: Config;
}

/**
 * How a trial ended: `ok` (scored), `invalid-config` (refused before training, e.g. a broken
 * constraint), `oom` (out of memory), `diverged` (loss became NaN or exploded), `timeout`
 * (killed past its time limit), `crashed` (any other failure).
 */
export type TrialStatus = "ok" | "invalid-config" | "oom" | "diverged" | "timeout" | "crashed";

/** A scored (or failed) training run. */
export interface Trial {
  /** The run's trial number (the console's `#N`, `status`, the ledger and results.tsv agree). */
  readonly id: number;
  /** The iteration that trained it (1-based). */
  readonly iteration: number;
  /** The full config that was trained. */
  readonly config: Config;
  /** The changes relative to the incumbent at the time. */
  readonly changes: readonly Change[];
  /** How it ended; only `ok` trials have a score. */
  readonly status: TrialStatus;
  /** Validation bits per byte; null when the trial failed. Lower is better. */
  readonly valBpb: number | null;
  /** Whether the acceptance rule ({@link Context.acceptance}) kept it as the new incumbent. */
  readonly kept: boolean;
  /** valBpb minus the incumbent's valBpb at the time (negative = better); null when unknown. */
  readonly delta: number | null;
}

/**
 * What `filter` decides about a proposal. `modify` **replaces** the proposal's changes with its
 * own (relative to the incumbent; nothing of the old changes is kept unless you repeat it); a
 * modification that breaks the search space is recorded as invalid and ignored.
 */
export type FilterVerdict =
  | { readonly verdict: "accept" }
  | { readonly verdict: "reject"; readonly reason: string }
  | { readonly verdict: "modify"; readonly changes: readonly Change[]; readonly reason: string };

/** What `suggest` returns to replace the proposer's proposal this iteration. */
export interface Suggestion {
  /** At least one change, relative to the incumbent, of active parameters only. */
  readonly changes: readonly Change[];
  /** Why (at most 4000 characters); it is recorded with the proposal. */
  readonly rationale: string;
}

/** The hooks a mechanism may implement (see {@link Mechanism}). */
export type HookName = "init" | "guide" | "suggest" | "filter" | "observe";
/** The host capabilities a manifest may declare: {@link TabuApi}, {@link BanditApi}, {@link SpaceApi}. */
export type CapabilityName = "tabu" | "bandit" | "space";

/** What a mechanism is, written as a literal in the file (the compiler reads it without running it). */
export interface Manifest {
  /** kebab-case, 1–64 characters. */
  readonly name: string;
  /** A positive integer; bump it when behaviour changes. */
  readonly version: number;
  /**
   * The mechanism API version the file is written for, at most {@link ApiVersion}; without it the
   * file is read as version 1. A newer version than the runtime's is refused at `check`.
   */
  readonly apiVersion?: number;
  /** One or two sentences on what it does (at most 4000 characters). */
  readonly description?: string;
  /** The hooks this mechanism implements; each must be defined on the default export, and vice versa. */
  readonly hooks: readonly HookName[];
  /**
   * The capabilities it uses. Only these exist on its {@link Context} (using another is a type
   * error at `check`); the run's policy may grant fewer, and then the mechanism is refused at load.
   */
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

/**
 * What `ctx.tabu` (or `bandit`, `space`) is when the manifest does not declare it: it has no
 * members, so any use is a type error that names the fix ("… does not exist on type
 * 'CapabilityNotDeclared<"tabu">'": add "tabu" to `manifest.capabilities`).
 */
export interface CapabilityNotDeclared<C extends CapabilityName> {
  /** Never present; it only names the capability in type errors. */
  readonly __declareInManifestCapabilities?: C;
}

/**
 * The run's acceptance rule: when a trial replaces the incumbent. A trial is kept when
 * `trial.valBpb < incumbent.valBpb - threshold`.
 */
export interface Acceptance {
  /** `noise-aware` (the default: gains must exceed `k`·σ) or `strict` (any gain is kept). */
  readonly rule: "noise-aware" | "strict";
  /** How many σ a gain must exceed under `noise-aware`. */
  readonly k: number;
  /**
   * The run-to-run noise of val_bpb: the standard deviation of the baseline runs (one per seed),
   * floored at the run's `acceptance.minSigma`; null until the baselines are measured.
   */
  readonly sigma: number | null;
  /** The gain a trial needs to be kept: `k`·σ under `noise-aware`, 0 under `strict` (or without σ). */
  readonly threshold: number;
}

/**
 * The view a hook gets. Everything is a copy made for this call; only `state` is written back
 * (and the capabilities' host-kept data, through their calls). `C` is the capabilities the
 * manifest declares: the others are {@link CapabilityNotDeclared}.
 */
export interface Context<S, C extends CapabilityName = DeclaredCapability> {
  /**
   * The current iteration: 1 for the first search iteration; 0 while the baselines run, which is
   * what a start mechanism's `init` sees.
   */
  readonly iteration: number;
  /**
   * Every parameter of the search space, with `active` (the search may change it now) and `frozen`
   * (Level 1.5 froze it) set; changes to inactive or frozen parameters are refused.
   */
  readonly params: readonly ParamSpec[];
  /**
   * The config proposals start from, and its score (null until one is known). In `observe` it is
   * still the incumbent the trial was measured against: if `trial.kept`, the trial becomes the
   * incumbent from the next hook call on.
   */
  readonly incumbent: { readonly config: Config; readonly valBpb: number | null };
  /** The best trial seen so far (the true minimum over every trial), if any; in `observe`, before this trial. */
  readonly best: { readonly config: Config; readonly valBpb: number } | null;
  /**
   * The most recent search trials, oldest first: at most the run's `proposer.historyWindow`
   * (default 12). In `observe` it does not yet hold the observed trial. It may be empty.
   */
  readonly history: readonly Trial[];
  /** The run's acceptance rule and noise estimate, to judge whether a delta is significant. */
  readonly acceptance: Acceptance;
  /**
   * This mechanism's state: read it, mutate it, or assign a new one. Whatever it holds when any
   * hook returns is stored (see {@link Mechanism}); it must be exact JSON, at most `maxStateBytes`.
   */
  state: S;
  /** Seeded uniform [0, 1): the same run seed, mechanism, iteration and hook give the same stream (so does `Math.random`). */
  random(): number;
  /**
   * Append a line to this call's log (stored in the ledger, shown by `mechanism test`). At most
   * `maxLogLines` (default 50) lines per call, 2000 characters each; the rest are dropped and counted.
   */
  log(message: string): void;
  /** Tabu lists ({@link TabuApi}), if the manifest declares "tabu". */
  readonly tabu: "tabu" extends C ? TabuApi : CapabilityNotDeclared<"tabu">;
  /** Multi-armed bandits ({@link BanditApi}), if the manifest declares "bandit". */
  readonly bandit: "bandit" extends C ? BanditApi : CapabilityNotDeclared<"bandit">;
  /** Helpers over the search space ({@link SpaceApi}), if the manifest declares "space". */
  readonly space: "space" extends C ? SpaceApi : CapabilityNotDeclared<"space">;
}

/**
 * JSON-serialisable state: `null`, booleans, finite numbers, strings, arrays and plain objects.
 * (`NaN` and `Infinity` type-check as numbers, and an instance of a class without methods as an
 * object, but they are refused at run time with `invalid-state`.)
 */
export type Json = null | boolean | number | string | readonly Json[] | { readonly [key: string]: Json };

/**
 * `T` if it is JSON-shaped, else a type it cannot be assigned to: functions, `Set`, `Map`, `Date`,
 * `bigint`, `symbol` and `undefined` in arrays are not. Unlike {@link Json} it accepts interfaces,
 * and `undefined` object properties (dropped, as JSON does).
 */
export type JsonShaped<T> = T extends null | boolean | number | string
  ? T
  : T extends (...args: never[]) => unknown
    ? never
    : T extends readonly unknown[]
      ? { readonly [K in keyof T]: JsonShaped<T[K]> }
      : T extends object
        ? { readonly [K in keyof T]: JsonShaped<Exclude<T[K], undefined>> | undefined }
        : never;

/**
 * A mechanism: the file's default export, `satisfies Mechanism<State>`. Hooks are synchronous
 * and, but for `init` (below), optional; each one defined must be listed in `manifest.hooks`. `State` must be JSON-shaped (a `Set`,
 * `Map` or class in it is a type error at `check`).
 *
 * `init` is required exactly when `{}` is not a valid `State`: without `init` the state starts as
 * `{}`. State persists from every hook (see {@link Context.state}).
 */
export type Mechanism<
  // TypeScript cannot see that the default meets the constraint, which depends on the next
  // parameter's default; it does (a test compiles `satisfies Mechanism`).
  // @ts-expect-error
  S extends JsonCheck = Record<string, Json>,
  // The check of S: a second parameter because `S extends JsonShaped<S>` is a circular constraint.
  JsonCheck = JsonShaped<S>,
> = MechanismHooks<S> &
  (Record<never, never> extends S ? { init?(ctx: Context<S>): S } : { init(ctx: Context<S>): S });

/** The members of {@link Mechanism} other than `init`. */
export interface MechanismHooks<S> {
  /** What the mechanism is and which hooks and capabilities it uses: a literal. */
  readonly manifest: Manifest;
  /**
   * Once per iteration, before the proposer is asked: text added to its prompt (at most 4000
   * characters), or nothing. Only the LLM proposer reads it: offline, and so in `mechanism test`
   * (which runs the offline proposer), guide text is recorded but changes nothing.
   */
  guide?(ctx: Context<S>): string | undefined | void;
  /**
   * Once per iteration, before the proposer is asked: a proposal that replaces the proposer's,
   * or nothing. When several mechanisms suggest, the first valid one (in activation order) is
   * used and the others are recorded as overridden. A suggestion then goes through the filters.
   */
  suggest?(ctx: Context<S>): Suggestion | undefined | void;
  /**
   * After each proposal, before training: accept, reject (with a reason) or modify. Filters run
   * as a chain in activation order: each sees the proposal as the ones before it left it, and a
   * reject ends the chain and asks the proposer again (at most `proposer.maxFilterRejections`
   * times an iteration, default 3; then the iteration trains nothing).
   */
  filter?(proposal: Proposal, ctx: Context<S>): FilterVerdict;
  /**
   * After a trial is scored (or failed): learn from it. Mutate `ctx.state` or return the new state;
   * `ctx.incumbent` and `ctx.history` are still as before this trial.
   */
  observe?(trial: Trial, ctx: Context<S>): S | undefined | void;
}
