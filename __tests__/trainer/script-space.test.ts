// The search space of a user's own train.py: discovery of its constants (Python's ast, through
// trainer/rewrite_constants.py), the ranges derived from their values, declarations and their
// errors, and the constraint language the proposers and the adapter check.
import { readFileSync } from "node:fs";
import path from "node:path";
import { Ajv } from "ajv";
import type { ParamSpec } from "../../mechanism-api/index.d.ts";
import { paramSpecSchema } from "../../mechanism-api/schemas.ts";
import { clampValue } from "../../runtime/param-scale.ts";
import { checkConstraints, inlineNames, parseConstraint } from "../../trainer/constraints.ts";
import { rewriteConstants } from "../../trainer/external.ts";
import {
  deriveSpec,
  discoverScript,
  discoverSource,
  formatScriptConstants,
  type ScriptConstant,
  type ScriptInfo,
  scriptSearchSpace,
} from "../../trainer/script-space.ts";
import { checkValue } from "../../trainer/search-space.ts";

const python = "/usr/bin/python3";
const script = path.resolve(import.meta.dirname, "../fixtures/autoresearch/train.py");

function info(): ScriptInfo {
  const found = discoverScript(script, python);
  if (!found.ok) throw new Error(found.error);
  return found.value;
}

function constant(name: string): ScriptConstant {
  const c = info().constants.find((k) => k.name === name);
  if (!c) throw new Error(`no ${name}`);
  return c;
}

test("every top-level constant of a Karpathy-style train.py is found, with its value, text and comment", () => {
  const found = info();
  const byName = new Map(found.constants.map((c) => [c.name, c]));
  expect([...byName.keys()]).toEqual(
    expect.arrayContaining([
      "ASPECT_RATIO",
      "HEAD_DIM",
      "WINDOW_PATTERN",
      "TOTAL_BATCH_SIZE",
      "EMBEDDING_LR",
    ]),
  );
  expect(byName.get("TOTAL_BATCH_SIZE")).toMatchObject({
    value: 2 ** 19,
    text: "2**19",
    type: "int",
    powerForm: true,
    comment: "~524K tokens per optimizer step",
  });
  expect(byName.get("WINDOW_PATTERN")).toMatchObject({ value: "SSSL", type: "str" });
  expect(byName.get("EMBEDDING_LR")).toMatchObject({ value: 0.6, type: "float", derived: false });
  // A tuple's elements are constants of their own, sharing the line's comment.
  expect(byName.get("ADAM_BETAS[1]")).toMatchObject({ value: 0.95, comment: "Adam beta1, beta2" });
  // An expression over constants is evaluated, imported ones from prepare.py included.
  expect(byName.get("tokens_per_fwdbwd")).toMatchObject({ value: 128 * 2048, derived: true });
  expect(found.imported).toEqual(
    expect.arrayContaining([
      { name: "MAX_SEQ_LEN", value: 2048 },
      { name: "TIME_BUDGET", value: 3 },
    ]),
  );
  // Not constants: a call, a value computed at run time.
  expect(byName.has("t_start")).toBe(false);
  expect(found.skipped.map((s) => s.name)).toEqual(expect.arrayContaining(["t_start", "quality", "val_bpb"]));
});

test("a name bound more than once at module scope (a loop counter, a global) is not a constant", () => {
  const r = discoverSource(
    "A = 1\nstep = 0\nwhile step < 3:\n    step += 1\ndef f():\n    global G\n    G = 2\nG = 1\nB = A * 2\nF = True\n",
    null,
    python,
  );
  if (!r.ok) throw new Error(r.error);
  expect(r.value.constants.map((c) => c.name)).toEqual(["A", "B"]);
  expect(r.value.skipped.map((s) => s.reason).join("\n")).toMatch(
    /step is assigned 2 times[\s\S]*G is assigned 2 times[\s\S]*booleans are not supported/,
  );
});

test("derived ranges: a factor of 4 on a log scale, a fraction stays below 1, 2**k stays a power of two", () => {
  const spec = (name: string) => {
    const r = deriveSpec(constant(name), {}, "train.py");
    if (!("spec" in r)) throw new Error(r.errors.join());
    return r.spec;
  };
  expect(spec("MATRIX_LR")).toMatchObject({ kind: "float", min: 0.01, max: 0.16, log: true, default: 0.04 });
  expect(spec("EMBEDDING_LR")).toMatchObject({ min: 0.15, max: 1, log: true });
  expect(spec("TOTAL_BATCH_SIZE")).toMatchObject({
    kind: "int",
    min: 2 ** 17,
    max: 2 ** 21,
    powerOfTwo: true,
  });
  expect(spec("DEPTH")).toMatchObject({ kind: "int", min: 2, max: 32, log: true });
  expect(spec("DEPTH").powerOfTwo).toBeUndefined();
  expect(spec("WARMUP_RATIO")).toMatchObject({ kind: "float", min: 0, max: 1, log: false });
  expect(spec("MATRIX_LR").description).toMatch(
    /learning rate for matrix parameters.*train\.py line \d+: MATRIX_LR = 0\.04/,
  );
  const str = deriveSpec(constant("WINDOW_PATTERN"), {}, "train.py");
  expect("errors" in str && str.errors.join()).toMatch(/string .*declare its choices/);
  const chosen = deriveSpec(constant("WINDOW_PATTERN"), { choices: ["L", "SSSL"] }, "train.py");
  expect("spec" in chosen && chosen.spec).toMatchObject({
    kind: "choice",
    choices: ["L", "SSSL"],
    default: "SSSL",
  });
});

