// JSON Schema helpers of the LLM layer: one strict ajv (each schema compiled once), readable errors
// for repair prompts, lenient JSON extraction from a model's text, and the schema as it goes on
// the wire (some servers refuse keywords that ajv still enforces here).
import { Ajv, type ErrorObject, type ValidateFunction } from "ajv";

const ajv = new Ajv({ strict: true, allErrors: true, coerceTypes: false, useDefaults: false });
const compiled = new Map<string, ValidateFunction>();

/** A compiled validator; throws for a schema ajv rejects (a programming error). */
export function validatorFor(schema: object): ValidateFunction {
  // Keyed by content: callers often build an equal schema per call (e.g. proposalSchema(n)).
  const key = JSON.stringify(schema);
  let validate = compiled.get(key);
  if (!validate) {
    validate = ajv.compile(schema);
    compiled.set(key, validate);
  }
  return validate;
}

function describeError(e: ErrorObject): string {
  const where = e.instancePath === "" ? "(root)" : e.instancePath;
  const extra =
    e.keyword === "additionalProperties"
      ? ` (${String((e.params as { additionalProperty?: unknown }).additionalProperty)})`
      : e.keyword === "enum"
        ? ` (${JSON.stringify((e.params as { allowedValues?: unknown }).allowedValues)})`
        : "";
  return `${where}: ${e.message ?? e.keyword}${extra}`;
}

/** A mismatch of a one-value enum: the error of a wrong anyOf branch (a discriminator), not of a wrong value. */
function isDiscriminatorMiss(e: ErrorObject): boolean {
  return (
    e.keyword === "enum" && ((e.params as { allowedValues?: unknown[] }).allowedValues ?? []).length === 1
  );
}

/** Replace one anyOf failure and its branches' errors by what explains it best. */
function collapseOne(errors: readonly ErrorObject[], anyOf: ErrorObject): ErrorObject[] {
  const prefix = `${anyOf.schemaPath}/`;
  const branches = new Map<string, ErrorObject[]>();
  const rest: ErrorObject[] = [];
  for (const e of errors) {
    if (e === anyOf) continue;
    if (!e.schemaPath.startsWith(prefix)) {
      rest.push(e);
      continue;
    }
    const branch = e.schemaPath.slice(prefix.length).split("/")[0] ?? "";
    branches.set(branch, [...(branches.get(branch) ?? []), e]);
  }
  const lists = [...branches.values()];
  if (lists.length === 0) return [...rest, anyOf];
  const enums = lists.map((l) => l.find((e) => e.keyword === "enum"));
  const found = enums.filter((e): e is ErrorObject => e !== undefined);
  const first = found[0];
  if (first && found.length === enums.length && found.every((e) => e.instancePath === first.instancePath)) {
    const allowed = found.flatMap((e) => (e.params as { allowedValues?: unknown[] }).allowedValues ?? []);
    return [...rest, { ...first, params: { allowedValues: [...new Set(allowed)] } }];
  }
  const score = (l: readonly ErrorObject[]) => l.length + (l.some(isDiscriminatorMiss) ? 1000 : 0);
  const best = lists.reduce((a, b) => (score(b) < score(a) ? b : a));
  return [...rest, ...best];
}

/**
 * An anyOf failure reports every branch's errors, which reads as noise in a repair prompt. When
 * each branch failed on an enum at the same place (e.g. an unknown parameter name), one merged
 * enum error says it; otherwise the closest branch (fewest errors, right discriminator) speaks.
 */
function collapseAnyOf(errors: readonly ErrorObject[]): ErrorObject[] {
  let list = [...errors];
  const done = new Set<ErrorObject>();
  for (;;) {
    const anyOf = list.find((e) => e.keyword === "anyOf" && !done.has(e));
    if (!anyOf) return list;
    done.add(anyOf);
    list = collapseOne(list, anyOf);
  }
}

/** ajv errors as lines for a repair prompt (at most 20). */
export function formatAjvErrors(errors: readonly ErrorObject[] | null | undefined): string[] {
  const lines = collapseAnyOf(errors ?? []).map(describeError);
  return [...new Set(lines)].slice(0, 20);
}

