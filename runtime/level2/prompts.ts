// Prompts and JSON Schemas of the Level 2 research session (explore, critique, specify,
// generate, repair). Each system prompt carries a step marker so logs and test servers can
// tell the calls apart. Schemas use only keywords OpenAI's strict structured outputs accept
// (no minLength/maxLength); length limits are enforced by the session's checks instead.
import type { CapabilityName, HookName } from "../../mechanism-api/index.d.ts";
import type { SandboxError } from "../../sandbox/types.ts";
import { CODE_EXAMPLE, CRITIQUE_EXAMPLE, EXPLORE_EXAMPLE, SPECIFY_EXAMPLE } from "./examples.ts";
import { formatContract, formatTrace, type ResearchTrace } from "./trace.ts";

export const STEP_MARKERS = {
  explore: "[level2:explore]",
  critique: "[level2:critique]",
  specify: "[level2:specify]",
  generate: "[level2:generate]",
  repair: "[level2:repair]",
} as const;
export type ResearchStep = keyof typeof STEP_MARKERS;

export const KEBAB = "^[a-z][a-z0-9]*(-[a-z0-9]+)*$";
/** Longest idea, description or hook behaviour the session accepts (checked after the schema). */
export const MAX_TEXT = 2_000;
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
  "hyperparameters of a small GPT pretraining run: each iteration a proposer changes a few parameters of",
  "the incumbent config, the result is trained for a fixed time and scored by val_bpb (validation bits per",
  "byte, lower is better). You improve HOW the inner loop searches by designing a search mechanism: a",
  "small deterministic TypeScript plug-in whose hooks the loop calls at fixed points of every iteration:",
  "init (once: initial JSON state), guide (text added to the proposer's prompt), suggest (a proposal that",
  "replaces the proposer's), filter (accept, reject with a reason, or modify a proposal before training),",
  "observe (after each trial is scored).",
  "Mechanisms run in a sandbox: synchronous, no I/O, state is plain JSON kept by the host, and host",
  "capabilities only when declared: tabu (tabu lists that expire), bandit (multi-armed bandits on a seeded",
  "RNG), space (clamping, neighbours, distances and designed samples of the search space).",
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

/** A JSON round's literal example, whatever the structured-output mode. */
function exampleReply(example: object): string {
  return [
    "A literal example of a valid reply (its shape; your content comes from this run's trace):",
    JSON.stringify(example, null, 1),
  ].join("\n");
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
      "observes cannot change the search. Names are kebab-case, at most 64 characters, unique, and not",
      `already used in this run; each idea under ${MAX_TEXT} characters. Reply with JSON only.`,
      exampleReply(EXPLORE_EXAMPLE),
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
      "fires, overreacts to noise, is retired for acting without gains), what in the trace supports or",
      "contradicts it (evidence, citing numbers), and a score from 0 to 10 for expected gain per unit of risk",
      "within the iterations left. Then select the single best candidate by its exact name, with the reason.",
      "Reply with JSON only.",
      exampleReply(CRITIQUE_EXAMPLE),
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
      "calls (only allowed ones); its state fields (name, TypeScript type, meaning; JSON values only) and",
      "initialState (a JSON object text matching those fields); for each hook, its behaviour step by step,",
      "with thresholds in this run's units (σ, ranges, iterations left below), and how the failure modes",
      `below are avoided; remaining risks. The description and each behaviour stay under ${MAX_TEXT}`,
      "characters. Reply with JSON only.",
      exampleReply(SPECIFY_EXAMPLE),
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
      formatContract(input.trace),
    ]
      .filter((l) => l !== "")
      .join("\n"),
  };
}

