// The adapter for a user's Karpathy-style train.py, against a fixture that mimics it.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { ExternalTrainer, parseSummary, rewriteConstants, summaryNumber } from "../../trainer/external.ts";
import { TailLines } from "../../trainer/tail.ts";
import type { TrainerProgress, TrialRequest } from "../../trainer/types.ts";

const fixtures = path.resolve(import.meta.dirname, "../fixtures/trainer");
const script = path.join(fixtures, "karpathy_train.py");
const source = readFileSync(script, "utf8");
const python = "/usr/bin/python3";
let tmp: string;
beforeAll(() => {
  tmp = mkdtempSync(path.join(os.tmpdir(), "bilevel-external-"));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function request(name: string, extra: Partial<TrialRequest> = {}): TrialRequest {
  return { config: {}, budgetSeconds: 5, seed: 0, device: "cpu", workDir: path.join(tmp, name), ...extra };
}

/** Lines that differ between two texts of the same length in lines. */
function changedLines(a: string, b: string): number[] {
  const la = a.split("\n");
  const lb = b.split("\n");
  expect(lb).toHaveLength(la.length);
  return la.flatMap((line, i) => (line === lb[i] ? [] : [i + 1]));
}

test("constants are rewritten in place (2**k style, tuples, strings) and no other line changes", () => {
  const r = rewriteConstants(
    source,
    { DEPTH: 4, TOTAL_BATCH_SIZE: 2 ** 17, WINDOW_PATTERN: "L", ADAM_BETAS: [0.9, 0.99], WEIGHT_DECAY: 0.1 },
    python,
  );
  expect(r.errors).toEqual([]);
  const lineOf = (re: RegExp) => source.split("\n").findIndex((l) => re.test(l)) + 1;
  const expected = [
    lineOf(/^DEPTH = 8/), // not the docstring line "DEPTH = 99 in this docstring"
    lineOf(/^TOTAL_BATCH_SIZE = /),
    lineOf(/^WINDOW_PATTERN = /),
    lineOf(/^ADAM_BETAS = /),
    lineOf(/^WEIGHT_DECAY: /),
  ].sort((a, b) => a - b);
  expect(changedLines(source, r.source)).toEqual(expected);
  const out = r.source.split("\n");
  expect(out).toContain("DEPTH = 4  # number of layers"); // trailing comment kept
  expect(out).toContain("TOTAL_BATCH_SIZE = 2**17  # tokens per step"); // 2**19 -> 2**17
  expect(out).toContain('WINDOW_PATTERN = "L"');
  expect(out).toContain("ADAM_BETAS = (0.9, 0.99)");
  expect(out).toContain("WEIGHT_DECAY: float = 0.1"); // annotated assignment
  expect(out).toContain("    DEPTH = 3  # a local, never rewritten");
  expect(out).toContain("DEPTH = 99 in this docstring is not a constant.");
  expect(r.changes.map((c) => c.name).sort()).toEqual(
    ["ADAM_BETAS", "DEPTH", "TOTAL_BATCH_SIZE", "WEIGHT_DECAY", "WINDOW_PATTERN"].sort(),
  );
});

test("a multi-line tuple keeps its layout and comments; ADAM_BETA1/2 set elements of ADAM_BETAS", () => {
  const r = rewriteConstants(source, { SCHEDULE: [0.1, 0.3], ADAM_BETA2: 0.999 }, python);
  expect(r.errors).toEqual([]);
  expect(r.source).toContain("SCHEDULE = (\n    0.1,  # warmup\n    0.3,  # warmdown\n)");
  expect(r.source).toContain("ADAM_BETAS = (0.8, 0.999)");
  expect(changedLines(source, r.source)).toHaveLength(3);
});

test("a non-power batch size is written as a plain integer; a float constant stays a float", () => {
  const r = rewriteConstants(
    source,
    { TOTAL_BATCH_SIZE: 100000, DEVICE_BATCH_SIZE: 64, MATRIX_LR: 1 },
    python,
  );
  expect(r.source).toContain("TOTAL_BATCH_SIZE = 100000  # tokens per step");
  expect(r.source).toContain("DEVICE_BATCH_SIZE = 64\n");
  expect(r.source).toContain("MATRIX_LR = 1.0\n"); // the script's float stays a float
});

test.each([
  [{ NOT_THERE: 1 }, /no top-level constant NOT_THERE/],
  [{ WINDOW_PATTERN: 3 }, /WINDOW_PATTERN is a string/],
  [{ DEPTH: "deep" }, /DEPTH is a number/],
  [{ ADAM_BETAS: [0.9] }, /2-element tuple/],
  [{ DEPTH: Number.NaN }, /DEPTH/],
])("rewriting %j is a clear error and changes nothing", (values, error) => {
  const r = rewriteConstants(source, values, python);
  expect(r.errors.join("\n")).toMatch(error);
  expect(r.source).toBe(source);
});

test("a script that does not parse, or assigns a constant twice, is refused", () => {
  expect(rewriteConstants("DEPTH = (\n", { DEPTH: 1 }, python).errors.join()).toMatch(/does not parse/);
  expect(rewriteConstants("X = 1\nX = 2\n", { X: 3 }, python).errors.join()).toMatch(/assigned 2 times/);
  expect(rewriteConstants("X = f()\n", { X: 3 }, python).errors.join()).toMatch(/not a literal/);
});

test("a run rewrites the copy (not the original), parses progress and the summary block", async () => {
  const progress: TrainerProgress[] = [];
  const t = new ExternalTrainer({ script, python });
  const o = await t.run(
    request("ok", {
      config: { DEPTH: 4, TOTAL_BATCH_SIZE: 2 ** 17, ADAM_BETA2: 0.9 },
      onProgress: (p) => progress.push(p),
    }),
  );
  expect(o.message).toBe("ok");
  expect(o.status).toBe("ok");
  // 1 + 4/100 + 17/1000 + 0.9/10000: proves the rewritten values reached the script.
  expect(o.valBpb).toBeCloseTo(1 + 0.04 + 0.017 + 0.00009, 6);
  expect(o.result?.num_steps).toBe(953);
  expect(o.result?.mfu_percent).toBeCloseTo(39.8);
  expect(o.result?.peak_memory_mb).toBeCloseTo(45060.2);
  expect(o.result?.num_tokens).toBe(499_600_000);
  expect(readFileSync(script, "utf8")).toBe(source); // the user's file is untouched
  expect(readFileSync(path.join(tmp, "ok", "karpathy_train.py"), "utf8")).toMatch(/^DEPTH = 4 /m);
  expect(progress.map((p) => p.step)).toEqual([0, 1, 2, 3, 4]);
  expect(progress.at(-1)?.progress).toBe(1);
  expect(progress[0]?.tokensPerSecond).toBe(1_234_567);
  expect(progress[0]?.loss).toBe(4);
});

test.each([
  ["no-bpb", "crashed", /no val_bpb: line/],
  [
    "no-separator",
    "crashed",
    /val_bpb: was printed, but not in a summary block: the block starts with a line "---"/,
  ],
  ["fail", "diverged", /FAIL/],
  ["oom", "oom", /out of memory/],
  ["nan", "diverged", /val_bpb is NaN/],
  ["inf", "diverged", /val_bpb is Infinity/],
  ["zero", "crashed", /val_bpb must be > 0, got 0\.000000/],
  ["negative", "crashed", /val_bpb must be > 0, got -0\.500000/],
  ["garbage-bpb", "crashed", /val_bpb: line is not a number: "abc"/],
])("MODE=%s is classified as %s", async (mode, status, message) => {
  const o = await new ExternalTrainer({ script, python }).run(
    request(`mode-${mode}`, { config: { MODE: mode } }),
  );
  expect(o.status).toBe(status);
  expect(o.message).toMatch(message);
  expect(o.valBpb).toBeNull();
});

describe("a long run (120k \\r progress lines, ~18 MB, before the end)", () => {
  test("still yields the summary block", async () => {
    let updates = 0;
    const o = await new ExternalTrainer({ script, python }).run(
      request("flood", { config: { MODE: "flood" }, onProgress: () => updates++ }),
    );
    expect(o.message).toBe("ok");
    expect(o.valBpb).toBeCloseTo(1 + 0.08 + 0.019 + 0.000095, 6);
    expect(o.result?.num_steps).toBe(953);
    expect(updates).toBeGreaterThanOrEqual(119_999);
  }, 60_000);

  test.each([
    ["flood-oom", "oom", /out of memory/],
    ["flood-crash", "crashed", /no val_bpb: line .*exit 1.*RuntimeError: boom at the end/],
  ])(
    "MODE=%s: what is printed at the end still classifies it (%s)",
    async (mode, status, message) => {
      const o = await new ExternalTrainer({ script, python }).run(
        request(`mode-${mode}`, { config: { MODE: mode } }),
      );
      expect(o.status).toBe(status);
      expect(o.message).toMatch(message);
    },
    60_000,
  );
});

test("a hanging script is killed at the deadline", async () => {
  const t = new ExternalTrainer({ script, python, timeoutFactor: 1, graceSeconds: 1 });
  const o = await t.run(request("hang", { budgetSeconds: 1, config: { MODE: "hang" } }));
  expect(o.status).toBe("timeout");
}, 20_000);

test("an unknown constant is invalid-config before anything runs; a custom command is used as given", async () => {
  const bad = await new ExternalTrainer({ script, python }).run(request("bad", { config: { NOPE: 1 } }));
  expect(bad.status).toBe("invalid-config");
  expect(bad.exitCode).toBeNull();
  const custom = new ExternalTrainer({ script, python, command: [python, "-X", "utf8", "{script}"] });
  expect((await custom.run(request("custom"))).status).toBe("ok");
  const broken = new ExternalTrainer({ script: path.join(tmp, "missing.py"), python });
  expect((await broken.run(request("missing"))).message).toMatch(/cannot read/);
});

test("parseSummary reads the block after the last ---", () => {
  const s = parseSummary([
    "---",
    "val_bpb: 9",
    "noise",
    "---",
    "val_bpb:          0.997900",
    "num_steps:        953",
  ]);
  expect(s.get("val_bpb")).toBe("0.997900");
  expect(s.get("num_steps")).toBe("953");
  expect(parseSummary(["val_bpb: 1.0"]).size).toBe(0);
});

test("a command that cannot start is a crash that names it", async () => {
  const o = await new ExternalTrainer({ script, python, command: ["/nonexistent/cmd", "{script}"] }).run(
    request("no-command"),
  );
  expect(o.status).toBe("crashed");
  expect(o.message).toMatch(/could not start \/nonexistent\/cmd: .*No such file/);
});

test("summaryNumber reads Python's spellings and refuses garbage", () => {
  expect(summaryNumber("0.997900")).toBe(0.9979);
  expect(summaryNumber("1,234,567")).toBe(1234567);
  expect(summaryNumber("inf")).toBe(Number.POSITIVE_INFINITY);
  expect(summaryNumber("-inf")).toBe(Number.NEGATIVE_INFINITY);
  expect(summaryNumber("Infinity")).toBe(Number.POSITIVE_INFINITY);
  expect(summaryNumber("nan")).toBeNaN();
  for (const bad of ["abc", "", " ", "1.0x", "nanx", "n/a"]) expect(summaryNumber(bad)).toBeNull();
  expect(summaryNumber(undefined)).toBeNull();
});

test("TailLines keeps the last lines within both bounds", () => {
  const t = new TailLines(3, 12);
  for (let i = 0; i < 10_000; i++) t.push(String(i));
  expect(t.toArray()).toEqual(["9997", "9998", "9999"]);
  t.push("abcdefgh"); // 4 + 4 + 8 characters > 12: the two older lines go
  expect(t.toArray()).toEqual(["9999", "abcdefgh"]);
  t.push("x".repeat(25)); // a line longer than the bound keeps its end
  expect(t.toArray()).toEqual(["x".repeat(12)]);
  expect(t.length).toBe(1);
});
