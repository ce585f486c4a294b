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

// ---- Capabilities ------------------------------------------------------------------------------
// Host functions a mechanism reaches through `ctx.tabu`, `ctx.bandit` and `ctx.space` when its
// manifest declares them and the run grants them. They run outside the isolate; arguments and
// results cross as JSON. Every call counts against the per-hook-call budget (default 1000); an
// argument that breaks a documented limit fails the hook with `capability-error`, and a call to a
// capability the manifest does not declare (or the run does not grant) with `capability-denied`.
// Names of lists, bandits, arms and parameters are plain data: any string, "__proto__" included.
// The host keeps the tabu and bandit data next to `ctx.state` (at most `maxCapabilityStateBytes`,
// default 512 KiB, as JSON) and restores it on resume.

/**
 * How close one parameter's values must be for a tabu match:
 * - `{ unit: f }`: at most `f` apart in normalised coordinates (see {@link SpaceApi.toUnit}): a
 *   fraction of the range, of the log range for log parameters, of the choice index for choices;
 * - `{ ratio: r }`: `max(a, b) / min(a, b) ≤ r` (r ≥ 1), the natural rule for log-scale values such
 *   as learning rates (`{ ratio: 1.1 }`: within 10 %); values ≤ 0 must be equal;
 * - `{ absolute: d }`: `|a − b| ≤ d`, in the parameter's own units.
 * Strings (string choices, unknown parameters) must always be equal.
 */
export type ParamTolerance =
  | { readonly unit: number }
  | { readonly ratio: number }
  | { readonly absolute: number };

/** Per-parameter tolerances for {@link TabuApi.contains} and {@link TabuApi.match}. */
export interface TabuTolerance {
  /** The `unit` tolerance of every parameter not in {@link TabuTolerance.params}; default 0.05. */
  readonly default?: number;
  /** A tolerance per parameter name. */
  readonly params?: { readonly [param: string]: ParamTolerance };
}

/** One shared parameter of a {@link TabuMatch}: how far the values are, in the rule's measure. */
export interface TabuNearParam {
  /** The parameter's name. */
  readonly param: string;
  /** The value in the config that was looked up. */
  readonly value: ParamValue;
  /** The value in the entry. */
  readonly entryValue: ParamValue;
  /** `unit`: normalised distance; `ratio`: max/min; `absolute`: |a − b|; `equal`: 0 or 1. */
  readonly measure: "unit" | "ratio" | "absolute" | "equal";
  /** How far apart the two values are, in `measure`. */
  readonly distance: number;
  /** The limit `distance` was held to (0 for `equal`: the values must be equal). */
  readonly tolerance: number;
}

/** The live entry a config matched, and why; see {@link TabuApi.match}. */
export interface TabuMatch {
  /** The entry's config as it was added (a partial config when changes were added). */
  readonly entry: Config;
  /** The iteration it was added at; null for entries stored before this was recorded. */
  readonly added: number | null;
  /** The first iteration at which it is no longer live (added + tenure). */
  readonly expires: number;
  /** Every shared parameter, each within its tolerance. */
  readonly params: readonly TabuNearParam[];
  /**
   * One line for a filter's reject reason, e.g. `near the entry added at iteration 4 (tabu until
   * iteration 14): MATRIX_LR 0.041 vs 0.04 (ratio 1.025 ≤ 1.1)`; the first four parameters are
   * named, then "and N more".
   */
  readonly reason: string;
}

/**
 * Host-kept tabu lists: configs (or changes) that expire after a number of iterations.
 *
 * A config **matches** an entry when the two share at least one parameter and every shared
 * parameter is within its tolerance ({@link TabuTolerance}; default 0.05 of the normalised range).
 * An entry that shares no parameter with the config never matches. Entries and queries may be
 * partial: add `trial.changes` and look up `proposal.changes` to match on the changed parameters
 * only, or add and look up full configs to compare whole configs.
 *
 * At most 64 lists; each holds at most 1000 live entries (fewer with a `capacity`), of at most
 * 16 KiB of JSON each.
 */
