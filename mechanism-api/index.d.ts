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
 * One change of one parameter, relative to the config it applies to: the incumbent when the
 * change was proposed. Every change the host hands a mechanism ({@link Proposal.changes} in
 * `filter`, {@link Trial.changes} in `observe` and {@link Context.history},
 * {@link PendingTrial.changes} in {@link Context.pending}) carries {@link Change.previous}, the
 * value it replaced, as recorded when it was proposed.
 *
 * The changes a mechanism returns ({@link Suggestion.changes}, a `modify` {@link FilterVerdict})
 * need only `param` and `value`: a `previous` in them is accepted and ignored, since the host
 * records what a change replaced itself. So `trial.changes` can be handed back as they are.
 */
export interface Change {
  /** The parameter's name (one of {@link Context.params}). */
  readonly param: string;
  /** Its new value, within the parameter's range, kind and constraints. */
  readonly value: ParamValue;
  /**
   * The value the parameter had in the config the change was applied to (the incumbent when it
   * was proposed), recorded by the host then. In a run with `parallel` > 1 the incumbent may move
   * while a trial trains, so in `observe` it can differ from `ctx.incumbent.config[param]`.
   *
   * Optional in the changes a mechanism returns, where the host ignores it; absent in trials
   * recorded by a bilevel before this field existed (an older run, resumed): check for
   * `undefined`. An optional field added to API version 1 ({@link ApiVersion}): no version bump.
   */
  readonly previous?: ParamValue;
}

/** A candidate edit of the incumbent config, as the proposer made it. */
export interface Proposal {
  /**
   * The changes relative to the incumbent, each with {@link Change.previous}, the incumbent's
   * value. From the proposer (`llm`, `offline`): at most the run's `proposer.maxChanges` (default
   * 3). A mechanism's suggestion or `modify` is not held to that number.
   */
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
  /**
   * The changes relative to the incumbent when it was proposed, each with the value it replaced
   * ({@link Change.previous}; absent in trials recorded before that field existed).
   */
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
 * A trial that has started and not finished yet: only a run with `parallel` > 1 has any (see
 * {@link Context.pending}). When it finishes, `observe` receives it as a {@link Trial}.
 */
export interface PendingTrial {
  /** Its trial id; ids follow start order, so it will be the `id` of the {@link Trial} `observe` receives. */
  readonly id: number;
  /** The iteration that proposed it. */
  readonly iteration: number;
  /** The full configuration it trains. */
  readonly config: Config;
  /** What it changes, against the incumbent of the moment it was proposed ({@link Change.previous}: that incumbent's values). */
  readonly changes: readonly Change[];
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
  /**
   * Trials still training, oldest first: empty unless the run has `parallel` > 1 (at most
   * `parallel` − 1 of them while a new proposal is made). They are in neither `history` nor
   * `incumbent` yet; a filter can treat them as taken (e.g. reject a proposal too close to one),
   * and `observe` fires for each when it finishes, judged against the incumbent of that moment.
   */
  readonly pending: readonly PendingTrial[];
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
