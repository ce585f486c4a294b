// Deciders that use the LLM while the run's token budget lasts and their offline counterparts
// after (llm.onBudgetExhausted "offline"): the proposer, the Level 1.5 strategist and the Level 2
// researcher each switch on their next call, and `kind` says which one acted.
import type { Proposer, ProposerInput, ProposerResult } from "../level1/proposer.ts";
import type { Researcher, ResearchResult } from "../level2/types.ts";
import type { Strategist } from "../level15/strategy.ts";

/** Whether LLM calls may still be made. */
export interface LlmGate {
  readonly available: boolean;
}

export class BudgetedProposer implements Proposer {
  private readonly llm: Proposer;
  private readonly offline: Proposer;
  private readonly gate: LlmGate;

  constructor(llm: Proposer, offline: Proposer, gate: LlmGate) {
    this.llm = llm;
    this.offline = offline;
    this.gate = gate;
  }

  get kind(): Proposer["kind"] {
    return (this.gate.available ? this.llm : this.offline).kind;
  }

  propose(input: ProposerInput): Promise<ProposerResult> {
    return (this.gate.available ? this.llm : this.offline).propose(input);
  }
}

export class BudgetedStrategist implements Strategist {
  private readonly llm: Strategist;
  private readonly offline: Strategist;
  private readonly gate: LlmGate;

  constructor(llm: Strategist, offline: Strategist, gate: LlmGate) {
    this.llm = llm;
    this.offline = offline;
    this.gate = gate;
  }

  get kind(): Strategist["kind"] {
    return (this.gate.available ? this.llm : this.offline).kind;
  }

  decide(input: Parameters<Strategist["decide"]>[0]): ReturnType<Strategist["decide"]> {
    return (this.gate.available ? this.llm : this.offline).decide(input);
  }
}

export class BudgetedResearcher implements Researcher {
  private readonly llm: Researcher;
  private readonly offline: Researcher;
  private readonly gate: LlmGate;

  constructor(llm: Researcher, offline: Researcher, gate: LlmGate) {
    this.llm = llm;
    this.offline = offline;
    this.gate = gate;
  }

  get kind(): Researcher["kind"] {
    return (this.gate.available ? this.llm : this.offline).kind;
  }

  research(input: Parameters<Researcher["research"]>[0]): Promise<ResearchResult> {
    return (this.gate.available ? this.llm : this.offline).research(input);
  }
}
