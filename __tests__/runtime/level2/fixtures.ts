// Shared data for the Level 2 tests: a small trace, scripted LLM replies, a good mechanism,
// a broken one, and a fake validator with the sandbox's report shape.
import type { ParamSpec } from "../../../mechanism-api/index.d.ts";
import type { RunFacts } from "../../../runtime/level2/facts.ts";
import type { ResearchTrace } from "../../../runtime/level2/trace.ts";
import type { SandboxError, ValidationReport } from "../../../sandbox/types.ts";

export const PARAMS: ParamSpec[] = [
  {
    name: "MATRIX_LR",
    kind: "float",
    min: 0.001,
    max: 0.2,
    log: true,
    default: 0.04,
    description: "Muon LR",
  },
  { name: "WARMUP_RATIO", kind: "float", min: 0, max: 0.5, default: 0, description: "warmup fraction" },
  {
    name: "WINDOW_PATTERN",
    kind: "choice",
    choices: ["L", "SL", "SSSL"],
    default: "SSSL",
    description: "windows",
  },
];

/** The facts of a run of 30 iterations after iteration 14, noise-aware with k = 2. */
export const FACTS: RunFacts = {
  iteration: 14,
  iterations: 30,
  researchEvery: 10,
  retireCheckEvery: 5,
  acceptance: { mode: "noise-aware", k: 2, noise: { mean: 2.43, sigma: 0.004, n: 3 }, threshold: 0.008 },
  baseline: 2.43,
  restartEvery: 0,
  historyWindow: 12,
  maxChanges: 2,
  maxFilterRejections: 3,
  retireWindow: 12,
  maxActiveMechanisms: 3,
  autoActivate: true,
  limits: {
    hookTimeoutMs: 1000,
    capabilityCallBudget: 1000,
    maxStateBytes: 65536,
    maxLogLines: 50,
    mechanismBudgetMs: 5000,
    maxOverruns: 3,
  },
};

export const TRACE: ResearchTrace = {
  iteration: 14,
  params: PARAMS,
  incumbent: { config: { MATRIX_LR: 0.05, WARMUP_RATIO: 0, WINDOW_PATTERN: "SSSL" }, valBpb: 2.41 },
  best: { config: { MATRIX_LR: 0.05, WARMUP_RATIO: 0, WINDOW_PATTERN: "SSSL" }, valBpb: 2.41 },
  totalTrials: 3,
  keptTrials: 1,
  recent: [
    {
      iteration: 11,
      changes: [{ param: "MATRIX_LR", value: 0.05 }],
      status: "ok",
      valBpb: 2.41,
      delta: -0.02,
      kept: true,
    },
    {
      iteration: 12,
      changes: [{ param: "WARMUP_RATIO", value: 0.1 }],
      status: "ok",
      valBpb: 2.43,
      delta: 0.02,
      kept: false,
    },
    {
      iteration: 13,
      changes: [{ param: "WARMUP_RATIO", value: 0.1 }],
      status: "ok",
      valBpb: 2.44,
      delta: 0.03,
      kept: false,
    },
  ],
  paramStats: [
    { param: "MATRIX_LR", tried: 1, kept: 1, failed: 0, meanDelta: -0.02 },
    { param: "WARMUP_RATIO", tried: 2, kept: 0, failed: 0, meanDelta: 0.025 },
    { param: "WINDOW_PATTERN", tried: 0, kept: 0, failed: 0, meanDelta: null },
  ],
  facts: FACTS,
  notes: ["Level 1.5 froze DEPTH"],
};

export const EXPLORE_REPLY = {
  candidates: [
    {
      name: "repeat-guard",
      field: "tabu search",
      idea: "Reject proposals that repeat a recently discarded change set.",
      weakness: "WARMUP_RATIO=0.1 was tried twice in a row and discarded both times.",
      hooks: ["init", "filter", "observe"],
      capabilities: [],
    },
    {
      name: "ucb-param-picker",
      field: "multi-armed bandits",
      idea: "Pick which parameter to change with UCB1 over past gains.",
      weakness: "Effort is spread evenly although MATRIX_LR is the only parameter that gained.",
      hooks: ["init", "guide", "observe"],
      capabilities: ["bandit"],
    },
  ],
};

