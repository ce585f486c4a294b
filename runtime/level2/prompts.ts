// Prompts and JSON Schemas of the Level 2 research session (explore, critique, specify,
// generate, repair). Each system prompt carries a step marker so logs and test servers can
// tell the calls apart. Schemas use only keywords OpenAI's strict structured outputs accept
// (no minLength/maxLength); length limits are enforced by the session's checks instead.
import type { CapabilityName, HookName } from "../../mechanism-api/index.d.ts";
import type { SandboxError } from "../../sandbox/types.ts";
import { formatTrace, type ResearchTrace } from "./trace.ts";

export const STEP_MARKERS = {
  explore: "[level2:explore]",
  critique: "[level2:critique]",
  specify: "[level2:specify]",
  generate: "[level2:generate]",
  repair: "[level2:repair]",
} as const;
export type ResearchStep = keyof typeof STEP_MARKERS;

export const KEBAB = "^[a-z][a-z0-9]*(-[a-z0-9]+)*$";
const ACTING_HOOKS: readonly HookName[] = ["guide", "suggest", "filter", "observe"];
const ALL_HOOKS: readonly HookName[] = ["init", ...ACTING_HOOKS];

export interface ActiveMechanismInfo {
  readonly name: string;
  readonly description: string;
  readonly hooks: readonly string[];
}

export interface Candidate {
  readonly name: string;
  readonly field: string;
  readonly idea: string;
  readonly weakness: string;
  readonly hooks: readonly HookName[];
  readonly capabilities: readonly CapabilityName[];
}

export interface Critique {
  readonly assessments: readonly {
    readonly name: string;
    readonly failureModes: readonly string[];
    readonly evidence: string;
    readonly score: number;
  }[];
  readonly selected: string;
  readonly reason: string;
}

export interface MechanismSpec {
  readonly name: string;
  readonly description: string;
  readonly hooks: readonly HookName[];
  readonly capabilities: readonly CapabilityName[];
  readonly stateFields: readonly { readonly name: string; readonly type: string; readonly meaning: string }[];
  /** JSON text of the initial state object. */
  readonly initialState: string;
  readonly behaviour: readonly { readonly hook: HookName; readonly behaviour: string }[];
  readonly risks: readonly string[];
}

// ---- schemas

const str = { type: "string" } as const;

function capabilitiesSchema(allowed: readonly CapabilityName[]): object {
  // An empty enum is not valid JSON Schema: with nothing allowed, the list must be empty.
  return allowed.length > 0
    ? { type: "array", items: { type: "string", enum: [...allowed] }, maxItems: allowed.length }
    : { type: "array", items: str, maxItems: 0 };
}

export function exploreSchema(allowed: readonly CapabilityName[]): object {
  return {
    type: "object",
    additionalProperties: false,
    required: ["candidates"],
    properties: {
      candidates: {
        type: "array",
        minItems: 2,
        maxItems: 5,
        items: {
          type: "object",
          additionalProperties: false,
          required: ["name", "field", "idea", "weakness", "hooks", "capabilities"],
          properties: {
            name: { type: "string", pattern: KEBAB },
            field: str,
            idea: str,
            weakness: str,
            hooks: {
              type: "array",
              minItems: 1,
              maxItems: 5,
              items: { type: "string", enum: [...ALL_HOOKS] },
            },
            capabilities: capabilitiesSchema(allowed),
          },
        },
      },
    },
  };
}

export const CRITIQUE_SCHEMA = critiqueSchema([]);

