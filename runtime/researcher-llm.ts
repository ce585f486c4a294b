// Online Level 2: a four-call research session (runtime/level2/session.ts) whose mechanism is
// validated on the live trace; every exchange is stored as it completes.
import { readFileSync } from "node:fs";
import path from "node:path";
import { storeExchange } from "./agents.ts";
import type { RunConfig } from "./config.ts";
import { runResearchSession } from "./level2/session.ts";
import { researchTraceFrom } from "./level2/trace.ts";
import type { LlmClient } from "./llm/client.ts";
import type { Researcher, ResearchResult } from "./loop.ts";
import type { RunStore } from "./store.ts";

const API_TEXT = readFileSync(path.resolve(import.meta.dirname, "../mechanism-api/index.d.ts"), "utf8");

export class LlmResearcher implements Researcher {
  readonly kind = "llm";
  private readonly llm: LlmClient;
  private readonly store: RunStore;
  private readonly config: RunConfig;

  constructor(llm: LlmClient, store: RunStore, config: RunConfig) {
    this.llm = llm;
    this.store = store;
    this.config = config;
  }

  async research(input: Parameters<Researcher["research"]>[0]): Promise<ResearchResult> {
    const ctx = input.trace.context;
    const noise = this.store.getMeta("noise");
    const outcome = await runResearchSession({
      llm: this.llm,
      trace: researchTraceFrom({
        iteration: input.iteration,
        params: input.params,
        incumbent: ctx.incumbent,
        best: ctx.best,
        trials: input.trials,
        noiseSigma: noise ? (JSON.parse(noise) as { sigma: number }).sigma : null,
        notes: this.store
          .events()
          .filter((e) => e.level !== "run")
          .slice(-8)
          .map((e) => e.message),
      }),
      activeMechanisms: input.active,
      tried: input.tried,
      apiText: API_TEXT,
      validate: input.validate,
      maxRepairs: this.config.level2.maxRepairs,
      policy: { allowedCapabilities: this.config.policy.capabilities },
      onExchange: (e) => storeExchange(this.store, input.iteration, e),
    });
    switch (outcome.status) {
      case "validated":
        return {
          status: "validated",
          origin: "generated",
          name: outcome.name,
          source: outcome.source,
          report: outcome.report,
        };
      case "rejected":
        return {
          status: "rejected",
          origin: "generated",
          name: outcome.name,
          source: outcome.source ?? "",
          reason: `${outcome.reason} (after ${outcome.attempts} validation attempt(s))`,
          report: outcome.lastReport,
        };
      case "llm-error":
        return {
          status: "none",
          reason: `LLM failed at ${outcome.step}: ${outcome.error.code}: ${outcome.error.message}`,
        };
      case "validator-error":
        return { status: "none", reason: `the validator failed: ${outcome.message}` };
    }
  }
}
