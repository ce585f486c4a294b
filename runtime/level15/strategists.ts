// Level 1.5 strategists: rule-based (offline) and LLM-backed. Both return a request that the loop
// bounds with enforceCaps before applying it.
import { LlmBacked } from "../llm/chat-json.ts";
import {
  formatStats,
  paramStats,
  ruleBasedStrategy,
  type Strategist,
  type StrategyRequest,
  strategySchema,
} from "./strategy.ts";

export class RuleStrategist implements Strategist {
  readonly kind = "rules";
  private readonly caps: Parameters<typeof ruleBasedStrategy>[3];

  constructor(caps: Parameters<typeof ruleBasedStrategy>[3]) {
    this.caps = caps;
  }

  async decide(input: Parameters<Strategist["decide"]>[0]) {
    const stats = paramStats(input.params, input.trials);
    return {
      ok: true as const,
      request: ruleBasedStrategy(input.current, stats, input.keptThisCycle, this.caps),
    };
  }
}

export class LlmStrategist extends LlmBacked implements Strategist {
  readonly kind = "llm";

  async decide(input: Parameters<Strategist["decide"]>[0]) {
    const names = new Set(input.params.map((p) => p.name));
    const recent = input.trials
      .filter((t) => t.kind === "search")
      .slice(-10)
      .map(
        (t) =>
          `#${t.iteration} ${t.description}: ${t.valBpb?.toFixed(4) ?? t.status}${t.kept ? " KEPT" : ""}`,
      );
    const reply = await this.chat<StrategyRequest>({
      purpose: "level15",
      iteration: input.iteration,
      system:
        "You steer a hyperparameter search (Level 1.5). From per-parameter statistics and the recent trace, choose the " +
        "strategy (explore, exploit or balanced), parameters to freeze (no longer changed) and to unfreeze, and one short " +
        "guidance sentence for the proposer. Reply with JSON only.",
      user: [
        `Iteration ${input.iteration}; ${input.keptThisCycle} kept this cycle.`,
        `Current strategy: ${input.current.strategy}; frozen: ${input.current.frozen.join(", ") || "none"}.`,
        "Per-parameter statistics:",
        formatStats(paramStats(input.params, input.trials)),
        "Recent trials:",
        ...(recent.length > 0 ? recent : ["(none)"]),
      ].join("\n"),
      schema: strategySchema(input.params.map((p) => p.name)),
      schemaName: "strategy",
      check: (value) =>
        [...value.freeze, ...value.unfreeze]
          .filter((n) => !names.has(n))
          .map((n) => `${n}: unknown parameter`),
      maxRepairs: this.maxRepairs,
    });
    return reply.ok
      ? { ok: true as const, request: reply.value }
      : { ok: false as const, reason: reply.reason };
  }
}
