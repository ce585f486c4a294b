// Deciders that use the LLM while the run's token budget lasts and their offline counterparts
// after (llm.onBudgetExhausted "offline"): the proposer, the Level 1.5 strategist and the Level 2
// researcher each switch on their next call. The loop reads a proposer's and a strategist's
// `kind` after the call (to record who decided), a researcher's before it (to announce who will):
// so the first two say which one made the last call, the researcher which one makes the next.
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
  private active: Proposer;

  constructor(llm: Proposer, offline: Proposer, gate: LlmGate) {
    this.llm = llm;
    this.offline = offline;
    this.gate = gate;
    this.active = gate.available ? llm : offline;
  }

  get kind(): Proposer["kind"] {
    return this.active.kind;
  }

  propose(input: ProposerInput): Promise<ProposerResult> {
    this.active = this.gate.available ? this.llm : this.offline;
    return this.active.propose(input);
  }
}

export class BudgetedStrategist implements Strategist {
  private readonly llm: Strategist;
  private readonly offline: Strategist;
  private readonly gate: LlmGate;
  private active: Strategist;

  constructor(llm: Strategist, offline: Strategist, gate: LlmGate) {
    this.llm = llm;
    this.offline = offline;
    this.gate = gate;
    this.active = gate.available ? llm : offline;
  }

  get kind(): Strategist["kind"] {
    return this.active.kind;
  }

  decide(input: Parameters<Strategist["decide"]>[0]): ReturnType<Strategist["decide"]> {
    this.active = this.gate.available ? this.llm : this.offline;
    return this.active.decide(input);
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
