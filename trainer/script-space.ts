// The search space of a user's own train.py comes from the script: its top-level constants
// (found by trainer/rewrite_constants.py with Python's ast), each searched as the run config
// declares or with a range derived from its value. Unknown names are errors that list the
// constants the script has; constraints are parsed here and checked before every trial.
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import type { Config, ParamSpec, ParamValue } from "../mechanism-api/index.d.ts";
import { childEnv } from "./child-env.ts";
import { ConstraintSyntaxError, inlineNames, parseConstraint } from "./constraints.ts";
import { findPython } from "./python.ts";
import { checkValue, isPowerOfTwo } from "./search-space.ts";

const HELPER = path.join(import.meta.dirname, "rewrite_constants.py");

/** One top-level constant of a script (a tuple's elements are constants named `NAME[i]`). */
export interface ScriptConstant {
  readonly name: string;
  readonly line: number;
  /** The value expression as written, e.g. `2**19`. */
  readonly text: string;
  readonly value: ParamValue;
  readonly type: "int" | "float" | "str";
  /** Computed from other constants (e.g. `DEVICE_BATCH_SIZE * MAX_SEQ_LEN`). */
  readonly derived: boolean;
  /** Written as `base**k`. */
  readonly powerForm: boolean;
  /** The comment at the end of its line, if any. */
  readonly comment: string;
}

export interface ScriptInfo {
  readonly script: string;
  readonly constants: readonly ScriptConstant[];
  /** Constants imported with `from MODULE import NAME` from a MODULE.py next to the script (read-only). */
  readonly imported: readonly { readonly name: string; readonly value: ParamValue }[];
  /** Top-level names that are not constants, and why (assigned twice, a call, a boolean...). */
  readonly skipped: readonly { readonly name: string; readonly line: number; readonly reason: string }[];
}

/** How the run config declares one searched constant; everything is optional (derived from the value). */
export interface ParamDeclaration {
  readonly min?: number;
  readonly max?: number;
  readonly log?: boolean;
  readonly choices?: readonly ParamValue[];
  /** Search whole numbers (default: as the script writes the value). */
  readonly integer?: boolean;
  readonly multipleOf?: number;
  readonly powerOfTwo?: boolean;
  /** Python expression(s) over the script's constants that every trial must satisfy. */
  readonly constraint?: string | readonly string[];
  readonly description?: string;
}

export type HelperAnswer<T> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly error: string };

/** Run trainer/rewrite_constants.py with one JSON request; never throws. */
export function runHelper<T>(request: object, python?: string): HelperAnswer<T> {
  let py = python;
  if (!py) {
    const found = findPython("ast");
    if (!found.ok) return { ok: false, error: found.error };
    py = found.python;
  }
  const r = spawnSync(py, [HELPER], {
    input: JSON.stringify(request),
    encoding: "utf8",
    timeout: 60_000,
    maxBuffer: 64 * 1024 * 1024,
    env: childEnv(process.env),
  });
  if (r.status !== 0) {
    return { ok: false, error: `rewrite helper failed: ${(r.stderr || r.error?.message || "").trim()}` };
  }
  try {
    return { ok: true, value: JSON.parse(r.stdout) as T };
  } catch {
    return { ok: false, error: "rewrite helper printed no JSON" };
  }
}

interface DiscoverAnswer extends Omit<ScriptInfo, "script"> {
  readonly errors: readonly string[];
}

/** The constants of a script's text; `folder` is where `from MODULE import NAME` looks for MODULE.py. */
export function discoverSource(
  source: string,
  folder: string | null,
  python?: string,
): HelperAnswer<Omit<ScriptInfo, "script">> {
  const r = runHelper<DiscoverAnswer>({ mode: "discover", source, folder }, python);
  if (!r.ok) return r;
  if (r.value.errors.length > 0) return { ok: false, error: r.value.errors.join("; ") };
  const { constants, imported, skipped } = r.value;
  return { ok: true, value: { constants, imported, skipped } };
}

/** The constants of the script file as it is on disk. */
export function discoverScript(script: string, python?: string): HelperAnswer<ScriptInfo> {
  let source: string;
  try {
    source = readFileSync(script, "utf8");
  } catch (error) {
    return { ok: false, error: `cannot read ${script}: ${(error as NodeJS.ErrnoException).code ?? error}` };
  }
  const r = discoverSource(source, path.dirname(path.resolve(script)), python);
  return r.ok ? { ok: true, value: { script, ...r.value } } : r;
}

/** The constants' values as a config (what a trial's stored config holds). */
export function constantsConfig(constants: readonly ScriptConstant[]): Config {
  return Object.fromEntries(constants.map((c) => [c.name, c.value]));
}

