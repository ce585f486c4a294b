// One ajv instance for the sandbox (host and child), compiled once per schema, on first use.
// Strict mode, no type coercion, no defaults: a value either matches exactly or is rejected.
// Compiling a schema costs ajv tens of milliseconds of code generation (the protocol's two take
// about 200 ms); a process that starts often (`mechanism check`) reuses the generated code, kept
// beside Node's compile cache when that is on (see CachingAjv).
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import module from "node:module";
import path from "node:path";
import type { Ajv, ErrorObject, Options, ValidateFunction } from "ajv";

const requireHere = module.createRequire(import.meta.url);
const AJV_VERSION = (requireHere("ajv/package.json") as { version: string }).version;
// ajv's compiler (dozens of modules) loads only when a schema is compiled, not when every
// validator comes from the cache: the cached code needs only ajv's small runtime helpers.
const loadAjv = () => requireHere("ajv") as typeof import("ajv");
const loadStandalone = () =>
  requireHere("ajv/dist/standalone/index.js") as typeof import("ajv/dist/standalone/index.js");

/**
 * Ajv that keeps each compiled validator's standalone code in a folder of Node's compile cache
 * (`bilevel-ajv` in module.getCompileCacheDir(); none when the cache is off), keyed by the ajv
 * version, the options and the schema, and loads it from there in later processes. The code is
 * ajv's own output for that schema; the sandbox child caches in its own folder (see
 * sandbox/child-process.ts), never the host's.
 */
export class CachingAjv {
  private instance: Ajv | null = null;
  private readonly options: Options;
  private readonly key: string;

  constructor(options: Options) {
    this.options = options;
    this.key = JSON.stringify([AJV_VERSION, options]);
  }

  private get ajv(): Ajv {
    this.instance ??= new (loadAjv().Ajv)({ ...this.options, code: { source: true } });
    return this.instance;
  }

  /** Compile `schema`, or load its cached code; `dir` null: no cache. */
  compile<T>(schema: object, dir: string | null = cacheDir()): ValidateFunction<T> {
    if (dir === null) return this.ajv.compile<T>(schema);
    const hash = createHash("sha256").update(this.key).update(JSON.stringify(schema)).digest("hex");
    const file = path.join(dir, `${hash.slice(0, 40)}.cjs`);
    try {
      return loadValidator<T>(readFileSync(file, "utf8"));
    } catch {
      // Not cached yet, or unreadable: compile, and keep the code for the next process.
    }
    const validate = this.ajv.compile<T>(schema);
    try {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      const partial = `${file}.${process.pid}.tmp`;
      writeFileSync(partial, loadStandalone().default(this.ajv, validate), { mode: 0o600 });
      renameSync(partial, file);
    } catch {
      // A read-only or full disk: this process compiled it; the next one will again.
    }
    return validate;
  }

  /** ajv's own text for a validator's errors (loads ajv's compiler: for error paths). */
  errorsText(errors: ErrorObject[] | null | undefined): string {
    return this.ajv.errorsText(errors);
  }

  /** A validator compiled (or loaded) on its first call; `.errors` as ajv sets them. */
  lazy<T>(schema: object): ValidateFunction<T> {
    let fn: ValidateFunction<T> | null = null;
    const validate = ((value: unknown) => {
      fn ??= this.compile<T>(schema);
      return fn(value);
    }) as ValidateFunction<T>;
    Object.defineProperty(validate, "errors", { get: () => fn?.errors ?? null });
    return validate;
  }
}

function cacheDir(): string | null {
  const dir = module.getCompileCacheDir?.();
  return dir ? path.join(dir, "bilevel-ajv") : null;
}

/** Evaluate ajv's standalone CommonJS code (its requires are ajv's runtime helpers). */
function loadValidator<T>(code: string): ValidateFunction<T> {
  const exported = { exports: {} as unknown };
  // The way ajv itself turns the code it generates into a function.
  new Function("require", "module", "exports", code)(requireHere, exported, exported.exports);
  const fn = exported.exports;
  if (typeof fn !== "function") throw new Error("not a validator");
  return fn as ValidateFunction<T>;
}

const ajv = new CachingAjv({
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

export type Validator<T> = ((value: unknown) => value is T) & {
  readonly explain: () => string;
  /** Compile now: for validators used while guest code runs, whose time must not be the guest's. */
  readonly warm: () => void;
};

/**
 * A guard for `schema`, compiled on its first use (compiling every schema at import costs a process
 * that needs few of them hundreds of milliseconds); it also explains its last failure in one line.
 */
export function validator<T>(schema: object): Validator<T> {
  const validate = ajv.lazy<T>(schema);
  const check = ((value: unknown): value is T => validate(value)) as Validator<T>;
  Object.defineProperty(check, "explain", { value: () => describeErrors(validate.errors) });
  Object.defineProperty(check, "warm", { value: () => validate(undefined) });
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
