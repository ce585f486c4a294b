// The Level 1 LLM proposer: one schema-constrained request per proposal, checked against the space.
import type { Change } from "../../mechanism-api/index.d.ts";
import { type ChatJson, LlmBacked } from "../llm/chat-json.ts";
import {
  checkProposal,
  type Proposer,
  type ProposerInput,
  type ProposerResult,
  proposalPrompt,
  proposalSchema,
} from "./proposer.ts";

export class LlmProposer extends LlmBacked implements Proposer {
  readonly kind = "llm";
  /** The user's research brief (program.md), put in every proposal prompt. */
  private readonly brief: string | null;

  constructor(chat: ChatJson, maxRepairs: number, brief: string | null = null) {
    super(chat, maxRepairs);
    this.brief = brief;
  }

  async propose(input: ProposerInput): Promise<ProposerResult> {
    const prompt = proposalPrompt(input, this.brief);
    const reply = await this.chat<{ changes: Change[]; rationale: string }>({
      purpose: "propose",
      iteration: input.iteration,
      system: prompt.system,
      user: prompt.user,
      schema: proposalSchema(
        input.maxChanges,
        input.params.filter((p) => input.search.active.includes(p.name)),
      ),
      schemaName: "proposal",
      check: (value) => checkProposal(value, input),
      maxRepairs: this.maxRepairs,
    });
    if (!reply.ok)
      return { ok: false, reason: reply.reason, ...(reply.fault === "call" ? { fault: "call" } : {}) };
    return {
      ok: true,
      changes: reply.value.changes.filter((c) => input.incumbent.config[c.param] !== c.value),
      rationale: reply.value.rationale,
    };
  }
}
