// Level 1 proposers: the LLM (schema-constrained, validated, repaired with the errors fed
// back) and the offline one. Both return changes to the incumbent, checked against the space.
import type { Change, Config, ParamSpec } from "../../mechanism-api/index.d.ts";
import { checkChanges, describeChanges } from "../changes.ts";
import type { SearchConfig, TrialRow } from "../store.ts";

export interface ProposerInput {
  readonly iteration: number;
  readonly params: readonly ParamSpec[];
  readonly search: SearchConfig;
  readonly incumbent: { readonly config: Config; readonly valBpb: number | null };
  readonly best: { readonly config: Config; readonly valBpb: number } | null;
  /** Recent search trials, oldest first. */
  readonly history: readonly TrialRow[];
  /** One line per failed trial worth remembering. */
  readonly crashLessons: readonly string[];
  /** Texts from active mechanisms' `guide` hooks. */
  readonly guidance: readonly { readonly mechanism: string; readonly text: string }[];
  /** Proposals rejected earlier this iteration, with the reasons. */
  readonly rejected: readonly { readonly changes: readonly Change[]; readonly reason: string }[];
  /** Trials still in flight (run --parallel): proposed, not yet scored; not worth proposing again. */
  readonly pending?: readonly PendingTrial[];
  readonly maxChanges: number;
  readonly seed: number;
  readonly attempt: number;
}

/** A trial in flight: the config it runs and what it tries, in words. */
export interface PendingTrial {
  readonly config: Config;
  readonly description: string;
}

export type ProposerResult =
  | { readonly ok: true; readonly changes: readonly Change[]; readonly rationale: string }
  /** `call`: the LLM call itself failed (no reply to judge); otherwise no usable proposal came. */
  | { readonly ok: false; readonly reason: string; readonly fault?: "call" };

export interface Proposer {
  readonly kind: "llm" | "offline";
  propose(input: ProposerInput): Promise<ProposerResult>;
}

/** The JSON Schema of one parameter's value: its choices, or its type and range. */
function valueSchema(p: ParamSpec): object {
  if (p.kind === "choice") {
    const choices = [...(p.choices ?? [])];
    const type = choices.every((c) => typeof c === "string") ? "string" : "number";
    return { type, enum: choices };
  }
  return {
    type: p.kind === "int" ? "integer" : "number",
    ...(p.min !== undefined ? { minimum: p.min } : {}),
    ...(p.max !== undefined ? { maximum: p.max } : {}),
  };
}

/** One change: a {param, value} pair per parameter, so a schema-following model cannot name another. */
function changeSchema(active: readonly ParamSpec[]): object {
  if (active.length === 0) {
    return {
      type: "object",
      additionalProperties: false,
      required: ["param", "value"],
      properties: { param: { type: "string" }, value: { anyOf: [{ type: "number" }, { type: "string" }] } },
    };
  }
  return {
    anyOf: active.map((p) => ({
      type: "object",
      additionalProperties: false,
      required: ["param", "value"],
      properties: { param: { type: "string", enum: [p.name] }, value: valueSchema(p) },
    })),
  };
}

/**
 * JSON Schema of an LLM proposal (OpenAI structured outputs: strict, every field required). The
 * changes enumerate the active parameters, each with its choices or range; with no list given,
 * any name and value pass the schema and only the checks catch them.
 */
export function proposalSchema(maxChanges: number, active: readonly ParamSpec[] = []) {
  return {
    type: "object",
    additionalProperties: false,
    required: ["changes", "rationale"],
    properties: {
      changes: { type: "array", minItems: 1, maxItems: maxChanges, items: changeSchema(active) },
      rationale: { type: "string", maxLength: 2000 },
    },
  } as const;
}

function describeParam(p: ParamSpec): string {
  const range =
    p.kind === "choice"
      ? `one of ${JSON.stringify(p.choices)}`
      : `${p.kind} in [${p.min}, ${p.max}]${p.log ? " (log scale)" : ""}`;
  const rules = [
    p.powerOfTwo ? "a power of two" : "",
    p.multipleOf !== undefined ? `a multiple of ${p.multipleOf}` : "",
    ...(p.constraints ?? []).map((c) => `must satisfy ${c}`),
  ].filter((r) => r !== "");
  return `- ${p.name}: ${range}${rules.length > 0 ? `, ${rules.join(", ")}` : ""}; ${p.description}`;
}