test("an unknown name is an error that lists the constants the script has; imported ones cannot be searched", () => {
  const { space, problems } = scriptSearchSpace(info(), {
    MATRIX_LR: {},
    SEQ_LEN: {},
    MAX_SEQ_LEN: {},
    DEPTH: { min: 10, max: 20 },
    HEAD_DIM: { log: true, min: 0 },
  });
  expect(space.map((p) => p.name)).toEqual(["MATRIX_LR"]);
  expect(problems.join("\n")).toMatch(
    /trainer\.params\.SEQ_LEN: train\.py has no top-level constant SEQ_LEN \(its constants: ASPECT_RATIO, HEAD_DIM, WINDOW_PATTERN, TOTAL_BATCH_SIZE/,
  );
  expect(problems.join("\n")).toMatch(/MAX_SEQ_LEN is imported into train\.py from another file/);
  expect(problems.join("\n")).toMatch(
    /DEPTH: the script's value breaks the declaration: DEPTH must be in \[10, 20\], got 8/,
  );
  expect(problems.join("\n")).toMatch(/HEAD_DIM: a log scale needs min > 0/);
});

test("constraints: checked names, imported constants inlined, Python semantics", () => {
  const { space, problems } = scriptSearchSpace(info(), {
    TOTAL_BATCH_SIZE: { constraint: "TOTAL_BATCH_SIZE % (DEVICE_BATCH_SIZE * MAX_SEQ_LEN) == 0" },
    DEPTH: { constraint: ["DEPTH * ASPECT_RATIO >= HEAD_DIM", "DEPTH < NOPE"] },
    MATRIX_LR: { constraint: "MATRIX_LR <" },
  });
  expect(space.find((p) => p.name === "TOTAL_BATCH_SIZE")?.constraints).toEqual([
    "TOTAL_BATCH_SIZE % (DEVICE_BATCH_SIZE * 2048) == 0",
  ]);
  expect(problems.join("\n")).toMatch(/constraint "DEPTH < NOPE": NOPE is not a constant of the script/);
  expect(problems.join("\n")).toMatch(
    /constraint "MATRIX_LR <" does not parse: the expression ends too early/,
  );
  const base = Object.fromEntries(info().constants.map((c) => [c.name, c.value]));
  expect(checkConstraints(space, base)).toEqual([]);
  expect(checkConstraints(space, { ...base, TOTAL_BATCH_SIZE: 890212 })).toEqual([
    'constraint "TOTAL_BATCH_SIZE % (DEVICE_BATCH_SIZE * 2048) == 0" is false for TOTAL_BATCH_SIZE=890212, DEVICE_BATCH_SIZE=128',
  ]);
  const t = (e: string) => parseConstraint(e).test({});
  for (const e of ["-7 // 2 == -4", "-7 % 3 == 2", "2**3**2 == 512", "-2**2 == -4", "1 < 2 < 3", "not 1 > 2"])
    expect(t(e)).toBe(true);
  expect(t("1 / 0 == 1")).toBe("division by zero");
  expect(inlineNames("A % MAX_SEQ_LEN == 0 and W == 'L'", { MAX_SEQ_LEN: 2048 })).toBe(
    "A % 2048 == 0 and W == 'L'",
  );
});

test("multiple-of and power-of-two: checked, and values snap to them", () => {
  const pow: ParamSpec = {
    name: "B",
    kind: "int",
    min: 32,
    max: 512,
    log: true,
    powerOfTwo: true,
    default: 128,
    description: "",
  };
  const mul: ParamSpec = {
    name: "W",
    kind: "int",
    min: 64,
    max: 1024,
    multipleOf: 64,
    default: 128,
    description: "",
  };
  expect(checkValue(pow, 96)).toEqual(["B must be a power of two, got 96"]);
  expect(checkValue(mul, 100)).toEqual(["W must be a multiple of 64, got 100"]);
  expect(checkValue(mul, 192)).toEqual([]);
  expect(clampValue(pow, 100)).toBe(128);
  expect(clampValue(pow, 5000)).toBe(512);
  expect(clampValue(mul, 100)).toBe(128);
  expect(clampValue(mul, 10)).toBe(64);
  // Mechanisms receive them: the sandbox's schema of a ParamSpec accepts the new fields.
  const validate = new Ajv({ strict: false }).compile(paramSpecSchema);
  expect(validate({ ...pow, constraints: ["B % 32 == 0"] })).toBe(true);
});

test("a UTF-8 byte order mark: the script is found and rewritten, and the mark is kept", () => {
  const source = `\uFEFF${readFileSync(script, "utf8")}`;
  const found = discoverSource(source, path.dirname(script), python);
  expect(found.ok && found.value.constants.find((c) => c.name === "DEPTH")?.value).toBe(8);
  const r = rewriteConstants(source, { DEPTH: 4 }, python, {}, path.dirname(script));
  expect(r.errors).toEqual([]);
  expect(r.source.startsWith("\uFEFF")).toBe(true);
  expect(r.source).toContain("DEPTH = 4  # number of transformer layers");
  expect(r.constants?.find((c) => c.name === "DEPTH")?.value).toBe(4);
});

test("--list's table: each constant with the range it would get, declared ones marked", () => {
  const text = formatScriptConstants(info(), [
    { name: "DEPTH", kind: "int", min: 4, max: 16, default: 8, description: "" },
  ]);
  expect(text).toMatch(/^\* DEPTH +8 +int \[4, 16\]$/m);
  expect(text).toMatch(/^ {2}TOTAL_BATCH_SIZE +2\*\*19 +int \[131072, 2097152\] log, powers of two$/m);
  expect(text).toMatch(/^ {2}WINDOW_PATTERN .*not searchable as is: .*declare its choices/m);
  expect(text).toMatch(/^ {2}MAX_SEQ_LEN +2048 +imported, fixed$/m);
});