/** The critique's schema; assessments and the selection enumerate the candidates' names (when given). */
export function critiqueSchema(candidates: readonly string[]) {
  const name = candidates.length > 0 ? { type: "string", enum: [...candidates] } : str;
  return {
    type: "object",
    additionalProperties: false,
    required: ["assessments", "selected", "reason"],
    properties: {
      assessments: {
        type: "array",
        minItems: 1,
        maxItems: 5,
        items: {
          type: "object",
          additionalProperties: false,
          required: ["name", "failureModes", "evidence", "score"],
          properties: {
            name,
            failureModes: { type: "array", minItems: 1, maxItems: 4, items: str },
            evidence: str,
            score: { type: "number", minimum: 0, maximum: 10 },
          },
        },
      },
      selected: name,
      reason: str,
    },
  } as const;
}

export function specifySchema(allowed: readonly CapabilityName[]): object {
  return {
    type: "object",
    additionalProperties: false,
    required: [
      "name",
      "description",
      "hooks",
      "capabilities",
      "stateFields",
      "initialState",
      "behaviour",
      "risks",
    ],
    properties: {
      name: { type: "string", pattern: KEBAB },
      description: str,
      hooks: { type: "array", minItems: 1, maxItems: 5, items: { type: "string", enum: [...ALL_HOOKS] } },
      capabilities: capabilitiesSchema(allowed),
      stateFields: {
        type: "array",
        maxItems: 12,
        items: {
          type: "object",
          additionalProperties: false,
          required: ["name", "type", "meaning"],
          properties: { name: str, type: str, meaning: str },
        },
      },
      initialState: str,
      behaviour: {
        type: "array",
        minItems: 1,
        maxItems: 5,
        items: {
          type: "object",
          additionalProperties: false,
          required: ["hook", "behaviour"],
          properties: { hook: { type: "string", enum: [...ALL_HOOKS] }, behaviour: str },
        },
      },
      risks: { type: "array", maxItems: 5, items: str },
    },
  };
}

// ---- prompts

const PREAMBLE = [
  "You are the research step (Level 2) of a bilevel autoresearch system. The inner loop tunes the",
  "hyperparameters of a small GPT pretraining run: each iteration it proposes 1-3 changes to the incumbent",
  "config, trains for a fixed time and scores val_bpb (validation bits per byte, lower is better).",
  "You improve HOW the inner loop searches by designing a search mechanism: a small deterministic",
  "TypeScript plug-in whose hooks the loop calls at fixed points of every iteration:",
  "init (once: initial JSON state), guide (text added to the proposer's prompt), suggest (a proposal that",
  "replaces the proposer's), filter (accept, reject with a reason, or modify a proposal before training),",
  "observe (after each trial is scored: update state).",
  "Mechanisms run in a sandbox: synchronous, no I/O, no clock, state is plain JSON kept by the host, and",
  "host capabilities only when declared: tabu (tabu lists with expiry and range-aware matching), bandit",
  "(UCB1 / Thompson / epsilon-greedy arms on a seeded RNG), space (clamp, neighbour, distance, Latin",
  "hypercube and orthogonal-array samples of the search space).",
].join("\n");

function capabilityLine(allowed: readonly CapabilityName[]): string {
  return allowed.length > 0
    ? `Capabilities this run allows: ${allowed.join(", ")} (no others).`
    : "This run allows no capabilities: use only ctx fields, ctx.random() and ctx.log().";
}

function activeLines(active: readonly ActiveMechanismInfo[], tried: readonly string[]): string[] {
  return [
    "Active mechanisms:",
    ...(active.length > 0
      ? active.map((m) => `- ${m.name} [${m.hooks.join(", ")}]: ${m.description || "(no description)"}`)
      : ["(none)"]),
    tried.length > 0 ? `Names already used in this run (do not reuse): ${tried.join(", ")}` : "",
  ].filter((l) => l !== "");
}

export interface Prompt {
  readonly system: string;
  readonly user: string;
}