/** "its constants: A, B, C" for error messages. */
export function listConstants(info: Pick<ScriptInfo, "constants">, max = 40): string {
  const names = info.constants.map((c) => c.name);
  if (names.length === 0) return "the script has no top-level constants";
  return `its constants: ${names.slice(0, max).join(", ")}${names.length > max ? ", ..." : ""}`;
}

/** Why `name` cannot be searched in this script (null: it can). */
export function unknownConstant(info: ScriptInfo, name: string): string | null {
  if (info.constants.some((c) => c.name === name)) return null;
  const file = path.basename(info.script);
  if (info.imported.some((c) => c.name === name))
    return `${name} is imported into ${file} from another file, which bilevel does not rewrite (only ${file}'s own constants can be searched)`;
  const skipped = info.skipped.find((s) => s.name === name);
  if (skipped) return `${name} (line ${skipped.line}) is not a constant bilevel can set: ${skipped.reason}`;
  return `${file} has no top-level constant ${name} (${listConstants(info)})`;
}

type Spec = { -readonly [K in keyof ParamSpec]: ParamSpec[K] };

/** The default search range of a numeric constant, from its value (see docs/coming-from-autoresearch.md). */
function defaultRange(c: ScriptConstant, integer: boolean): Pick<Spec, "min" | "max" | "log" | "powerOfTwo"> {
  const v = c.value as number;
  if (v > 0 && integer) {
    // Batch sizes and widths are written as 2**k or are powers of two: keep them so.
    const pow2 = isPowerOfTwo(v) && (c.powerForm || v >= 16);
    if (pow2) return { min: Math.max(1, v / 4), max: v * 4, log: true, powerOfTwo: true };
    return { min: Math.max(1, Math.ceil(v / 4)), max: v * 4, log: true };
  }
  // A factor of 4 either way on a log scale; a fraction (0 < v < 1) stays below 1.
  if (v > 0) return { min: v / 4, max: v < 1 ? Math.min(1, v * 4) : v * 4, log: true };
  if (v === 0) return { min: 0, max: integer ? 4 : 1, log: false };
  return { min: v * 4, max: integer ? Math.min(-1, Math.trunc(v / 4)) : v / 4, log: false };
}

function describeConstant(c: ScriptConstant, file: string): string {
  const written = `${file} line ${c.line}: ${c.name} = ${c.text}`;
  const derived = c.derived ? "; computed from other constants, searching it replaces the expression" : "";
  return `${c.comment || "a constant of the script"} (${written}${derived})`;
}

/** The ParamSpec of one searched constant, or the problems with its declaration. */
export function deriveSpec(
  c: ScriptConstant,
  decl: ParamDeclaration,
  file: string,
): { spec: ParamSpec } | { errors: string[] } {
  const errors: string[] = [];
  const description = decl.description ?? describeConstant(c, file);
  if (decl.choices) {
    const wrong = decl.choices.filter((x) => typeof x !== typeof c.value);
    if (wrong.length > 0)
      errors.push(
        `choices must be ${c.type === "str" ? "strings" : "numbers"} like the script's value ${c.text}`,
      );
    if (!decl.choices.includes(c.value)) errors.push(`the script's value ${c.text} is not among the choices`);
    return errors.length > 0
      ? { errors }
      : { spec: { name: c.name, kind: "choice", choices: [...decl.choices], default: c.value, description } };
  }
  if (c.type === "str") {
    return {
      errors: [`${c.name} is a string (${c.text}): declare its choices, e.g. {"choices": [${c.text}, ...]}`],
    };
  }
  const integer = decl.integer ?? c.type === "int";
  const range = defaultRange(c, integer);
  const spec: Spec = {
    name: c.name,
    kind: integer ? "int" : "float",
    ...range,
    ...(decl.min !== undefined ? { min: decl.min } : {}),
    ...(decl.max !== undefined ? { max: decl.max } : {}),
    ...(decl.log !== undefined ? { log: decl.log } : {}),
    ...(decl.powerOfTwo !== undefined ? { powerOfTwo: decl.powerOfTwo } : {}),
    ...(decl.multipleOf !== undefined ? { multipleOf: decl.multipleOf } : {}),
    default: c.value,
    description,
  };
  if (!spec.powerOfTwo) delete spec.powerOfTwo;
  if (spec.log && (spec.min ?? 0) <= 0) errors.push(`a log scale needs min > 0 (got ${spec.min})`);
  if ((spec.min ?? 0) > (spec.max ?? 0)) errors.push(`min ${spec.min} is above max ${spec.max}`);
  if (spec.powerOfTwo && !integer) errors.push("powerOfTwo needs an integer constant");
  errors.push(...checkValue(spec, c.value).map((e) => `the script's value breaks the declaration: ${e}`));
  return errors.length > 0 ? { errors } : { spec };
}