export type JsonParse = { ok: true; value: unknown } | { ok: false; message: string };

/** Parse a model's JSON text; tolerates a ``` fence around it (local servers ignore response_format). */
export function parseJsonReply(text: string): JsonParse {
  const trimmed = text.trim();
  const fenced = /^```[a-zA-Z]*\s*\n([\s\S]*?)\n?```$/.exec(trimmed);
  try {
    return { ok: true, value: JSON.parse(fenced?.[1] ?? trimmed) };
  } catch (error) {
    return { ok: false, message: error instanceof Error ? error.message : String(error) };
  }
}

/** The end of the balanced {...} that starts at `start`, or -1 (strings and escapes respected). */
function objectEnd(text: string, start: number): number {
  let depth = 0;
  let inString = false;
  for (let i = start; i < text.length; i++) {
    const ch = text[i];
    if (inString) {
      if (ch === "\\") i++;
      else if (ch === '"') inString = false;
    } else if (ch === '"') inString = true;
    else if (ch === "{") depth++;
    else if (ch === "}" && --depth === 0) return i;
  }
  return -1;
}

/**
 * Parse a reply that should be one JSON object: as it is, else the first {...} in it that parses
 * (a model asked in prose often wraps the object in a sentence or a fence).
 */
export function parseJsonObjectReply(text: string): JsonParse {
  const direct = parseJsonReply(text);
  if (direct.ok) return direct;
  let from = text.indexOf("{");
  for (let tries = 0; from !== -1 && tries < 50; tries++) {
    const end = objectEnd(text, from);
    if (end === -1) break;
    const inner = parseJsonReply(text.slice(from, end + 1));
    if (inner.ok) return inner;
    from = text.indexOf("{", from + 1);
  }
  return direct;
}

function asRecord(value: unknown): Record<string, unknown> | null {
  return value !== null && typeof value === "object" && !Array.isArray(value)
    ? (value as Record<string, unknown>)
    : null;
}

/**
 * Keywords some OpenAI-compatible servers reject in strict mode ("not permitted"). They are
 * dropped from the schema sent; ajv still enforces them here, and a violation is repaired.
 */
const LOCAL_ONLY_KEYWORDS = new Set([
  "minLength",
  "maxLength",
  "uniqueItems",
  "minProperties",
  "maxProperties",
]);

/** The schema as sent in `response_format` or a tool: a copy without the local-only keywords. */
export function wireSchema(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(wireSchema);
  const record = asRecord(schema);
  if (!record) return schema;
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(record)) {
    // Inside `properties` the keys are field names, not keywords: keep them all.
    if (key === "properties" && asRecord(value)) {
      out[key] = Object.fromEntries(Object.entries(value as object).map(([k, v]) => [k, wireSchema(v)]));
    } else if (!LOCAL_ONLY_KEYWORDS.has(key)) {
      out[key] = wireSchema(value);
    }
  }
  return out;
}

/**
 * Why a schema would fail OpenAI's strict mode: every object needs `additionalProperties: false`
 * and every property listed in `required`. Empty when it is fine. (For tests of callers' schemas.)
 */
export function strictSchemaProblems(schema: unknown, where = "(root)"): string[] {
  if (Array.isArray(schema)) return schema.flatMap((s, i) => strictSchemaProblems(s, `${where}[${i}]`));
  const node = asRecord(schema);
  if (!node) return [];
  const problems: string[] = [];
  const props = asRecord(node.properties);
  if (node.type === "object" || props) {
    if (node.additionalProperties !== false) problems.push(`${where}: additionalProperties must be false`);
    const required = Array.isArray(node.required) ? node.required : [];
    for (const key of Object.keys(props ?? {})) {
      if (!required.includes(key)) problems.push(`${where}: property ${key} must be required`);
    }
  }
  for (const [key, value] of Object.entries(node)) {
    if (key === "properties" && props) {
      for (const [name, sub] of Object.entries(props))
        problems.push(...strictSchemaProblems(sub, `${where}.${name}`));
    } else if (typeof value === "object" && value !== null) {
      problems.push(...strictSchemaProblems(value, `${where}/${key}`));
    }
  }
  return problems;
}