export interface TabuApi {
  /**
   * Adds an entry to `list` (created on first use), live from this iteration while
   * `iteration < now + tenure`. Expired entries are dropped at each add. When the list then holds
   * more than `options.capacity` live entries (default and at most 1000), the entries that
   * expire soonest are evicted, the earliest added first among equals.
   * @param config A config, or changes, read as the partial config they set.
   * @param tenure Iterations the entry stays live: an integer in [1, 100000].
   * @throws `capability-error` beyond 64 lists or for an entry over 16 KiB as JSON.
   */
  add(
    list: string,
    config: Config | readonly Change[],
    tenure: number,
    options?: { readonly capacity?: number },
  ): void;
  /**
   * Whether any live entry of `list` matches `config` (an unknown list holds nothing).
   * @param tolerance A `unit` tolerance for every parameter (a number in [0, 1]), or per-parameter
   * rules; default 0.05.
   */
  contains(list: string, config: Config | readonly Change[], tolerance?: number | TabuTolerance): boolean;
  /**
   * The most recently added live entry of `list` that `config` matches, with each shared
   * parameter's distance and a one-line reason; null when none matches. Same rule as
   * {@link TabuApi.contains}.
   */
  match(
    list: string,
    config: Config | readonly Change[],
    tolerance?: number | TabuTolerance,
  ): TabuMatch | null;
  /** Number of live (unexpired) entries of `list`; 0 for an unknown list. */
  size(list: string): number;
  /** Removes `list` and all its entries. */
  clear(list: string): void;
}

/**
 * How {@link BanditApi.select} picks an arm:
 * - `"ucb1"`: highest `estimate + c·√(ln N / n)` (N: pulls of all arms, n: the arm's);
 * - `"epsilon-greedy"`: with probability ε a uniformly random arm, else the highest estimate;
 * - `"thompson"`: Beta(1 + s, 1 + n − s) draws, s the reward sum clipped to [0, n]: for rewards in [0, 1];
 * - `"thompson-gaussian"`: draws from N(μ, σ²/(n + 1)), the posterior of a Gaussian reward with
 *   known noise σ and the prior N(initial ?? 0, σ²) counted as one observation.
 * Without an `initial` value, UCB1 and ε-greedy first try every arm never pulled, in declaration order.
 */
export type BanditPolicy = "ucb1" | "thompson" | "thompson-gaussian" | "epsilon-greedy";

/** A bandit's settings, given to {@link BanditApi.arms} and kept with its statistics. */
export interface BanditSettings {
  /**
   * Optimistic initial value: every arm starts with one pseudo-pull of this reward, so UCB1 and
   * ε-greedy rank arms by `(initial + Σ rewards) / (1 + n)` and force none first, and
   * `thompson-gaussian` takes it as the prior mean; `thompson` (Beta) ignores it. In [−10⁶, 10⁶].
   */
  readonly initial?: number;
  /**
   * Discount γ in (0, 1] for non-stationary rewards: every reward first multiplies every arm's
   * reward sum and pull weight by γ, so a reward k pulls old counts γᵏ.
   */
  readonly discount?: number;
}

/** Options of one {@link BanditApi.select} call. */
export interface BanditSelectOptions {
  /** ε-greedy: the exploration probability before decay, in [0, 1]; default 0.1. */
  readonly epsilon?: number;
  /** ε-greedy: ε is `max(minEpsilon, epsilon · decay^t)` after t rewards to this bandit; in (0, 1], default 1. */
  readonly decay?: number;
  /** ε-greedy: the floor of the decayed ε; default 0. */
  readonly minEpsilon?: number;
  /** UCB1: the exploration weight c in [0, 100]; default √2. */
  readonly c?: number;
  /** thompson-gaussian: the reward noise σ > 0; default 1. Set it to the spread of your rewards. */
  readonly sigma?: number;
}

/** One arm's statistics; see {@link BanditApi.stats}. */
export interface ArmStats {
  /** The arm's id, as given to {@link BanditApi.arms}. */
  readonly arm: string;
  /** Rewards given to this arm ({@link BanditApi.reward} calls), undiscounted. */
  readonly pulls: number;
  /** The pull count the estimates use: `pulls`, or discounted when the bandit discounts. */
  readonly weight: number;
  /** Mean reward over `weight` (0 before the first pull). */
  readonly meanReward: number;
  /** The value greedy policies rank by: `meanReward`, or with the `initial` pseudo-pull mixed in. */
  readonly estimate: number;
}

/**
 * Host-kept multi-armed bandits, drawing from the call's seeded RNG (so runs replay). A pull is
 * counted when you call {@link BanditApi.reward}, not at `select`: reward every arm you act on.
 * At most 64 bandits of 256 arms each.
 */
