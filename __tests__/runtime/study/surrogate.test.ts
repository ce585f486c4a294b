// The surrogate: its data file (garbage is a user error), the recording design and recorder
// (resumable, stops when the trainer's environment breaks), the fitted model on a recording of a
// known function (held-out rank correlation, failure class, measured σ), the seeded trainer.
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import type { Config, ParamSpec } from "../../../mechanism-api/index.d.ts";
import type { UserError } from "../../../runtime/errors.ts";
import { toUnit } from "../../../runtime/param-scale.ts";
import { createRng } from "../../../runtime/rng.ts";
import {
  parseSurrogateData,
  recordLine,
  SurrogateDataError,
  type SurrogateHeader,
  type SurrogateRecord,
} from "../../../runtime/surrogate/data.ts";
import { latinHypercube, planDesign } from "../../../runtime/surrogate/design.ts";
import { evaluateSurrogate } from "../../../runtime/surrogate/eval.ts";
import { loadModel, measuredNoise } from "../../../runtime/surrogate/model.ts";
import { recordSurrogate } from "../../../runtime/surrogate/record.ts";
import { SurrogateTrainer } from "../../../runtime/surrogate/trainer.ts";
import { loadSearchSpace } from "../../../trainer/search-space.ts";
import type { Trainer, TrialOutcome, TrialRequest } from "../../../trainer/types.ts";

const params = loadSearchSpace("cpu");
const names = params.map((p) => p.name);
const spec = (name: string) => params.find((p) => p.name === name) as ParamSpec;
const tmp = () => mkdtempSync(path.join(tmpdir(), "bilevel-surrogate-test-"));

/** A known objective: a bowl in MATRIX_LR and SEQ_LEN; DEPTH above 16 runs out of memory. */
function truth(config: Config): { status: TrialOutcome["status"]; valBpb: number | null } {
  if (Number(config.DEPTH) > 16) return { status: "oom", valBpb: null };
  const lr = toUnit(spec("MATRIX_LR"), config.MATRIX_LR ?? 0.04);
  const seq = toUnit(spec("SEQ_LEN"), config.SEQ_LEN ?? 128);
  return { status: "ok", valBpb: 3 + 4 * (lr - 0.5) ** 2 + 2 * (seq - 0.3) ** 2 };
}

/** A fake trainer over `truth` with seeded noise σ 0.01; counts its calls. */
function fakeTrainer(calls: TrialRequest[], sigma = 0.01): Trainer {
  return {
    async run(request) {
      calls.push(request);
      const t = truth(request.config);
      const noise = sigma * createRng("fake", request.seed, JSON.stringify(request.config)).normal();
      return {
        status: t.status,
        valBpb: t.valBpb === null ? null : t.valBpb + noise,
        result: null,
        message: t.status,
        exitCode: null,
        durationMs: 1,
        logPath: "",
      };
    },
  };
}

async function recordFake(out: string, trials: number, calls: TrialRequest[]): Promise<SurrogateRecord[]> {
  return recordSurrogate({
    out,
    device: "cpu",
    budgetSeconds: 4,
    maxSteps: 40,
    trials,
    repeats: 4,
    jobs: 2,
    seed: 0,
    memoryBytes: null,
    graceSeconds: 10,
    trainerFor: () => fakeTrainer(calls),
  });
}