export function explorePrompt(input: {
  readonly trace: ResearchTrace;
  readonly active: readonly ActiveMechanismInfo[];
  readonly tried: readonly string[];
  readonly allowed: readonly CapabilityName[];
}): Prompt {
  return {
    system: [
      PREAMBLE,
      "",
      `${STEP_MARKERS.explore} EXPLORE. Propose 2 to 5 candidate mechanisms, each borrowed from another field`,
      "(numerical optimisation, multi-armed bandits, design of experiments, evolutionary search, Bayesian",
      "optimisation, tabu / local search, sequential statistics, ...). Each must target a weakness visible in",
      "the trace (name it in `weakness`), differ from the active mechanisms, and be implementable with the",
      "hooks and allowed capabilities. Use at least one of guide, suggest or filter: a mechanism that only",
      "observes cannot change the search. Names are kebab-case. Reply with JSON only.",
    ].join("\n"),
    user: [
      formatTrace(input.trace),
      "",
      ...activeLines(input.active, input.tried),
      capabilityLine(input.allowed),
    ].join("\n"),
  };
}

export function critiquePrompt(input: {
  readonly trace: ResearchTrace;
  readonly candidates: readonly Candidate[];
  readonly active: readonly ActiveMechanismInfo[];
}): Prompt {
  return {
    system: [
      PREAMBLE,
      "",
      `${STEP_MARKERS.critique} CRITIQUE. Assess every candidate (one assessment each, same name): how it could`,
      "fail or harm this search (failureModes: e.g. starves exploration, fights an active mechanism, never",
      "fires, overreacts to noise), what in the trace supports or contradicts it (evidence, citing numbers),",
      "and a score from 0 to 10 for expected gain per unit of risk. Then select the single best candidate by",
      "its exact name, with the reason. Reply with JSON only.",
    ].join("\n"),
    user: [
      formatTrace(input.trace),
      "",
      ...activeLines(input.active, []),
      "",
      "Candidates:",
      JSON.stringify(input.candidates, null, 1),
    ].join("\n"),
  };
}

export function specifyPrompt(input: {
  readonly trace: ResearchTrace;
  readonly candidate: Candidate;
  readonly critique: Critique;
  readonly allowed: readonly CapabilityName[];
  readonly tried: readonly string[];
}): Prompt {
  const assessment = input.critique.assessments.find((a) => a.name === input.candidate.name);
  return {
    system: [
      PREAMBLE,
      "",
      `${STEP_MARKERS.specify} SPECIFY. Write the exact specification of the selected mechanism, precise enough`,
      "to implement without guessing: kebab-case name; a one-sentence description; the hooks it implements",
      "(include init when it has state; include at least one of guide, suggest, filter); the capabilities it",
      "calls (only allowed ones); its state fields (name, TypeScript type, meaning) and initialState (a JSON",
      "object text matching those fields); for each hook, its behaviour step by step, with thresholds and",
      "how the failure modes below are avoided; remaining risks. Reply with JSON only.",
    ].join("\n"),
    user: [
      "Selected candidate:",
      JSON.stringify(input.candidate, null, 1),
      assessment ? `Critique: ${JSON.stringify(assessment)}` : "",
      `Why selected: ${input.critique.reason}`,
      "",
      capabilityLine(input.allowed),
      input.tried.length > 0
        ? `Names already used in this run (do not reuse): ${input.tried.join(", ")}`
        : "",
      "",
      "Search space:",
      ...input.trace.params.map((p) => `- ${p.name} (${p.kind}${p.log ? ", log" : ""})`),
    ]
      .filter((l) => l !== "")
      .join("\n"),
  };
}

const EXAMPLE = `import type { Mechanism } from "bilevel/mechanism-api";

type State = { tenure: number };

export default {
  manifest: { name: "tabu-search", version: 1, description: "Rejects proposals near recent trials.",
              hooks: ["init", "filter", "observe"], capabilities: ["tabu"] },
  init() { return { tenure: 5 }; },
  filter(proposal, ctx) {
    return ctx.tabu.contains("recent", proposal.config)
      ? { verdict: "reject", reason: "revisits a tabu region" }
      : { verdict: "accept" };
  },
  observe(trial, ctx) { ctx.tabu.add("recent", trial.config, ctx.state.tenure); },
} satisfies Mechanism<State>;`;

