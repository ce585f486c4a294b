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

/** Holds an LLM decider and its offline counterpart; `choose` picks by the gate and remembers it. */
class Budgeted<D extends { readonly kind: string }> {
  private readonly llm: D;
  private readonly offline: D;
  private readonly gate: LlmGate;
  private active: D;

  constructor(llm: D, offline: D, gate: LlmGate) {
    this.llm = llm;
    this.offline = offline;
    this.gate = gate;
    this.active = gate.available ? llm : offline;
  }

  /** The decider of the last call (the loop reads `kind` after calling). */
  protected get last(): D {
    return this.active;
  }

  protected choose(): D {
    this.active = this.gate.available ? this.llm : this.offline;
    return this.active;
  }
}

export class BudgetedProposer extends Budgeted<Proposer> implements Proposer {
  get kind(): Proposer["kind"] {
    return this.last.kind;
  }

  propose(input: ProposerInput): Promise<ProposerResult> {
    return this.choose().propose(input);
  }
}

export class BudgetedStrategist extends Budgeted<Strategist> implements Strategist {
  get kind(): Strategist["kind"] {
    return this.last.kind;
  }

  decide(input: Parameters<Strategist["decide"]>[0]): ReturnType<Strategist["decide"]> {
    return this.choose().decide(input);
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
