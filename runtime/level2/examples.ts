// Literal examples of the replies each Level 2 round expects, shown in its prompt whatever the
// structured-output mode (a json_schema request shows the schema to the API, not to the model's
// eye; text and json_object modes show it only as an instruction). One mechanism runs through
// all of them: explored, critiqued, specified, then written as code. The tests hold each example
// to its round's schema and checks, and compile and dry-run the code in the real sandbox.
import type { Candidate, Critique, MechanismSpec } from "./prompts.ts";

export const EXPLORE_EXAMPLE: { readonly candidates: readonly Candidate[] } = {
  candidates: [
    {
      name: "discard-memory",
      field: "tabu search",
      idea: "Remember the change sets of recently discarded trials and reject a proposal that repeats one.",
      weakness: "The same discarded change (e.g. WARMUP_RATIO=0.1) was proposed and trained twice.",
      hooks: ["init", "filter", "observe"],
      capabilities: [],
    },
    {
      name: "stalled-parameter-hint",
      field: "coordinate descent",
      idea: "When a parameter has been tried 3 times without a kept trial, ask the proposer to move another.",
      weakness: "Most trials change the same parameter although it has not gained.",
      hooks: ["guide"],
      capabilities: [],
    },
  ],
};

export const CRITIQUE_EXAMPLE: Critique = {
  assessments: [
    {
      name: "discard-memory",
      failureModes: ["blocks a retry of a change that noise made look bad"],
      evidence: "two identical discarded trials (#12, #13) with Δ +0.02 and +0.03, both above σ 0.004",
      score: 7,
    },
    {
      name: "stalled-parameter-hint",
      failureModes: ["the proposer may ignore the hint", "too few trials to call a parameter stalled"],
      evidence: "only 3 search trials so far",
      score: 4,
    },
  ],
  selected: "discard-memory",
  reason: "Cheap, and it removes the wasted repeats the trace shows.",
};

export const SPECIFY_EXAMPLE: MechanismSpec = {
  name: "discard-memory",
  description: "Rejects a proposal that repeats a recently discarded change set.",
  hooks: ["init", "filter", "observe"],
  capabilities: [],
  stateFields: [
    { name: "discarded", type: "string[]", meaning: "keys of the last 10 discarded change sets" },
    { name: "streak", type: "number", meaning: "rejections in a row; at 2 the next proposal is accepted" },
  ],
  initialState: '{"discarded": [], "streak": 0}',
  behaviour: [
    {
      hook: "filter",
      behaviour:
        "If streak < 2 and the proposal's change-set key is in discarded: streak += 1, reject with the reason. Else streak = 0, accept.",
    },
    {
      hook: "observe",
      behaviour:
        "A kept trial clears discarded and streak. Otherwise append the trial's change-set key to discarded, keeping the last 10.",
    },
  ],
  risks: ["blocks a useful retry for as long as the key stays in memory"],
};

/** The specification above as a mechanism file: the shape every generated file must have. */
export const CODE_EXAMPLE = `import type { Change, Mechanism } from "bilevel/mechanism-api";

type State = { discarded: string[]; streak: number };

const key = (changes: readonly Change[]): string =>
  changes.map((c) => \`\${c.param}=\${c.value}\`).sort().join(",");

export default {
  manifest: {
    name: "discard-memory",
    version: 1,
    description: "Rejects a proposal that repeats a recently discarded change set.",
    hooks: ["init", "filter", "observe"],
    capabilities: [],
  },
  init() {
    return { discarded: [], streak: 0 };
  },
  filter(proposal, ctx) {
    if (ctx.state.streak < 2 && ctx.state.discarded.includes(key(proposal.changes))) {
      ctx.state.streak += 1; // persists: the state a hook leaves is kept
      return { verdict: "reject", reason: "repeats a recently discarded change set" };
    }
    ctx.state.streak = 0;
    return { verdict: "accept" };
  },
  observe(trial, ctx) {
    if (trial.kept) return { discarded: [], streak: 0 }; // a returned state replaces ctx.state
    ctx.state.discarded = [...ctx.state.discarded, key(trial.changes)].slice(-10);
  },
} satisfies Mechanism<State>;
`;
