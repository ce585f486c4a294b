// Level 1.5: every K iterations, adjust the search config (strategy, frozen and active
// parameters, guidance) from per-parameter statistics, within caps.
import type { ParamSpec } from "../../mechanism-api/index.d.ts";
import type { RunConfig } from "../config.ts";
import type { SearchConfig, TrialRow } from "../store.ts";

export interface ParamStats {
  readonly param: string;
  readonly tried: number;
  readonly kept: number;
  readonly failed: number;
  /** Mean valBpb change (vs. incumbent) of the trials that changed it; null when none scored. */
  readonly meanDelta: number | null;
}

export function paramStats(params: readonly ParamSpec[], trials: readonly TrialRow[]): ParamStats[] {
  return params.map((p) => {
    const touching = trials.filter((t) => t.kind === "search" && t.changes.some((c) => c.param === p.name));
    const deltas = touching.map((t) => t.delta).filter((d): d is number => d !== null);
    return {
      param: p.name,
      tried: touching.length,
      kept: touching.filter((t) => t.kept).length,
      failed: touching.filter((t) => t.status !== "ok").length,
      meanDelta: deltas.length > 0 ? deltas.reduce((a, b) => a + b, 0) / deltas.length : null,
    };
  });
}

/** What Level 1.5 (LLM or rules) asks for; `enforceCaps` turns it into a valid search config. */
export interface StrategyRequest {
  readonly strategy: SearchConfig["strategy"];
  readonly freeze: readonly string[];
  readonly unfreeze: readonly string[];
  readonly guidance: string;
  readonly rationale: string;
}

export const STRATEGY_SCHEMA = strategySchema([]);

/** The Level 1.5 reply's schema; freeze and unfreeze enumerate the parameter names (when given). */
export function strategySchema(names: readonly string[]) {
  const name = names.length > 0 ? { type: "string", enum: [...names] } : { type: "string" };
  return {
    type: "object",
    additionalProperties: false,
    required: ["strategy", "freeze", "unfreeze", "guidance", "rationale"],
    properties: {
      strategy: { type: "string", enum: ["explore", "exploit", "balanced"] },
      freeze: { type: "array", items: name, maxItems: 20 },
      unfreeze: { type: "array", items: name, maxItems: 20 },
      guidance: { type: "string", maxLength: 600 },
      rationale: { type: "string", maxLength: 1000 },
    },
  } as const;
}

/**
 * Apply a request within the caps: at most `maxFreezesPerCycle` new freezes, at least
 * `minActive` active parameters, unknown names ignored (and reported).
 */
export function enforceCaps(
  current: SearchConfig,
  request: StrategyRequest,
  params: readonly ParamSpec[],
  caps: RunConfig["level15"],
): { config: SearchConfig; notes: string[] } {
  const names = new Set(params.map((p) => p.name));
  const notes: string[] = [];
  const frozen = new Set(current.frozen);
  for (const name of request.unfreeze) {
    if (!names.has(name)) notes.push(`ignored unknown parameter ${name}`);
    else frozen.delete(name);
  }
  let freezes = 0;
  for (const name of request.freeze) {
    if (!names.has(name)) {
      notes.push(`ignored unknown parameter ${name}`);
      continue;
    }
    if (frozen.has(name)) continue;
    if (freezes >= caps.maxFreezesPerCycle) {
      notes.push(`freeze of ${name} refused: at most ${caps.maxFreezesPerCycle} per cycle`);
      continue;
    }
    if (params.length - frozen.size - 1 < caps.minActive) {
      notes.push(`freeze of ${name} refused: at least ${caps.minActive} parameters stay active`);
      continue;
    }
    frozen.add(name);
    freezes++;
  }
  const config: SearchConfig = {
    strategy: request.strategy,
    frozen: params.map((p) => p.name).filter((n) => frozen.has(n)),
    active: params.map((p) => p.name).filter((n) => !frozen.has(n)),
    guidance: request.guidance.trim(),
  };
  return { config, notes };
}

/**
 * The offline rules: freeze parameters tried `freezeAfterTries` times with no kept gain
 * (worst mean effect first); when the incumbent moved this cycle (a region change),
 * unfreeze everything; explore when the last cycle kept nothing, exploit otherwise.
 */
export function ruleBasedStrategy(
  current: SearchConfig,
  stats: readonly ParamStats[],
  keptThisCycle: number,
  caps: RunConfig["level15"],
): StrategyRequest {
  const unfreeze = keptThisCycle > 0 ? [...current.frozen] : [];
  const freeze = stats
    .filter((s) => !current.frozen.includes(s.param) && s.tried >= caps.freezeAfterTries && s.kept === 0)
    .sort((a, b) => (b.meanDelta ?? 0) - (a.meanDelta ?? 0))
    .map((s) => s.param);
  const strategy = keptThisCycle === 0 ? "explore" : "exploit";
  const reasons = [
    keptThisCycle > 0
      ? `${keptThisCycle} kept this cycle: the region changed, ${unfreeze.length > 0 ? `unfreeze ${unfreeze.join(", ")}` : "nothing frozen"}; exploit`
      : "nothing kept this cycle: explore with larger steps",
    freeze.length > 0
      ? `candidates to freeze (tried ≥ ${caps.freezeAfterTries}, never kept): ${freeze.join(", ")}`
      : "",
  ].filter((r) => r !== "");
  return {
    strategy,
    freeze,
    unfreeze,
    guidance:
      strategy === "explore"
        ? "Recent changes did not beat the incumbent: try larger moves on parameters not tried recently."
        : "Recent changes helped: refine around the incumbent with small moves.",
    rationale: reasons.join("; "),
  };
}

export function formatStats(stats: readonly ParamStats[]): string {
  return stats
    .map(
      (s) =>
        `${s.param}: tried ${s.tried}, kept ${s.kept}, failed ${s.failed}, mean Δ ${s.meanDelta === null ? "n/a" : s.meanDelta.toFixed(4)}`,
    )
    .join("\n");
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