test("garbage data files are user errors (exit 2) naming the file and line", () => {
  const header: SurrogateHeader = {
    format: "bilevel-surrogate",
    version: 1,
    device: "cpu",
    budgetSeconds: 4,
    maxSteps: null,
    params: names,
    design: { trials: 1, repeats: 1, seed: 0 },
    limits: { memoryBytes: null, timeoutSeconds: 16 },
    note: "",
  };
  const cases: [string, RegExp][] = [
    ["", /empty/],
    ["this is not json\n", /f\.jsonl:1: not a JSON line/],
    ['{"format":"something-else"}\n', /f\.jsonl:1: not a bilevel-surrogate v1 header/],
    [`${JSON.stringify(header)}\n{"i":0}\n`, /f\.jsonl:2: malformed record/],
    [
      `${JSON.stringify(header)}\n${JSON.stringify({ i: 0, phase: "space", seed: 0, x: [1], status: "ok", valBpb: 3, seconds: 1 })}\n`,
      /x has 1 values for 17 params/,
    ],
  ];
  for (const [text, message] of cases) {
    let error: unknown;
    try {
      parseSurrogateData(text, "f.jsonl");
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(SurrogateDataError);
    expect((error as UserError).exitCode).toBe(2);
    expect((error as Error).message).toMatch(message);
  }
});

test("design: shares add up, a Latin hypercube uses every stratum of every dimension once", () => {
  for (const [trials, repeats] of [
    [280, 4],
    [12, 2],
    [50, 1],
  ] as const) {
    const plan = planDesign(trials, repeats);
    expect(plan.space + plan.nearDefault + plan.local[0] + plan.local[1] + plan.repeatPoints * repeats).toBe(
      trials,
    );
  }
  const points = latinHypercube(createRng("t"), 10, 3);
  for (let d = 0; d < 3; d++) {
    const strata = points.map((p) => Math.floor((p[d] as number) * 10)).sort((a, b) => a - b);
    expect(strata).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  }
});

test("the recorder writes one line per trial, resumes without rerunning, and stops on a refused design point", async () => {
  const dir = tmp();
  const out = path.join(dir, "rec.jsonl");
  const first: TrialRequest[] = [];
  const records = await recordFake(out, 40, first);
  expect(records).toHaveLength(40);
  expect(first).toHaveLength(40);
  const lines = readFileSync(out, "utf8").trim().split("\n");
  expect(lines).toHaveLength(41);
  expect(new Set(records.map((r) => r.phase))).toEqual(new Set(["space", "near-default", "local", "repeat"]));
  // Cut the file after 25 trials (a killed recording): the resume runs only the 15 missing ones.
  writeFileSync(out, `${lines.slice(0, 26).join("\n")}\n`);
  const again: TrialRequest[] = [];
  const resumed = await recordFake(out, 40, again);
  expect(again).toHaveLength(15);
  expect(resumed.map(recordLine)).toEqual(records.map(recordLine));
  // Another design in the same file is refused.
  await expect(recordFake(out, 41, [])).rejects.toThrow(/other settings/);
  const refused = path.join(dir, "refused.jsonl");
  const broken: Trainer = {
    run: async () => ({
      status: "invalid-config",
      valBpb: null,
      result: null,
      message: "no corpus",
      exitCode: 2,
      durationMs: 1,
      logPath: "",
    }),
  };
  const options = {
    out: refused,
    device: "cpu",
    budgetSeconds: 4,
    maxSteps: null,
    trials: 5,
    repeats: 1,
    jobs: 1,
    seed: 0,
    memoryBytes: null,
    graceSeconds: 1,
  } as const;
  await expect(recordSurrogate({ ...options, trainerFor: () => broken })).rejects.toThrow(
    /refused design point #0.*no corpus/,
  );
  expect(readFileSync(refused, "utf8").trim().split("\n")).toHaveLength(1);
});

test("the model of a recorded known function: held-out rank correlation, failure class, measured σ, seeded noise", async () => {
  const dir = tmp();
  const out = path.join(dir, "rec.jsonl");
  await recordFake(out, 120, []);
  const text = readFileSync(out, "utf8");
  const data = parseSurrogateData(text, out);
  const noise = measuredNoise(data);
  expect(noise.points).toBeGreaterThan(0);
  expect(noise.sigma).toBeGreaterThan(0.003);
  expect(noise.sigma).toBeLessThan(0.03);
  const quality = evaluateSurrogate(data, 4, 1);
  expect(quality.spearman).toBeGreaterThan(0.6);
  expect(quality.rmse).toBeLessThan(quality.spread as number);
  expect(quality.statusAccuracy).toBeGreaterThanOrEqual(quality.majorityAccuracy);
  const cache = path.join(dir, "cache");
  const model = loadModel(data, text, cache);
  expect(readdirSync(cache)).toHaveLength(1);
  const base = Object.fromEntries(params.map((p) => [p.name, p.default]));
  expect(model.predict({ ...base, DEPTH: 22 }).status).toBe("oom");
  const good = model.predict({ ...base, DEPTH: 2, MATRIX_LR: 0.03, SEQ_LEN: 150 });
  const bad = model.predict({ ...base, DEPTH: 2, MATRIX_LR: 0.9, SEQ_LEN: 2000 });
  expect(good.status).toBe("ok");
  expect(bad.valBpb as number).toBeGreaterThan(good.valBpb as number);
  // The cached model predicts the same as the fitted one.
  expect(loadModel(data, text, cache).predict({ ...base, MATRIX_LR: 0.2 })).toEqual(
    model.predict({ ...base, MATRIX_LR: 0.2 }),
  );
  const trainer = new SurrogateTrainer(model, { noise: 0.05 });
  const workDir = path.join(dir, "trial");
  const run = (seed: number, config: Config) =>
    trainer.run({ config, seed, budgetSeconds: 1, device: "cpu", workDir });
  const a = await run(1, base);
  expect((await run(1, base)).valBpb).toBe(a.valBpb);
  expect((await run(2, base)).valBpb).not.toBe(a.valBpb);
  expect(await run(1, { ...base, DEPTH: 22 })).toMatchObject({ status: "oom", valBpb: null });
});