/**
 * The constraints of a declaration, checked: they parse, and every name they read is a
 * constant of the script or imported into it (imported ones are inlined: the run cannot change them).
 */
export function resolveConstraints(
  info: ScriptInfo,
  decl: ParamDeclaration,
): { texts: string[]; errors: string[] } {
  const raw =
    decl.constraint === undefined
      ? []
      : typeof decl.constraint === "string"
        ? [decl.constraint]
        : [...decl.constraint];
  const imported = Object.fromEntries(info.imported.map((c) => [c.name, c.value]));
  const known = new Set([...info.constants.map((c) => c.name), ...Object.keys(imported)]);
  const texts: string[] = [];
  const errors: string[] = [];
  for (const text of raw) {
    try {
      const unknown = parseConstraint(text).names.filter((n) => !known.has(n));
      if (unknown.length > 0) {
        errors.push(
          `constraint ${JSON.stringify(text)}: ${unknown.join(", ")} ${unknown.length > 1 ? "are" : "is"} not a constant of the script (${listConstants(info)})`,
        );
        continue;
      }
      texts.push(inlineNames(text, imported));
    } catch (error) {
      if (!(error instanceof ConstraintSyntaxError)) throw error;
      errors.push(`constraint ${JSON.stringify(text)} does not parse: ${error.message}`);
    }
  }
  return { texts, errors };
}

/** The search space of a script: one spec per declared name (problems name the field). */
export function scriptSearchSpace(
  info: ScriptInfo,
  declarations: Readonly<Record<string, ParamDeclaration>>,
  field = "trainer.params",
): { space: ParamSpec[]; problems: string[] } {
  const file = path.basename(info.script);
  const space: ParamSpec[] = [];
  const problems: string[] = [];
  for (const [name, decl] of Object.entries(declarations)) {
    const why = unknownConstant(info, name);
    const c = info.constants.find((k) => k.name === name);
    if (why !== null || !c) {
      problems.push(`${field}.${name}: ${why}`);
      continue;
    }
    const derived = deriveSpec(c, decl, file);
    const constraints = resolveConstraints(info, decl);
    problems.push(...constraints.errors.map((e) => `${field}.${name}: ${e}`));
    if ("errors" in derived) {
      problems.push(...derived.errors.map((e) => `${field}.${name}: ${e}`));
      continue;
    }
    space.push(
      constraints.texts.length > 0 ? { ...derived.spec, constraints: constraints.texts } : derived.spec,
    );
  }
  return { space, problems };
}

/** One line per constant: what `bilevel train --script X --list` prints. */
export function formatScriptConstants(info: ScriptInfo, space: readonly ParamSpec[] = []): string {
  const file = path.basename(info.script);
  const width = Math.max(4, ...info.constants.map((c) => c.name.length));
  const lines = [`${file}: ${info.constants.length} top-level constant(s); the search range each would get:`];
  for (const c of info.constants) {
    const declared = space.find((p) => p.name === c.name);
    const derived = declared ? { spec: declared } : deriveSpec(c, {}, file);
    const how =
      "spec" in derived ? formatRange(derived.spec) : `not searchable as is: ${derived.errors.join("; ")}`;
    const mark = declared ? "*" : " ";
    lines.push(
      `${mark} ${c.name.padEnd(width)}  ${c.text.padEnd(12)} ${how}${c.derived ? "  (computed)" : ""}`,
    );
  }
  for (const c of info.imported)
    lines.push(`  ${c.name.padEnd(width)}  ${String(c.value).padEnd(12)} imported, fixed`);
  for (const s of info.skipped)
    lines.push(`  ${s.name.padEnd(width)}  (line ${s.line}) not a constant: ${s.reason}`);
  if (space.length > 0) lines.push("* = searched by the run config");
  return `${lines.join("\n")}\n`;
}

/** A spec's range in one phrase: `float [0.15, 2.4] log`, `int [32, 512] powers of two`, `one of [...]`. */
export function formatRange(p: ParamSpec): string {
  if (p.kind === "choice") return `one of ${JSON.stringify(p.choices)}`;
  const extras = [
    p.log ? "log" : "",
    p.powerOfTwo ? "powers of two" : "",
    p.multipleOf !== undefined ? `multiples of ${p.multipleOf}` : "",
    ...(p.constraints ?? []).map((c) => `where ${c}`),
  ].filter((x) => x !== "");
  return `${p.kind} [${round(p.min)}, ${round(p.max)}]${extras.length > 0 ? ` ${extras.join(", ")}` : ""}`;
}

function round(v: number | undefined): string {
  if (v === undefined) return "?";
  return Number.isInteger(v) ? String(v) : String(Number(v.toPrecision(6)));
}