/** Longest research brief (program.md) a prompt carries; the rest is cut with a note. */
export const BRIEF_PROMPT_CHARS = 8000;

/** The user's research brief as prompt lines (empty when there is none). */
export function briefLines(brief: string | null | undefined): string[] {
  const text = brief?.trim() ?? "";
  if (text === "") return [];
  const cut =
    text.length > BRIEF_PROMPT_CHARS
      ? `${text.slice(0, BRIEF_PROMPT_CHARS)}\n[... cut: the brief is longer]`
      : text;
  return [
    "The user's research brief (their program.md; it may describe editing code by hand: here you change only",
    "the listed parameters' values, and the brief's goals and limits still apply):",
    "<<<",
    cut,
    ">>>",
  ];
}

/** One history line: the trial's recorded description ("PARAM old -> new, …"), its score and verdict. */
function describeTrial(t: TrialRow): string {
  const score = t.valBpb === null ? t.status : `val_bpb ${t.valBpb.toFixed(4)}`;
  const delta = t.delta === null ? "" : ` (Δ ${t.delta >= 0 ? "+" : ""}${t.delta.toFixed(4)})`;
  return `#${t.iteration}: ${t.description} -> ${score}${delta}, ${t.kept ? "KEPT" : "discarded"}`;
}

export function proposalPrompt(
  input: ProposerInput,
  brief?: string | null,
): { system: string; user: string } {
  const active = input.params.filter((p) => input.search.active.includes(p.name));
  const system = [
    "You tune the hyperparameters of a small GPT pretraining run. Each trial trains for a fixed time budget",
    "and is scored by validation bits per byte (val_bpb, lower is better). Propose ONE experiment: 1 to",
    `${input.maxChanges} changes to the incumbent config, only to ACTIVE parameters, each value inside its range.`,
    'Reply with JSON only: {"changes": [{"param": NAME, "value": VALUE}], "rationale": TEXT}.',
  ].join(" ");
  const lines = [
    ...(brief ? [...briefLines(brief), ""] : []),
    `Iteration ${input.iteration}. Strategy: ${input.search.strategy}.`,
    input.search.guidance ? `Guidance: ${input.search.guidance}` : "",
    "",
    "Active parameters:",
    ...active.map(describeParam),
    input.search.frozen.length > 0 ? `Frozen (do not change): ${input.search.frozen.join(", ")}` : "",
    "",
    `Incumbent config (val_bpb ${input.incumbent.valBpb?.toFixed(4) ?? "unknown"}):`,
    JSON.stringify(input.incumbent.config),
    input.best ? `Best seen: val_bpb ${input.best.valBpb.toFixed(4)}` : "",
    "",
    "Recent trials (oldest first):",
    ...(input.history.length > 0 ? input.history.map(describeTrial) : ["(none yet)"]),
    ...(input.pending && input.pending.length > 0
      ? [
          "",
          "Trials still running (no result yet; do not propose them again):",
          ...input.pending.map((p) => `- ${p.description}`),
        ]
      : []),
    ...(input.crashLessons.length > 0
      ? ["", "Crash lessons:", ...input.crashLessons.map((l) => `- ${l}`)]
      : []),
    ...(input.guidance.length > 0
      ? [
          "",
          "Advice from active search mechanisms:",
          ...input.guidance.map((g) => `- [${g.mechanism}] ${g.text}`),
        ]
      : []),
    ...(input.rejected.length > 0
      ? [
          "",
          "Already rejected this iteration (do not repeat):",
          ...input.rejected.map(
            (r) => `- ${describeChanges(input.incumbent.config, r.changes)}: ${r.reason}`,
          ),
        ]
      : []),
  ];
  return { system, user: lines.filter((l, i, all) => l !== "" || all[i - 1] !== "").join("\n") };
}

/** Validate an LLM proposal against the space; the errors are fed back on retry. */
export function checkProposal(
  value: { changes: readonly Change[]; rationale: string },
  input: ProposerInput,
): string[] {
  const errors = checkChanges(value.changes, input.params, {
    active: input.search.active,
    maxChanges: input.maxChanges,
    base: input.incumbent.config,
  });
  if (value.changes.every((c) => input.incumbent.config[c.param] === c.value)) {
    errors.push("every change keeps the incumbent's value: change something");
  }
  return errors;
}
