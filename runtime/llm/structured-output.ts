// Structured-output modes: how a JSON reply is asked for on the wire and where it is read back.
// Servers differ: OpenAI takes a strict `json_schema`; DeepSeek only `json_object` (and wants the
// word "json" in the prompt); vLLM, Ollama and llama.cpp take either; some support a forced tool
// call; every server takes plain text. Whatever the mode, the client validates the reply with ajv.
import type { ChatMessage, LlmError } from "./client.ts";
import { wireSchema } from "./schema.ts";

/** In fallback order: `auto` starts at the first and moves down on an "unsupported" 400. */
export const STRUCTURED_MODES = ["json_schema", "json_object", "tools", "text"] as const;
export type StructuredMode = (typeof STRUCTURED_MODES)[number];
export type StructuredSetting = StructuredMode | "auto";

export function isStructuredMode(value: unknown): value is StructuredMode {
  return typeof value === "string" && (STRUCTURED_MODES as readonly string[]).includes(value);
}

/** The modes a setting may use, in the order tried: `auto` from `start` (default json_schema) down. */
export function modeChain(setting: StructuredSetting, start: StructuredMode | null = null): StructuredMode[] {
  if (setting !== "auto") return [setting];
  return STRUCTURED_MODES.slice(STRUCTURED_MODES.indexOf(start ?? "json_schema"));
}

/** The mode after `mode` in the fallback order, or null at the end. */
export function nextMode(mode: StructuredMode): StructuredMode | null {
  return STRUCTURED_MODES[STRUCTURED_MODES.indexOf(mode) + 1] ?? null;
}

/** What a mode adds to a request: body fields, and an instruction appended to the system prompt. */
export interface WireParts {
  readonly fields: Readonly<Record<string, unknown>>;
  readonly instruction: string | null;
}

function schemaInstruction(schema: object): string {
  // The word "JSON" is required by json_object on OpenAI and DeepSeek; the schema guides the model.
  return `Reply with one JSON object, and nothing else, that conforms to this JSON Schema:\n${JSON.stringify(schema)}`;
}

export function wireParts(mode: StructuredMode, schemaName: string, schema: object): WireParts {
  const sent = wireSchema(schema) as Record<string, unknown>;
  switch (mode) {
    case "json_schema":
      return {
        fields: {
          response_format: {
            type: "json_schema",
            json_schema: { name: schemaName, schema: sent, strict: true },
          },
        },
        instruction: null,
      };
    case "json_object":
      return { fields: { response_format: { type: "json_object" } }, instruction: schemaInstruction(schema) };
    case "tools":
      return {
        fields: {
          tools: [
            {
              type: "function",
              function: { name: schemaName, description: "Submit the answer.", parameters: sent },
            },
          ],
          tool_choice: { type: "function", function: { name: schemaName } },
        },
        instruction: `Answer by calling the function ${schemaName} with arguments that match its JSON Schema.`,
      };
    case "text":
      return {
        fields: {},
        instruction: `${schemaInstruction(schema)}\nNo prose and no code fence: the reply is parsed as JSON.`,
      };
  }
}

/** The conversation with `instruction` appended to the system message (or a system message added). */
export function withInstruction(messages: readonly ChatMessage[], instruction: string | null): ChatMessage[] {
  if (instruction === null) return [...messages];
  const index = messages.findIndex((m) => m.role === "system");
  if (index === -1) return [{ role: "system", content: instruction }, ...messages];
  return messages.map((m, i) =>
    i === index ? { role: m.role, content: `${m.content}\n\n${instruction}` } : m,
  );
}

/**
 * A reasoning model served without a reasoning parser (e.g. DeepSeek-R1 on some local servers)
 * puts its chain of thought in the content as <think>...</think>: it is split off, never parsed.
 */
export function splitThinking(content: string): { content: string; reasoning: string | null } {
  const match = /^\s*<think>([\s\S]*?)(<\/think>\s*|$)/.exec(content);
  if (!match) return { content, reasoning: null };
  return { content: content.slice(match[0].length), reasoning: match[1]?.trim() ?? "" };
}

const FORMAT_WORDS =
  /response_format|json_schema|json_object|structured output|tool_choice|\btools?\b|function call|grammar/i;
const REFUSED_WORDS =
  /unsupported|not supported|unavailable|not available|not allowed|not permitted|invalid|unknown|cannot|can't|does not support|requires?|must|no endpoints found/i;
const FORMAT_PARAMS = new Set(["response_format", "tools", "tool_choice", "functions"]);

/**
 * Whether an HTTP error says the server cannot serve this structured-output mode (then `auto` falls
 * back to the next mode): a 400/404/422/501 that names the format (or its param) and refuses it.
 */
export function isFormatUnsupported(error: LlmError): boolean {
  if (error.code !== "http" || ![400, 404, 415, 422, 501].includes(error.status ?? 0)) return false;
  if (/no endpoints found/i.test(error.message)) return true;
  const named = FORMAT_WORDS.test(error.message) || FORMAT_PARAMS.has(error.param ?? "");
  return named && (REFUSED_WORDS.test(error.message) || FORMAT_PARAMS.has(error.param ?? ""));
}

const UNKNOWN_MODEL =
  /not (exist|found)|does not exist|not a valid model|no such model|unknown model|invalid model|model_not_found|try pulling/i;

/** Whether an HTTP error says the configured model does not exist there. */
export function isUnknownModel(error: LlmError): boolean {
  if (error.code !== "http") return false;
  if (error.providerCode === "model_not_found") return true;
  return (
    [400, 404, 422].includes(error.status ?? 0) &&
    /model/i.test(error.message) &&
    UNKNOWN_MODEL.test(error.message)
  );
}
