// The loop's pluggable deciders: proposers (Level 1), strategists (Level 1.5) and the
// offline Level 2 researcher. Online ones reach the LLM only through `ChatJson`.
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import type { Change } from "../mechanism-api/index.d.ts";
import {
  checkProposal,
  type Proposer,
  type ProposerInput,
  type ProposerResult,
  proposalPrompt,
  proposalSchema,
} from "./level1.ts";
import {
  formatStats,
  paramStats,
  ruleBasedStrategy,
  STRATEGY_SCHEMA,
  type StrategyRequest,
} from "./level15.ts";
import type { LlmClient, LlmExchange } from "./llm/client.ts";
import type { Researcher, ResearchResult, Strategist } from "./loop.ts";
import type { RunStore } from "./store.ts";

/**
 * One structured LLM request: the reply must match `schema` and pass `check`; invalid replies are
 * retried with the errors fed back, at most `maxRepairs` times. Every exchange is stored by the
 * implementation. Never throws for remote faults.
 */
export type ChatJson = <T>(request: {
  readonly purpose: string;
  readonly iteration: number;
  readonly system: string;
  readonly user: string;
  readonly schema: object;
  readonly schemaName: string;
  readonly check?: (value: T) => string[];
  readonly maxRepairs: number;
}) => Promise<{ ok: true; value: T } | { ok: false; reason: string }>;

/** Store one LLM exchange (called as soon as it completes, so a killed run keeps it). */
export function storeExchange(store: RunStore, iteration: number, e: LlmExchange): void {
  store.addExchange({
    iteration,
    purpose: e.purpose,
    model: e.model,
    messages: e.messages.map((m) => ({ role: m.role, content: m.content })),
    reply: e.reply,
    error: e.error,
    promptTokens: e.promptTokens,
    completionTokens: e.completionTokens,
    latencyMs: e.latencyMs,
  });
}

/** `ChatJson` over the run's LLM client; every exchange lands in the store. */
export class ChatJsonAdapter {
  private readonly llm: LlmClient;
  private readonly store: RunStore;

  constructor(llm: LlmClient, store: RunStore) {
    this.llm = llm;
    this.store = store;
  }

  readonly chat: ChatJson = async (request) => {
    const result = await this.llm.chatJson({
      purpose: request.purpose,
      messages: [
        { role: "system", content: request.system },
        { role: "user", content: request.user },
      ],
      schema: request.schema,
      schemaName: request.schemaName,
      maxRepairs: request.maxRepairs,
      ...(request.check ? { check: request.check } : {}),
      onExchange: (e) => storeExchange(this.store, request.iteration, e),
    });
    return result.ok
      ? { ok: true, value: result.value }
      : { ok: false, reason: `LLM ${result.error.code}: ${result.error.message}` };
  };
}

/** A decider that asks the LLM, repairing invalid replies at most `maxRepairs` times. */
abstract class LlmBacked {
  protected readonly chat: ChatJson;
  protected readonly maxRepairs: number;

  constructor(chat: ChatJson, maxRepairs: number) {
    this.chat = chat;
    this.maxRepairs = maxRepairs;
  }
}

export class LlmProposer extends LlmBacked implements Proposer {
  readonly kind = "llm";

  async propose(input: ProposerInput): Promise<ProposerResult> {
    const prompt = proposalPrompt(input);
    const reply = await this.chat<{ changes: Change[]; rationale: string }>({
      purpose: "propose",
      iteration: input.iteration,
      system: prompt.system,
      user: prompt.user,
      schema: proposalSchema(input.maxChanges),
      schemaName: "proposal",
      check: (value) => checkProposal(value, input),
      maxRepairs: this.maxRepairs,
    });
    if (!reply.ok) return { ok: false, reason: reply.reason };
    return {
      ok: true,
      changes: reply.value.changes.filter((c) => input.incumbent.config[c.param] !== c.value),
      rationale: reply.value.rationale,
    };
  }
}

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
      schema: STRATEGY_SCHEMA,
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

/** The built-in mechanism library: examples/mechanisms/*.ts. */
export function libraryDir(): string {
  return path.resolve(import.meta.dirname, "../examples/mechanisms");
}

export function listLibrary(dir = libraryDir()): { name: string; file: string }[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith(".ts"))
    .sort()
    .map((f) => ({ name: f.replace(/\.ts$/, ""), file: path.join(dir, f) }));
}

/**
 * Offline Level 2: no code is generated. Each session validates the next library mechanism that
 * this run has not tried yet (in a fixed order) on the live trace.
 */
export class LibraryResearcher implements Researcher {
  readonly kind = "library";
  private readonly dir: string;

  constructor(dir = libraryDir()) {
    this.dir = dir;
  }

  async research(input: Parameters<Researcher["research"]>[0]): Promise<ResearchResult> {
    const next = listLibrary(this.dir).find((m) => !input.tried.includes(m.name));
    if (!next) return { status: "none", reason: "every library mechanism has been tried in this run" };
    const source = readFileSync(next.file, "utf8");
    const report = await input.validate(source);
    if (!report.ok) {
      const e = report.error;
      return {
        status: "rejected",
        origin: "library",
        name: next.name,
        source,
        reason: e ? `${e.stage}/${e.code}: ${e.message}` : "validation failed",
        report,
      };
    }
    return { status: "validated", origin: "library", name: next.name, source, report };
  }
}
