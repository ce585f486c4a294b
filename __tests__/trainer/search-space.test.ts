import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import {
  defaultConfig,
  loadSearchSpace,
  parseAssignment,
  parseNumber,
  SEARCH_SPACE_PATH,
  validateConfig,
} from "../../trainer/search-space.ts";

const root = path.resolve(import.meta.dirname, "../..");

test("the committed search-space.json is exactly what trainer/hparams.py exports", () => {
  const r = spawnSync("python3", ["-m", "trainer.hparams", "--export-json"], { cwd: root, encoding: "utf8" });
  expect(r.status).toBe(0);
  expect(readFileSync(SEARCH_SPACE_PATH, "utf8")).toBe(r.stdout);
});

test("the search space uses Karpathy's names, kinds int/float/choice, and valid defaults", () => {
  const cpu = loadSearchSpace("cpu");
  const names = cpu.map((p) => p.name);
  for (const n of ["DEPTH", "ASPECT_RATIO", "HEAD_DIM", "WINDOW_PATTERN", "TOTAL_BATCH_SIZE", "MATRIX_LR"]) {
    expect(names).toContain(n);
  }
  expect(names).toEqual(expect.arrayContaining(["ADAM_BETA1", "ADAM_BETA2", "SEQ_LEN", "FINAL_LR_FRAC"]));
  expect(names).not.toContain("SEED");
  expect(names).not.toContain("ADAM_BETAS");
  for (const p of cpu) expect(["int", "float", "choice"]).toContain(p.kind);
  expect(validateConfig(defaultConfig("cpu"))).toEqual([]);
  expect(validateConfig(defaultConfig("cuda"))).toEqual([]);
  expect(defaultConfig("cpu").DEPTH).toBe(2);
  expect(defaultConfig("cuda").DEPTH).toBe(8);
  // ParamSpec only: the GPU default does not leak into the loop's view.
  expect(Object.keys(cpu[0] ?? {})).not.toContain("gpuDefault");
});

test.each([
  [null, /must be an object/],
  [[1, 2], /must be an object/],
  [{ DEPTH: 2.5 }, /DEPTH must be an integer/],
  [{ DEPTH: 0 }, /DEPTH must be in \[1, 24\]/],
  [{ DEPTH: "4" }, /DEPTH must be a number/],
  [{ MATRIX_LR: Number.NaN }, /finite/],
  [{ MATRIX_LR: 5 }, /MATRIX_LR must be in/],
  [{ WINDOW_PATTERN: "XYZ" }, /one of "L", "SL"/],
  [{ HEAD_DIM: "64" }, /HEAD_DIM must be one of 32, 64, 128/],
  [{ LEARNING_RATE: 1 }, /unknown hyperparameter "LEARNING_RATE"/],
  [{ SEED: 1 }, /run option/],
  [{ ADAM_BETAS: "0.9" }, /ADAM_BETA1 and ADAM_BETA2/],
])("validateConfig rejects %j", (config, error) => {
  const errors = validateConfig(config);
  expect(errors.length).toBeGreaterThan(0);
  expect(errors.join("\n")).toMatch(error);
});

test("validateConfig reports every problem at once", () => {
  expect(validateConfig({ DEPTH: -1, FOO: 1, WINDOW_PATTERN: 3 })).toHaveLength(3);
});

test("parseAssignment types values by the search space", () => {
  expect(parseAssignment("DEPTH=4")).toEqual({ entries: [["DEPTH", 4]], errors: [] });
  expect(parseAssignment("TOTAL_BATCH_SIZE=2**14")).toEqual({
    entries: [["TOTAL_BATCH_SIZE", 16384]],
    errors: [],
  });
  expect(parseAssignment("WINDOW_PATTERN=SSL").entries).toEqual([["WINDOW_PATTERN", "SSL"]]);
  expect(parseAssignment('WINDOW_PATTERN="SSL"').entries).toEqual([["WINDOW_PATTERN", "SSL"]]);
  expect(parseAssignment("HEAD_DIM=128").entries).toEqual([["HEAD_DIM", 128]]);
  expect(parseAssignment("ADAM_BETAS=(0.9, 0.99)").entries).toEqual([
    ["ADAM_BETA1", 0.9],
    ["ADAM_BETA2", 0.99],
  ]);
  expect(parseAssignment("MATRIX_LR=1e-2").entries).toEqual([["MATRIX_LR", 0.01]]);
});

test.each([
  ["DEPTH", /KEY=VALUE/],
  ["=4", /KEY=VALUE/],
  ["DEPTH=", /needs a value/],
  ["DEPTH=four", /must be a number/],
  ["DEPTH=1e400", /must be a number/],
  ["DEPTH=3.5", /integer/],
  ["NOPE=1", /unknown hyperparameter/],
  ["ADAM_BETAS=0.9", /two numbers/],
  ["ADAM_BETAS=0.9,abc", /ADAM_BETA2 must be a number/],
  ["HEAD_DIM=48", /one of 32, 64, 128/],
])("parseAssignment rejects %s", (text, error) => {
  const r = parseAssignment(text);
  expect(r.entries).toEqual([]);
  expect(r.errors.join("\n")).toMatch(error);
});

test("parseNumber accepts decimals, exponents and 2**k only", () => {
  expect(parseNumber("2**17")).toBe(131072);
  expect(parseNumber("-0.5")).toBe(-0.5);
  expect(parseNumber(".5")).toBe(0.5);
  for (const bad of ["", "0x10", "1/2", "Infinity", "1e999", "2**", "abc"])
    expect(parseNumber(bad)).toBeNull();
});