function codeRules(allowed: readonly CapabilityName[]): string {
  return [
    "Rules (a violation is rejected by the compiler, linter or dry run):",
    '1. ONE file. The only import is `import type { ... } from "bilevel/mechanism-api";`.',
    "2. `export default { manifest, ...hooks } satisfies Mechanism<State>;` with `type State = {...}` of JSON",
    "   fields. manifest: { name (kebab-case), version: 1, description, hooks, capabilities }.",
    "3. manifest.hooks lists exactly the hooks defined; manifest.capabilities exactly the ones used.",
    `4. ${capabilityLine(allowed)}`,
    "5. Hooks are synchronous: no async, Promise, timers, I/O, Date or Math.random (use ctx.random()).",
    "   No eval, Function, require, import(), globalThis, WebAssembly, Atomics, SharedArrayBuffer,",
    "   __proto__ or .constructor. No classes that need `new` from outside the file.",
    "6. State is JSON only: return it from init, mutate ctx.state (or return it) in observe.",
    "7. Every value proposed (suggest, filter modify) must be inside its parameter's range: use",
    "   ctx.space.clamp when the space capability is declared, else ctx.params' min/max/choices.",
    "8. Handle empty history, a null incumbent valBpb and a null best without throwing.",
    "9. TypeScript strict mode; index access may be undefined (check it).",
    "Reply with the complete file inside one ```ts fence and nothing else.",
  ].join("\n");
}

function codeSystem(
  marker: string,
  title: string,
  allowed: readonly CapabilityName[],
  apiText: string,
): string {
  return [
    PREAMBLE,
    "",
    `${marker} ${title}`,
    codeRules(allowed),
    "",
    "A minimal example of the shape:",
    "```ts",
    EXAMPLE,
    "```",
    "",
    'The full API ("bilevel/mechanism-api", mechanism-api/index.d.ts):',
    "```ts",
    apiText.trim(),
    "```",
  ].join("\n");
}

function specText(spec: MechanismSpec): string {
  return ["Specification:", JSON.stringify(spec, null, 1)].join("\n");
}

export function generatePrompt(input: {
  readonly spec: MechanismSpec;
  readonly allowed: readonly CapabilityName[];
  readonly apiText: string;
  readonly trace: ResearchTrace;
}): Prompt {
  return {
    system: codeSystem(
      STEP_MARKERS.generate,
      "GENERATE. Implement the specification below as one TypeScript mechanism file.",
      input.allowed,
      input.apiText,
    ),
    user: [
      specText(input.spec),
      "",
      `Parameter names: ${input.trace.params.map((p) => p.name).join(", ")}`,
    ].join("\n"),
  };
}

export function repairSystem(allowed: readonly CapabilityName[], apiText: string): string {
  return codeSystem(
    STEP_MARKERS.repair,
    "REPAIR. Your mechanism file failed validation. Fix every error listed and return the whole corrected file.",
    allowed,
    apiText,
  );
}

/** One error as the repair prompt shows it: stage/code, line:column, message, and the offending line. */
export function formatValidationError(error: SandboxError, source: string): string {
  const where = error.line !== undefined ? ` at line ${error.line}:${error.column ?? 1}` : "";
  const head = `- [${error.stage}/${error.code}]${where}: ${error.message}`;
  if (error.line === undefined) return head;
  const text = source.split("\n")[error.line - 1];
  return text === undefined ? head : `${head}\n    ${error.line} | ${text.trimEnd()}`;
}

export function repairUser(errors: readonly string[]): string {
  return [
    "Validation failed (compile -> lint -> load -> dry run of every declared hook on the live trace):",
    ...errors,
    "",
    "Return the complete corrected file in one ```ts fence.",
  ].join("\n");
}