/** What each hook is handed, what the loop does with its result, and when: stated once, here. */
const HOOK_SEMANTICS = [
  "How the loop uses each hook:",
  "- init(ctx): once, when the mechanism is activated; its return value is the initial state.",
  "- guide(ctx): a string (at most 4000 characters; longer is an invalid result) or nothing; added to the",
  "  LLM proposer's prompt this iteration. The offline proposer ignores guidance.",
  "- suggest(ctx): { changes, rationale } or nothing. It replaces the proposer's first proposal of the",
  "  iteration; with several mechanisms, the first valid suggestion in activation order is used. It still",
  "  goes through every filter; after a rejection the proposer proposes again.",
  '- filter(proposal, ctx): { verdict: "accept" }, { verdict: "reject", reason } or',
  '  { verdict: "modify", changes, reason }. A modify REPLACES the proposal\'s changes with yours: give the',
  "  complete list of changes from the incumbent, not a patch. Filters run in activation order, each on the",
  "  proposal as the filters before it left it; a reject ends the chain. The same filter may run several",
  "  times in one iteration (once per proposal).",
  "- observe(trial, ctx): after every trial, failed ones included (valBpb null). In observe, ctx.incumbent,",
  "  ctx.best and ctx.history are as they were before this trial; trial.kept says whether it became the",
  "  incumbent.",
  "Changes handed to a hook (proposal.changes, trial.changes, ctx.history, ctx.pending) are { param, value,",
  "  previous }: previous is the value the change replaced (absent in trials recorded before it existed).",
  "  Changes you return need only param and value.",
  "State: ctx.state is the mechanism's JSON state, kept by the host between calls. After every hook call",
  "that returns without a fault (init, guide, suggest, filter or observe), the host keeps ctx.state as the",
  "call left it; init's return value is the initial state (without init the state starts as {}), and a",
  "value returned by observe replaces it. A call that faults changes nothing. Module-level variables",
  "start over on every call. Randomness: ctx.random() (Math.random is the same seeded stream); Date is",
  "frozen at 2026-01-01.",
].join("\n");

function codeRules(allowed: readonly CapabilityName[]): string {
  return [
    "Checked before activation (compile, lint, load, then one dry run of each declared hook on this run's",
    "live trace; a violation comes back to you as an error with its line:column):",
    '1. ONE file. The only import is `import type { ... } from "bilevel/mechanism-api";`.',
    "2. The default export is an object literal: `export default { manifest, ...hooks } satisfies",
    "   Mechanism<State>;` with `type State = {...}` (without `satisfies`, untyped hook parameters are a",
    "   type error). manifest is a literal: { name (kebab-case, at most 64 characters), version: 1,",
    "   description, hooks, capabilities }.",
    "3. manifest.hooks lists exactly the hooks defined.",
    `4. manifest.capabilities lists only capabilities this run grants, and ctx has only those: using one not listed is a type error. ${capabilityLine(allowed)}`,
    "5. TypeScript strict, lib es2022, nothing else: no console (use ctx.log), timers, fetch, process or DOM.",
    "   Index access is checked: ctx.history[i] or arr[0] has type `T | undefined`; handle undefined.",
    "6. No eval, Function, require, import(), globalThis, Reflect, arguments, __proto__, .constructor,",
    "   `with`, `declare` or @ts-ignore.",
    "7. Hooks are synchronous: an async hook does not type-check, a returned promise is an invalid result.",
    "8. In the dry run each declared hook runs once, in the order init, guide, suggest, filter, observe,",
    "   threading the state: a throw, a timeout, a result of the wrong shape, or a state that is not",
    "   exact JSON (a Set, a Map, a class instance, NaN, undefined in an array) fails validation.",
    "Not checked before activation (only the dry run's branches run); in the live run:",
    "9. A throw in a branch the dry run did not take quarantines the mechanism: ctx.history may be empty,",
    "   ctx.incumbent.valBpb, ctx.best and trial.valBpb may be null. Check them.",
    "10. A suggested or modified value outside its range, step rules, constraints or a frozen parameter is",
    "   ignored (see the facts): keep values valid with ctx.params' min/max/choices, or ctx.space.clamp",
    "   when space is declared.",
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
    "",
    HOOK_SEMANTICS,
    "",
    codeRules(allowed),
    "",
    "A literal example of a valid reply (a complete file):",
    "```ts",
    CODE_EXAMPLE.trimEnd(),
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
    user: [specText(input.spec), "", formatContract(input.trace)].join("\n"),
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

/** The repair request's last part: the failing file itself and its errors, in one message. */
export function repairUser(errors: readonly string[], source: string): string {
  return [
    "The file that failed:",
    "```ts",
    source.trimEnd(),
    "```",
    "",
    "Validation failed (compile -> lint -> load -> dry run of every declared hook on the live trace):",
    ...errors,
    "",
    "Return the complete corrected file in one ```ts fence.",
  ].join("\n");
}
