// One Level 2 research session: explore -> critique -> specify -> generate, then validation
// in the sandbox with bounded repairs. Every LLM exchange is returned (and streamed through
// `onExchange`); every failure is an explicit outcome with its reason, never a fallback.
import type { CapabilityName, HookName } from "../../mechanism-api/index.d.ts";
import type { SandboxError, ValidationReport } from "../../sandbox/types.ts";
import type { ChatMessage, LlmClient, LlmError, LlmExchange } from "../llm/client.ts";
import {
  type ActiveMechanismInfo,
  type Candidate,
  type Critique,
  critiquePrompt,
  critiqueSchema,
  explorePrompt,
  exploreSchema,
  formatValidationError,
  generatePrompt,
  KEBAB,
  MAX_TEXT,
  type MechanismSpec,
  type Prompt,
  type ResearchStep,
  repairSystem,
  repairUser,
  specifyPrompt,
  specifySchema,
} from "./prompts.ts";
import type { ResearchTrace } from "./trace.ts";

export interface ResearchSessionInput {
  readonly llm: LlmClient;
  readonly trace: ResearchTrace;
  readonly activeMechanisms: readonly ActiveMechanismInfo[];
  /** Names already used in this run (active, retired, rejected): not to be proposed again. */
  readonly tried?: readonly string[];
  /** Full text of mechanism-api/index.d.ts, shown to the generator. */
  readonly apiText: string;
  /** Compile + lint + dry run in the sandbox (the loop passes sandbox.validate(source, liveTrace)). */
  readonly validate: (source: string) => Promise<ValidationReport>;
  /** Repair calls after a failed validation (default 3). */
  readonly maxRepairs?: number;
  /** Repairs of a malformed structured reply within one step (default 2). */
  readonly maxJsonRepairs?: number;
  readonly policy: { readonly allowedCapabilities: readonly CapabilityName[] };
  /** Called as each exchange completes, so the store has it even if the run dies mid-session. */
  readonly onExchange?: (exchange: LlmExchange) => void;
}

export interface ResearchDesign {
  readonly candidates: readonly Candidate[];
  readonly critique: Critique;
  readonly spec: MechanismSpec;
}

export type ResearchOutcome =
  | {
      readonly status: "validated";
      readonly name: string;
      readonly source: string;
      readonly report: ValidationReport;
      readonly design: ResearchDesign;
      /** Validation runs (1 = it passed first time). */
      readonly attempts: number;
      readonly exchanges: readonly LlmExchange[];
    }
  | {
      readonly status: "rejected";
      readonly name: string;
      readonly reason: string;
      /** The last source tried and its report (null when no code was ever produced). */
      readonly source: string | null;
      readonly lastReport: ValidationReport | null;
      readonly design: ResearchDesign;
      readonly attempts: number;
      readonly exchanges: readonly LlmExchange[];
    }
  | {
      readonly status: "llm-error";
      readonly step: ResearchStep;
      readonly error: LlmError;
      /** How far the session got before the LLM failed. */
      readonly design: Partial<ResearchDesign>;
      readonly source: string | null;
      readonly lastReport: ValidationReport | null;
      readonly exchanges: readonly LlmExchange[];
    }
  | {
      /** The validator itself failed (e.g. the sandbox could not start): not the mechanism's fault. */
      readonly status: "validator-error";
      readonly message: string;
      readonly design: ResearchDesign;
      readonly source: string;
      readonly exchanges: readonly LlmExchange[];
    };

const ACTING: readonly HookName[] = ["guide", "suggest", "filter"];
const kebab = new RegExp(KEBAB);

