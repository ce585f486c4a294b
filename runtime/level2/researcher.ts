// The loop's online Level 2 researcher: runs one research session per call against the run's
// LLM, stores every exchange as it happens, and maps the outcome to the loop's ResearchResult.
import { readFileSync } from "node:fs";
import path from "node:path";
import type { Json } from "../../mechanism-api/index.d.ts";
import type { ResolvedRunConfig as RunConfig } from "../config.ts";
import type { NoiseEstimate } from "../level1/acceptance.ts";
import { storeExchange } from "../llm/chat-json.ts";
import type { LlmClient } from "../llm/client.ts";
import type { RunStore } from "../store.ts";
import { runFacts } from "./facts.ts";
import { type ResearchOutcome, runResearchSession } from "./session.ts";
import { researchTraceFrom } from "./trace.ts";
import type { Researcher, ResearchResult } from "./types.ts";

/** The mechanism API's full text, as the generator sees it. */
export function readApiText(): string {
  return readFileSync(path.resolve(import.meta.dirname, "../../mechanism-api/index.d.ts"), "utf8");
}

/** The noise the loop measured from the baselines (stored as meta "noise"), or null before it has. */
function storedNoise(store: RunStore): NoiseEstimate | null {
  const raw = store.getMeta("noise");
  if (raw === null) return null;
  try {
    const { mean, sigma, n } = JSON.parse(raw) as Partial<Record<keyof NoiseEstimate, unknown>>;
    const finite = (v: unknown): v is number => typeof v === "number" && Number.isFinite(v);
    return finite(mean) && finite(sigma) && finite(n) ? { mean, sigma, n } : null;
  } catch {
    return null;
  }
}

/** Recent loop events worth a researcher's attention (filter rejections, Level 1.5/2 decisions). */
function recentNotes(store: RunStore): string[] {
  return store
    .events()
    .filter((e) => e.level !== "run")
    .slice(-8)
    .map((e) => `it ${e.iteration} [L${e.level} ${e.kind}] ${e.message.slice(0, 200)}`);
}

function designName(outcome: ResearchOutcome): { designName?: string } {
  const name = "design" in outcome ? outcome.design.spec?.name : undefined;
  return name ? { designName: name } : {};
}

/** Map a session outcome to what the loop records; nothing is dropped silently. */
export function toResearchResult(outcome: ResearchOutcome): ResearchResult {
  switch (outcome.status) {
    case "validated":
      return {
        status: "validated",
        origin: "generated",
        name: outcome.name,
        ...designName(outcome),
        source: outcome.source,
        report: outcome.report,
      };
    case "rejected":
      return {
        status: "rejected",
        origin: "generated",
        name: outcome.name,
        ...designName(outcome),
        source: outcome.source ?? "",
        reason: outcome.reason,
        report: outcome.lastReport,
      };
    case "llm-error": {
      const why = `LLM ${outcome.error.code} during ${outcome.step}: ${outcome.error.message}`;
      if (outcome.source === null) return { status: "none", reason: `research session stopped: ${why}` };
      const last = outcome.lastReport?.error;
      return {
        status: "rejected",
        origin: "generated",
        name: outcome.lastReport?.manifest?.name ?? outcome.design.spec?.name ?? "unnamed",
        source: outcome.source,
        reason: `${why}; the code had failed validation${last ? ` (${last.stage}/${last.code}: ${last.message})` : ""}`,
        report: outcome.lastReport,
      };
    }
    case "validator-error":
      return {
        status: "none",
        reason: `the sandbox could not validate the generated code: ${outcome.message}`,
      };
  }
}

export class LlmResearcher implements Researcher {
  readonly kind = "llm";
  private readonly llm: LlmClient;
  private readonly store: RunStore;
  private readonly config: RunConfig;
  private readonly apiText: string;

  constructor(llm: LlmClient, store: RunStore, config: RunConfig, apiText: string = readApiText()) {
    this.llm = llm;
    this.store = store;
    this.config = config;
    this.apiText = apiText;
  }

  async research(input: Parameters<Researcher["research"]>[0]): Promise<ResearchResult> {
    const trace = researchTraceFrom({
      iteration: input.iteration,
      // The live context's params: Level 1.5's frozen parameters are flagged there.
      params: input.trace.context.params,
      incumbent: input.trace.context.incumbent,
      best: input.trace.context.best,
      trials: input.trials,
      window: Math.max(this.config.proposer.historyWindow, 20),
      facts: runFacts({
        config: this.config,
        iteration: input.iteration,
        noise: storedNoise(this.store),
        trials: input.trials,
      }),
      notes: recentNotes(this.store),
      brief: this.config.program?.text ?? null,
    });
    const outcome = await runResearchSession({
      llm: this.llm,
      trace,
      activeMechanisms: input.active,
      tried: input.tried,
      apiText: this.apiText,
      validate: input.validate,
      maxRepairs: this.config.level2.maxRepairs,
      maxJsonRepairs: this.config.proposer.maxRepairs,
      policy: { allowedCapabilities: this.config.policy.grantedCapabilities },
      onExchange: (e) => storeExchange(this.store, input.iteration, e),
    });
    if (outcome.status !== "llm-error" || outcome.design.spec) {
      const design = outcome.design;
      const selected = design.critique?.selected ?? "?";
      const score = design.critique?.assessments.find((a) => a.name === selected)?.score;
      this.store.addEvent(
        input.iteration,
        "2",
        "research",
        `Level 2 design: ${selected}${score === undefined ? "" : ` (score ${score})`} chosen from ${
          design.candidates?.map((c) => c.name).join(", ") ?? "?"
        }`,
        JSON.parse(JSON.stringify(design)) as Json,
      );
    }
    return toResearchResult(outcome);
  }
}