export interface BanditApi {
  /**
   * Declares arms of `bandit` (created on first use). Idempotent: new ids are added at any time
   * with no pulls, existing statistics are kept. `settings`, when given, replace the bandit's
   * settings; omitted, the current ones stay.
   * @throws `capability-error` beyond 64 bandits or 256 arms.
   */
  arms(bandit: string, ids: readonly string[], settings?: BanditSettings): void;
  /**
   * Picks an arm by `policy` (see {@link BanditPolicy}).
   * @throws `capability-error` when the bandit has no arms.
   */
  select(bandit: string, policy: BanditPolicy, options?: BanditSelectOptions): string;
  /**
   * Records one pull of `arm` with reward `value`, a finite number in [−10⁶, 10⁶].
   * @throws `capability-error` for an unknown bandit or arm.
   */
  reward(bandit: string, arm: string, value: number): void;
  /**
   * Every arm's statistics, in declaration order.
   * @throws `capability-error` when the bandit has no arms.
   */
  stats(bandit: string): readonly ArmStats[];
}

/** How {@link SpaceApi.sample} places points: seeded uniform or Latin hypercube, or the low-discrepancy Sobol or Halton sequence. */
export type SampleMethod = "uniform" | "lhs" | "sobol" | "halton";

/**
 * Pure helpers over the search space. They work in **normalised coordinates**, the project's one
 * mapping of each parameter to [0, 1]: linear over [min, max], over [ln min, ln max] for log
 * parameters; choice i of n at i / (n − 1). Every value they return is an allowed value: within
 * bounds, ints rounded, multiples and powers of two snapped, floats to 6 significant digits,
 * choices from the list. An unknown parameter name is a `capability-error`.
 */
export interface SpaceApi {
  /** `value` made allowed for `param`: clamped, rounded and snapped; for choices the value itself or the nearest numeric choice. */
  clamp(param: string, value: ParamValue): ParamValue;
  /**
   * `value`'s normalised coordinate in [0, 1] (clamped).
   * @throws `capability-error` for a value the parameter cannot hold (a string for a number, an unknown choice).
   */
  toUnit(param: string, value: ParamValue): number;
  /** The allowed value at normalised coordinate `u` (clamped to [0, 1]); for choices [0, 1] is cut into n equal bins. */
  fromUnit(param: string, u: number): ParamValue;
  /**
   * `config` with `param` moved one step up (+1) or down (−1): `step` normalised units, in
   * (0, 1], default 0.1. An int or multiple that rounds back moves one allowed unit (×2 for
   * powers of two); a choice moves to the adjacent one; at a bound the value stays.
   */
  neighbour(config: Config, param: string, direction: 1 | -1, step?: number): Config;
  /**
   * Every one-parameter move of `config` up and down by `scale` normalised units (in (0, 1]),
   * over `params` (default: the active, i.e. not frozen, parameters); moves that change nothing
   * are left out. At most 2 per parameter.
   */
  neighbours(config: Config, scale: number, params?: readonly string[]): Config[];
  /**
   * Root mean square of the per-parameter distances in normalised coordinates, in [0, 1], over
   * `params` (default: every parameter); a missing value reads as the default.
   */
  distance(a: Config, b: Config, params?: readonly string[]): number;
  /**
   * `n` (1–1000) points as partial configs over `options.params` (default: the active
   * parameters), placed in normalised coordinates by `options.method` (default `"lhs"`).
   * `uniform` and `lhs` draw from the call's seeded RNG; `sobol` (at most 32 parameters) and
   * `halton` are deterministic: they return points `start … start + n − 1` of the sequence
   * (default 1; point 0 is the all-minimum corner), so a mechanism can draw a few per iteration
   * and continue from where it stopped.
   */
  sample(
    n: number,
    options?: {
      readonly method?: SampleMethod;
      readonly params?: readonly string[];
      readonly start?: number;
    },
  ): Config[];
  /** `sample(n, { method: "lhs", params })`, except that `params` defaults to every parameter, frozen ones included. */
  latinHypercube(n: number, params?: readonly string[]): Config[];
  /**
   * The rows of the smallest standard orthogonal array (L4, L8, L16 for 2 levels, at most 15
   * parameters; L9, L27 for 3 levels, at most 13) that fits `params`; levels map to
   * low / (mid) / high of each normalised range.
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
