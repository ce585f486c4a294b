// One ajv instance for the sandbox (host and child), compiled once per schema.
// Strict mode, no type coercion, no defaults: a value either matches exactly or is rejected.
import { Ajv, type ErrorObject, type ValidateFunction } from "ajv";

const ajv = new Ajv({
  strict: true,
  // Capability argument lists have optional trailing arguments (tuples shorter than `items`).
  strictTuples: false,
  allowUnionTypes: true,
  coerceTypes: false,
  useDefaults: false,
  removeAdditional: false,
  allErrors: false,
  // oneOf over a tag property (op, hook, verdict) reports the matching branch's error, and is faster.
  discriminator: true,
});

export type Validator<T> = ((value: unknown) => value is T) & { readonly explain: () => string };

/** Compile a schema once; the returned guard also explains its last failure in one line. */
export function validator<T>(schema: object): Validator<T> {
  const fn: ValidateFunction<T> = ajv.compile<T>(schema);
  const check = ((value: unknown): value is T => fn(value)) as Validator<T>;
  Object.defineProperty(check, "explain", { value: () => describeErrors(fn.errors) });
  return check;
}

function describeErrors(errors: ErrorObject[] | null | undefined): string {
  const first = errors?.[0];
  if (!first) return "invalid value";
  const where = first.instancePath === "" ? "value" : first.instancePath;
  const extra =
    first.keyword === "additionalProperties"
      ? ` (${String((first.params as { additionalProperty?: unknown }).additionalProperty)})`
      : "";
  return `${where} ${first.message ?? "is invalid"}${extra}`.slice(0, 300);
}

/** Nesting depth of a parsed JSON value, without recursion (deep values must not blow the stack). */
export function jsonDepth(value: unknown, limit: number): number {
  let max = 0;
  const stack: [unknown, number][] = [[value, 1]];
  while (stack.length > 0) {
    const [v, d] = stack.pop()!;
    if (v === null || typeof v !== "object") continue;
    if (d > max) max = d;
    if (max > limit) return max;
    for (const child of Object.values(v)) stack.push([child, d + 1]);
  }
  return max;
}