/** Extract the TypeScript file from a reply: the longest ts (or unlabelled) fenced block, else the text. */
export function extractCode(reply: string): string {
  const blocks = [...reply.matchAll(/```([\w-]*)[^\n]*\n([\s\S]*?)```/g)].map((m) => ({
    lang: (m[1] ?? "").toLowerCase(),
    code: m[2] ?? "",
  }));
  const preferred = blocks.filter((b) => ["ts", "typescript", "tsx", ""].includes(b.lang));
  const pool = preferred.length > 0 ? preferred : blocks;
  let code: string;
  if (pool.length > 0) {
    code = pool.reduce((a, b) => (b.code.length > a.code.length ? b : a)).code;
  } else {
    // An unclosed fence (or none): drop a leading fence line.
    code = reply.replace(/^\s*```[^\n]*\n/, "");
  }
  const trimmed = code.trim();
  return trimmed === "" ? "" : `${trimmed}\n`;
}

function codeProblems(text: string): string[] {
  const code = extractCode(text);
  if (code === "") return ["no TypeScript found: reply with the complete file in one ```ts fence"];
  if (!/export\s+default\b/.test(code))
    return ["the file has no `export default`: the mechanism must be the default export"];
  return [];
}

function long(field: string, value: string): string[] {
  return value.length > MAX_TEXT ? [`${field} is ${value.length} characters; keep it under ${MAX_TEXT}`] : [];
}

function checkCandidates(
  value: { candidates: readonly Candidate[] },
  taken: ReadonlySet<string>,
  allowed: ReadonlySet<string>,
): string[] {
  const errors: string[] = [];
  const seen = new Set<string>();
  for (const c of value.candidates) {
    if (seen.has(c.name)) errors.push(`${c.name}: duplicate candidate name`);
    seen.add(c.name);
    if (taken.has(c.name))
      errors.push(`${c.name}: this name is already used in the run; pick another idea or name`);
    if (c.name.length > 64) errors.push(`${c.name}: name longer than 64 characters`);
    if (!c.hooks.some((h) => ACTING.includes(h))) {
      errors.push(
        `${c.name}: needs at least one of guide, suggest, filter (observe alone cannot change the search)`,
      );
    }
    for (const cap of c.capabilities)
      if (!allowed.has(cap)) errors.push(`${c.name}: capability ${cap} is not allowed`);
    errors.push(...long(`${c.name}.idea`, c.idea));
  }
  return errors;
}

function checkCritique(value: Critique, candidates: readonly Candidate[]): string[] {
  const names = candidates.map((c) => c.name);
  const errors: string[] = [];
  const assessed = value.assessments.map((a) => a.name);
  for (const n of names) if (!assessed.includes(n)) errors.push(`candidate ${n} has no assessment`);
  for (const a of assessed) if (!names.includes(a)) errors.push(`assessment of unknown candidate ${a}`);
  if (new Set(assessed).size !== assessed.length) errors.push("each candidate must be assessed exactly once");
  if (!names.includes(value.selected)) {
    errors.push(`selected must be one of the candidates' exact names: ${names.join(", ")}`);
  }
  return errors;
}

function checkSpec(spec: MechanismSpec, taken: ReadonlySet<string>, allowed: ReadonlySet<string>): string[] {
  const errors: string[] = [];
  if (!kebab.test(spec.name) || spec.name.length > 64)
    errors.push("name must be kebab-case, at most 64 characters");
  if (taken.has(spec.name)) errors.push(`name ${spec.name} is already used in this run`);
  if (new Set(spec.hooks).size !== spec.hooks.length) errors.push("hooks must not repeat");
  if (!spec.hooks.some((h) => ACTING.includes(h))) {
    errors.push("hooks must include at least one of guide, suggest, filter");
  }
  for (const cap of spec.capabilities) if (!allowed.has(cap)) errors.push(`capability ${cap} is not allowed`);
  for (const h of spec.hooks) {
    if (h !== "init" && !spec.behaviour.some((b) => b.hook === h)) errors.push(`hook ${h} has no behaviour`);
  }
  for (const b of spec.behaviour)
    if (!spec.hooks.includes(b.hook)) errors.push(`behaviour for undeclared hook ${b.hook}`);
  let initial: unknown;
  try {
    initial = JSON.parse(spec.initialState);
  } catch {
    errors.push('initialState must be the JSON text of an object, e.g. {"tenure": 5}');
  }
  if (initial !== undefined && (initial === null || typeof initial !== "object" || Array.isArray(initial))) {
    errors.push("initialState must be a JSON object");
  }
  if (spec.stateFields.length > 0 && !spec.hooks.includes("init")) {
    errors.push("a mechanism with state fields must implement init to return the initial state");
  }
  errors.push(...long("description", spec.description));
  for (const b of spec.behaviour) errors.push(...long(`behaviour of ${b.hook}`, b.behaviour));
  return errors;
}

/**
 * Errors of a failed report, each with stage/code, line:column and the source line: every compile
 * and lint error (so one repair can fix them all), then the stages' own.
 */
export function reportErrors(report: ValidationReport, source: string): string[] {
  const errors: SandboxError[] = [];
  const key = (e: SandboxError) => `${e.stage}|${e.code}|${e.line}|${e.column}|${e.message}`;
  for (const e of [report.error, ...(report.errors ?? []), ...report.stages.map((s) => s.error)]) {
    if (e && !errors.some((x) => key(x) === key(e))) errors.push(e);
  }
  return errors.map((e) => formatValidationError(e, source));
}

/** Checks the loop's policy makes beyond the sandbox's own (defence in depth). */
function policyErrors(report: ValidationReport, allowed: ReadonlySet<string>): string[] {
  const manifest = report.manifest ?? report.compiled?.manifest ?? null;
  if (!manifest) return [];
  return manifest.capabilities
    .filter((c) => !allowed.has(c))
    .map((c) => `- [load/capability-denied]: capability ${c} is not allowed by this run's policy`);
}

function messagesOf(prompt: Prompt): ChatMessage[] {
  return [
    { role: "system", content: prompt.system },
    { role: "user", content: prompt.user },
  ];
}

/** Shared by the steps of one session: the allowed capabilities, names taken, and the exchange log. */
interface SessionContext {
  readonly input: ResearchSessionInput;
  readonly allowedList: readonly CapabilityName[];
  readonly allowed: ReadonlySet<string>;
  readonly taken: ReadonlySet<string>;
  readonly maxRepairs: number;
  readonly jsonRepairs: number;
  readonly exchanges: LlmExchange[];
  readonly onExchange: (e: LlmExchange) => void;
  readonly llmError: (
    step: ResearchStep,
    error: LlmError,
    design: Partial<ResearchDesign>,
    source?: string | null,
    lastReport?: ValidationReport | null,
  ) => ResearchOutcome;
}

export async function runResearchSession(input: ResearchSessionInput): Promise<ResearchOutcome> {
  const { llm, trace } = input;
  const allowedList = input.policy.allowedCapabilities;
  const allowed = new Set<string>(allowedList);
  const taken = new Set<string>([...input.activeMechanisms.map((m) => m.name), ...(input.tried ?? [])]);
  const maxRepairs = Math.max(0, input.maxRepairs ?? 3);
  const jsonRepairs = Math.max(0, input.maxJsonRepairs ?? 2);
  const exchanges: LlmExchange[] = [];
  const onExchange = (e: LlmExchange) => {
    exchanges.push(e);
    input.onExchange?.(e);
  };
  const llmError = (
    step: ResearchStep,
    error: LlmError,
    design: Partial<ResearchDesign>,
    source: string | null = null,
    lastReport: ValidationReport | null = null,
  ): ResearchOutcome => ({ status: "llm-error", step, error, design, source, lastReport, exchanges });
  const ctx: SessionContext = {
    input,
    allowedList,
    allowed,
    taken,
    maxRepairs,
    jsonRepairs,
    exchanges,
    onExchange,
    llmError,
  };
  const designed = await designMechanism(ctx);
  if (!("spec" in designed)) return designed;
  const design: ResearchDesign = designed;
  const { spec } = design;

  // 4. generate
  const generatePromptValue = generatePrompt({ spec, allowed: allowedList, apiText: input.apiText, trace });
  const generated = await llm.chatText({
    purpose: "level2.generate",
    messages: messagesOf(generatePromptValue),
    check: codeProblems,
    maxRepairs: 1,
    onExchange,
  });
  if (!generated.ok) return llmError("generate", generated.error, design);

  return validateWithRepairs(ctx, design, generatePromptValue, extractCode(generated.value));
}

/** Steps 1-3: explore candidates, critique them, specify the chosen one. */
async function designMechanism(ctx: SessionContext): Promise<ResearchDesign | ResearchOutcome> {
  const { input, allowedList, allowed, taken, jsonRepairs, onExchange, llmError } = ctx;
  const { llm, trace } = input;
  // 1. explore
  const explored = await llm.chatJson<{ candidates: Candidate[] }>({
    purpose: "level2.explore",
    messages: messagesOf(
      explorePrompt({
        trace,
        active: input.activeMechanisms,
        tried: input.tried ?? [],
        allowed: allowedList,
      }),
    ),
    schema: exploreSchema(allowedList),
    schemaName: "level2_explore",
    check: (v) => checkCandidates(v, taken, allowed),
    maxRepairs: jsonRepairs,
    onExchange,
  });
  if (!explored.ok) return llmError("explore", explored.error, {});
  const candidates = explored.value.candidates;

  // 2. critique
  const critiqued = await llm.chatJson<Critique>({
    purpose: "level2.critique",
    messages: messagesOf(critiquePrompt({ trace, candidates, active: input.activeMechanisms })),
    schema: critiqueSchema(candidates.map((c) => c.name)),
    schemaName: "level2_critique",
    check: (v) => checkCritique(v, candidates),
    maxRepairs: jsonRepairs,
    onExchange,
  });
  if (!critiqued.ok) return llmError("critique", critiqued.error, { candidates });
  const critique = critiqued.value;
  const candidate = candidates.find((c) => c.name === critique.selected)!; // checkCritique guarantees it

  // 3. specify
  const specified = await llm.chatJson<MechanismSpec>({
    purpose: "level2.specify",
    messages: messagesOf(
      specifyPrompt({ trace, candidate, critique, allowed: allowedList, tried: [...taken] }),
    ),
    schema: specifySchema(allowedList),
    schemaName: "level2_specify",
    check: (v) => checkSpec(v, taken, allowed),
    maxRepairs: jsonRepairs,
    onExchange,
  });
  if (!specified.ok) return llmError("specify", specified.error, { candidates, critique });
  const spec = specified.value;
  return { candidates, critique, spec };
}

/** Step 5: validate the generated code; repair it with the errors fed back, at most maxRepairs times. */
async function validateWithRepairs(
  ctx: SessionContext,
  design: ResearchDesign,
  generatePromptValue: Prompt,
  first: string,
): Promise<ResearchOutcome> {
  const { input, allowedList, allowed, maxRepairs, exchanges, onExchange, llmError } = ctx;
  const { llm } = input;
  const { spec } = design;
  // 5. validate, repair with the errors fed back (bounded)
  let source = first;
  let attempts = 0;
  for (;;) {
    attempts++;
    let report: ValidationReport;
    try {
      report = await input.validate(source);
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      return { status: "validator-error", message, design, source, exchanges };
    }
    const errors = report.ok ? policyErrors(report, allowed) : reportErrors(report, source);
    if (report.ok && errors.length === 0) {
      const name = report.manifest?.name ?? spec.name;
      return { status: "validated", name, source, report, design, attempts, exchanges };
    }
    if (attempts > maxRepairs) {
      const first = report.error;
      const why = first
        ? `${first.stage}/${first.code}${first.line !== undefined ? ` at ${first.line}:${first.column ?? 1}` : ""}: ${first.message}`
        : (errors[0] ?? "validation failed").replace(/^- /, "");
      return {
        status: "rejected",
        name: report.manifest?.name ?? spec.name,
        reason: `failed validation ${attempts} time(s) (${maxRepairs} repair(s) allowed); last error ${why}`,
        source,
        lastReport: report,
        design,
        attempts,
        exchanges,
      };
    }
    const repaired = await llm.chatText({
      purpose: "level2.repair",
      // Bounded context: the spec and the run's contract, the last attempt and its errors (not every
      // earlier attempt), in one user message so the stored request holds all of it.
      messages: [
        { role: "system", content: repairSystem(allowedList, input.apiText) },
        { role: "user", content: `${generatePromptValue.user}\n\n${repairUser(errors, source)}` },
      ],
      check: codeProblems,
      maxRepairs: 1,
      onExchange,
    });
    if (!repaired.ok) return llmError("repair", repaired.error, design, source, report);
    source = extractCode(repaired.value);
  }
}