export const CRITIQUE_REPLY = {
  assessments: [
    {
      name: "repeat-guard",
      failureModes: ["blocks a retry that noise made look bad"],
      evidence: "two identical discarded trials (#12, #13), Δ +0.02 and +0.03 > σ 0.004",
      score: 7,
    },
    {
      name: "ucb-param-picker",
      failureModes: ["too few trials for UCB to be informative"],
      evidence: "only 3 trials so far",
      score: 5,
    },
  ],
  selected: "repeat-guard",
  reason: "Cheap, directly addresses the wasted repeat.",
};

export const SPEC_REPLY = {
  name: "repeat-guard",
  description: "Rejects proposals that repeat a recently discarded change set.",
  hooks: ["init", "filter", "observe"],
  capabilities: [],
  stateFields: [
    { name: "streak", type: "number", meaning: "consecutive rejections" },
    { name: "maxStreak", type: "number", meaning: "after this many, let proposals through" },
  ],
  initialState: '{"streak": 0, "maxStreak": 3}',
  behaviour: [
    { hook: "filter", behaviour: "Reject when the same change set was discarded in the last 5 trials." },
    { hook: "observe", behaviour: "Reset the streak after a kept trial." },
  ],
  risks: ["may block a useful retry"],
};

export const GOOD_SOURCE = `import type { Mechanism } from "bilevel/mechanism-api";

type State = { streak: number; maxStreak: number };

export default {
  manifest: {
    name: "repeat-guard",
    version: 1,
    description: "Rejects proposals that repeat a recently discarded change set.",
    hooks: ["init", "filter", "observe"],
    capabilities: [],
  },
  init() {
    return { streak: 0, maxStreak: 3 };
  },
  filter(proposal, ctx) {
    const repeats = ctx.history
      .slice(-5)
      .some(
        (t) =>
          !t.kept &&
          t.changes.length === proposal.changes.length &&
          t.changes.every((c) => proposal.changes.some((p) => p.param === c.param && p.value === c.value)),
      );
    if (repeats && ctx.state.streak < ctx.state.maxStreak) {
      ctx.state.streak += 1;
      return { verdict: "reject", reason: "repeats a recently discarded change set" };
    }
    ctx.state.streak = 0;
    return { verdict: "accept" };
  },
  observe(trial, ctx) {
    if (trial.kept) ctx.state.streak = 0;
  },
} satisfies Mechanism<State>;
`;

/** The good mechanism with a type error on line 17 (a method the context does not have). */
export const BROKEN_SOURCE = GOOD_SOURCE.replace(
  "const repeats = ctx.history",
  "const repeats = ctx.historyy",
);

export const fenced = (code: string, prose = "Here is the mechanism:") =>
  `${prose}\n\n\`\`\`ts\n${code}\`\`\`\n`;

/** Sandbox-shaped reports without the sandbox: a type error for "historyy", a dry-run timeout for "for (;;)". */
export async function fakeValidate(source: string): Promise<ValidationReport> {
  const lines = source.split("\n");
  const fail = (error: SandboxError): ValidationReport => ({
    ok: false,
    manifest: null,
    stages: [{ stage: error.stage, ok: false, durationMs: 1, error }],
    error,
    compiled: null,
  });
  const typo = lines.findIndex((l) => l.includes("ctx.historyy"));
  if (typo >= 0) {
    return fail({
      stage: "compile",
      code: "type-error",
      message: "Property 'historyy' does not exist on type 'Context<State>'. Did you mean 'history'?",
      line: typo + 1,
      column: (lines[typo] ?? "").indexOf("historyy") + 1,
    });
  }
  if (source.includes("for (;;)")) {
    return fail({ stage: "filter", code: "timeout", message: "filter did not return within 1000 ms" });
  }
  if (!source.includes("export default")) {
    return fail({ stage: "compile", code: "syntax-error", message: "no default export", line: 1, column: 1 });
  }
  const name = /name: "([^"]+)"/.exec(source)?.[1] ?? "unnamed";
  const caps = /capabilities: \[([^\]]*)\]/.exec(source)?.[1] ?? "";
  return {
    ok: true,
    manifest: {
      name,
      version: 1,
      hooks: ["init", "filter", "observe"],
      capabilities: caps
        .split(",")
        .map((c) => c.trim().replace(/"/g, ""))
        .filter((c): c is "tabu" | "bandit" | "space" => c === "tabu" || c === "bandit" || c === "space"),
    },
    stages: [
      { stage: "compile", ok: true, durationMs: 1 },
      { stage: "lint", ok: true, durationMs: 1 },
      { stage: "load", ok: true, durationMs: 1 },
    ],
    error: null,
    compiled: null,
  };
}
