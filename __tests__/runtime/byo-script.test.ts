// A run on a user's own Karpathy-style train.py (the autoresearch layout: prepare.py, train.py,
// program.md), as such a user runs it: what is stored is what ran, the baseline is the file on
// disk, any constant can be searched, constraints never reach the trainer, identical baselines
// are called out, failures keep their reasons, and program.md reaches the LLM at Levels 1 and 2.
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import type { Config } from "../../mechanism-api/index.d.ts";
import { describeChanges } from "../../runtime/changes.ts";
import { ConfigError, type ResolvedRunConfig, resolveRunConfig } from "../../runtime/config.ts";
import { checkProposal, proposalPrompt } from "../../runtime/level1/proposer.ts";
import { BaselineError } from "../../runtime/loop.ts";
import { RunStore, type TrialRow } from "../../runtime/store.ts";
import { createTrainer } from "../../runtime/trainers.ts";
import { executeRun } from "../../runtime/wiring.ts";
import { ExternalTrainer } from "../../trainer/external.ts";
import { constantsConfig, discoverSource } from "../../trainer/script-space.ts";
import type { Trainer, TrialRequest } from "../../trainer/types.ts";
import {
  preflightReply,
  type RecordedRequest,
  startMockLlm,
  systemPrompt,
} from "../support/mock-llm-server.ts";

const python = "/usr/bin/python3";
const tmp = mkdtempSync(path.join(tmpdir(), "bilevel-byo-"));
const project = path.join(tmp, "project");
cpSync(path.resolve(import.meta.dirname, "../fixtures/autoresearch"), project, { recursive: true });
const script = path.join(project, "train.py");
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const CONSTRAINT = "TOTAL_BATCH_SIZE % (DEVICE_BATCH_SIZE * MAX_SEQ_LEN) == 0";

function config(partial: object): ResolvedRunConfig {
  return resolveRunConfig(
    { iterations: 4, level2: { everyCycles: 0 }, ...partial },
    { baseDir: tmp, label: "test config" },
    { probeCuda: () => false },
  );
}

function trainer(extra: object = {}) {
  return { kind: "external", script: "project/train.py", ...extra };
}

/** The constants of a trial's copy as the script would see them (its imports come from the project). */
function readBack(file: string): Config {
  const found = discoverSource(readFileSync(file, "utf8"), project, python);
  if (!found.ok) throw new Error(found.error);
  return constantsConfig(found.value.constants);
}

function trialScript(dir: string, t: TrialRow): string {
  return path.join(
    dir,
    "trials",
    `trial-${String(t.id).padStart(4, "0")}-iter-${t.iteration}-seed-${t.seed}`,
    "train.py",
  );
}

test("the resolved config describes the script: its constants, its TIME_BUDGET, its program.md; unknown names are errors", () => {
  const c = config({ trainer: trainer({ params: { MATRIX_LR: {}, HEAD_DIM: { choices: [64, 128] } } }) });
  expect(c.searchSpace.map((p) => p.name)).toEqual(["MATRIX_LR", "HEAD_DIM"]);
  // The script's values, not the built-in trainer's CPU defaults (HEAD_DIM 64, SEQ_LEN 128, DEVICE_BATCH_SIZE 32).
  expect(c.startConfig).toMatchObject({
    HEAD_DIM: 128,
    DEVICE_BATCH_SIZE: 128,
    DEPTH: 8,
    TOTAL_BATCH_SIZE: 2 ** 19,
  });
  expect(c.startConfig).not.toHaveProperty("SEQ_LEN");
  expect(c.budgetSeconds).toBe(3); // prepare.py's TIME_BUDGET
  expect(c.program?.file).toBe(path.join(project, "program.md"));
  expect(c.program?.text).toMatch(/get the lowest val_bpb/);
  expect(c.trainer).toMatchObject({ git: false });
  expect(() => config({ trainer: trainer({ params: { SEQ_LEN: {} } }) })).toThrow(ConfigError);
  expect(() => config({ trainer: trainer({ params: { SEQ_LEN: {} } }) })).toThrow(
    /trainer\.params\.SEQ_LEN: train\.py has no top-level constant SEQ_LEN \(its constants: ASPECT_RATIO, HEAD_DIM/,
  );
  expect(() => config({ trainer: trainer(), activeParams: ["MATRIX_LR", "NOPE"] })).toThrow(
    /activeParams\.NOPE: train\.py has no top-level constant NOPE/,
  );
  expect(() => config({ trainer: trainer({ params: { MATRIX_LR: {} } }), activeParams: ["DEPTH"] })).toThrow(
    /activeParams: DEPTH is not searched/,
  );
  expect(() => config({ trainer: trainer() })).toThrow(
    /trainer\.params: name the constants of train\.py to search/,
  );
  // Any top-level constant can be searched, not only the built-in trainer's 17 names.
  expect(
    config({ trainer: trainer(), activeParams: ["SCALAR_LR", "ADAM_BETAS[1]"] }).searchSpace.map(
      (p) => p.name,
    ),
  ).toEqual(["SCALAR_LR", "ADAM_BETAS[1]"]);
});

test("a searched parameter frozen at the start is applied when it is proposed (the adapter writes every searched name)", async () => {
  const c = config({
    trainer: trainer({ params: { MATRIX_LR: {}, EMBEDDING_LR: {} } }),
    activeParams: ["MATRIX_LR"],
  });
  const t = createTrainer(c, c.searchSpace);
  const o = await t.run({
    config: { ...c.startConfig, EMBEDDING_LR: 0.3 },
    budgetSeconds: 3,
    seed: 1,
    device: "cpu",
    workDir: path.join(tmp, "frozen-then-proposed"),
  });
  expect(o.status).toBe("ok");
  expect(o.ranConfig?.EMBEDDING_LR).toBe(0.3);
  expect(readFileSync(path.join(tmp, "frozen-then-proposed", "train.py"), "utf8")).toMatch(
    /^EMBEDDING_LR = 0\.3 /m,
  );
  // The configured grace and timeout factor reach the adapter.
  const graced = config({
    trainer: trainer({ params: { MATRIX_LR: {} }, graceSeconds: 7, timeoutFactor: 2 }),
  });
  const adapter = createTrainer(graced, graced.searchSpace) as ExternalTrainer;
  expect(adapter.options).toMatchObject({ graceSeconds: 7, timeoutFactor: 2, baseSeed: 1 });
});

test("a run: every stored config is read back from the file that ran, the baseline is the file byte for byte, identical baselines are called out", async () => {
  const dir = path.join(tmp, "run");
  const c = config({
    iterations: 5,
    seed: 5, // the offline proposer is seeded: with 5, Level 1.5 unfreezes EMBEDDING_LR and it is tried
    trainer: trainer({ params: { MATRIX_LR: {}, DEPTH: {}, EMBEDDING_LR: {} } }),
    activeParams: ["MATRIX_LR", "DEPTH"],
    acceptance: { baselineRepeats: 2, k: 1, minSigma: 0.0005 },
    level15: { every: 2, minActive: 2 },
  });
  const events: string[] = [];
  await executeRun({ dir, config: c, offline: true, observer: { event: (_l, m) => events.push(m) } });
  const store = RunStore.open(dir, { readOnly: true });
  const trials = store.trials();
  const stored = store.runConfig();
  const unmeasured = store.events().find((e) => e.kind === "noise-unmeasured");
  store.close();
  const original = readFileSync(script);
  for (const t of trials) {
    const copy = trialScript(dir, t);
    expect(t.config).toEqual(readBack(copy));
    if (t.kind === "baseline") expect(readFileSync(copy).equals(original)).toBe(true);
    for (const change of t.changes) expect(t.config[change.param]).toBe(change.value);
  }
  // Level 1.5 unfroze EMBEDDING_LR after a keep, and what was proposed for it ran.
  expect(trials.some((t) => t.changes.some((ch) => ch.param === "EMBEDDING_LR"))).toBe(true);
  expect(stored?.program?.text).toMatch(/get the lowest val_bpb/);
  // The fixture seeds itself with a fixed number, as autoresearch's train.py does.
  expect(unmeasured?.message).toMatch(
    /noise is unmeasured: the 2 baseline runs \(seeds differ\) gave the same val_bpb .*the script ignores the seed.*σ falls to its floor acceptance\.minSigma = 0\.0005.*\$BILEVEL_SEED/,
  );
  expect(events.some((m) => m.startsWith("noise is unmeasured"))).toBe(true);
  const tsv = readFileSync(path.join(dir, "results.tsv"), "utf8").trim().split("\n");
  expect(tsv[1]).toMatch(/^trial-1\t\d\.\d{6}\t43\.8\tkeep\tbaseline$/);
  expect(tsv[2]).toMatch(/^trial-2\t.*\tkeep\tbaseline run 2 \(seed 6\)$/);
}, 60_000);

test("a proposal that breaks a declared constraint never reaches the trainer: suggestions, modifications and the LLM's proposals are refused", async () => {
  const mechanism = path.join(tmp, "batch-breaker.ts");
  writeFileSync(
    mechanism,
    `import type { Mechanism } from "bilevel/mechanism-api";
export default {
  manifest: { name: "batch-breaker", version: 1, hooks: ["suggest", "filter"], capabilities: [] },
  // It acts only when it can see the constraint: the refusals below prove mechanisms see it.
  suggest(ctx) {
    const spec = ctx.params.find((p) => p.name === "TOTAL_BATCH_SIZE");
    if (!spec?.constraints?.length) return undefined;
    return { changes: [{ param: "TOTAL_BATCH_SIZE", value: 890212 }], rationale: "a batch the assertion refuses" };
  },
  filter(proposal) {
    const changes = proposal.changes.filter((c) => c.param !== "TOTAL_BATCH_SIZE");
    return { verdict: "modify", changes: [...changes, { param: "TOTAL_BATCH_SIZE", value: 890212 }], reason: "break it" };
  },
} satisfies Mechanism;
`,
  );
  const c = config({
    iterations: 3,
    trainer: trainer({
      params: { MATRIX_LR: {}, TOTAL_BATCH_SIZE: { powerOfTwo: false, constraint: CONSTRAINT } },
    }),
    acceptance: { mode: "strict" },
    mechanisms: [mechanism],
  });
  expect(c.searchSpace[1]?.constraints).toEqual(["TOTAL_BATCH_SIZE % (DEVICE_BATCH_SIZE * 2048) == 0"]);
  const inner = createTrainer(c, c.searchSpace);
  const seen: Config[] = [];
  const recording: Trainer = {
    run: (r: TrialRequest) => {
      seen.push(r.config);
      return inner.run(r);
    },
  };
  const dir = path.join(tmp, "constraint-run");
  await executeRun({ dir, config: c, offline: true, trainer: recording, observer: {} });
  expect(seen.length).toBeGreaterThan(1);
  for (const s of seen) expect(Number(s.TOTAL_BATCH_SIZE) % (Number(s.DEVICE_BATCH_SIZE) * 2048)).toBe(0);
  const store = RunStore.open(dir, { readOnly: true });
  const ledger = store.ledger();
  store.close();
  const refused = ledger.filter((l) => ["invalid-suggestion", "invalid-modification"].includes(l.outcome));
  expect(new Set(refused.map((l) => l.outcome))).toEqual(
    new Set(["invalid-suggestion", "invalid-modification"]),
  );
  expect(JSON.stringify(refused[0]?.detail)).toMatch(/constraint .*is false for TOTAL_BATCH_SIZE=890212/);

  // The LLM proposer: the prompt states the constraint, and a breaking proposal is sent back with the reason.
  const input = {
    iteration: 1,
    params: c.searchSpace,
    search: {
      strategy: "balanced" as const,
      active: ["MATRIX_LR", "TOTAL_BATCH_SIZE"],
      frozen: [],
      guidance: "",
    },
    incumbent: { config: c.startConfig, valBpb: 1 },
    best: null,
    history: [],
    crashLessons: [],
    guidance: [],
    rejected: [],
    maxChanges: 3,
    seed: 1,
    attempt: 0,
  };
  expect(proposalPrompt(input).user).toMatch(
    /TOTAL_BATCH_SIZE: int .*must satisfy TOTAL_BATCH_SIZE % \(DEVICE_BATCH_SIZE \* 2048\) == 0/,
  );
  expect(
    checkProposal({ changes: [{ param: "TOTAL_BATCH_SIZE", value: 890212 }], rationale: "" }, input).join(),
  ).toMatch(/constraint .* is false for TOTAL_BATCH_SIZE=890212/);
}, 60_000);

test("failures keep their reason in results.tsv and on the console; every baseline failing still writes results.tsv", async () => {
  const broken = path.join(tmp, "broken");
  cpSync(project, broken, { recursive: true });
  const text = readFileSync(path.join(broken, "train.py"), "utf8");
  writeFileSync(
    path.join(broken, "train.py"),
    text.replace("import math", 'raise SystemExit("no data shards in ~/.cache/autoresearch")\nimport math'),
  );
  const c = resolveRunConfig(
    {
      iterations: 2,
      trainer: { kind: "external", script: "train.py", params: { MATRIX_LR: {} } },
      acceptance: { baselineRepeats: 2 },
    },
    { baseDir: broken, label: "broken" },
    { probeCuda: () => false },
  );
  const lines: string[] = [];
  const dir = path.join(tmp, "broken-run");
  await expect(
    executeRun({
      dir,
      config: c,
      offline: true,
      observer: { trialEnd: (t) => lines.push(`${t.status}: ${t.message}`) },
    }),
  ).rejects.toThrow(BaselineError);
  const tsv = readFileSync(path.join(dir, "results.tsv"), "utf8").trim().split("\n");
  expect(tsv).toHaveLength(3);
  expect(tsv[1]).toMatch(
    /^trial-1\t0\.000000\t0\.0\tcrash\tbaseline \(crashed: no val_bpb: line in the output \(exit 1\): no data shards in ~\/\.cache\/autoresearch\)$/,
  );
  expect(lines[0]).toMatch(/crashed: no val_bpb: .*no data shards/);

  // Fixed and resumed, the run trains its baselines again (the failures stay in the record)
  // instead of replaying them for ever.
  writeFileSync(path.join(broken, "train.py"), text);
  const messages: string[] = [];
  await executeRun({
    dir,
    config: c,
    resume: true,
    offline: true,
    observer: { event: (_level, message) => messages.push(message) },
  });
  expect(messages).toContain(
    "every baseline run so far failed: running the 2 baseline run(s) again (round 2)",
  );
  const store = RunStore.open(dir, { readOnly: true });
  try {
    const baselines = store.trials().filter((t) => t.kind === "baseline");
    expect(baselines.map((t) => [t.id, t.status === "ok"])).toEqual([
      [1, false],
      [2, false],
      [3, true],
      [4, true],
    ]);
    expect(baselines[2]!.description).toBe("baseline run 1 (seed 1), round 2");
    expect(store.trials().filter((t) => t.kind === "search")).toHaveLength(2);
    expect(store.getMeta("status")).toBe("finished");
  } finally {
    store.close();
  }
  // Descriptions keep the exact values (the file has 0.14955, not 0.1496).
  expect(describeChanges({ EMBEDDING_LR: 0.6 }, [{ param: "EMBEDDING_LR", value: 0.14955 }])).toBe(
    "EMBEDDING_LR 0.6 -> 0.14955",
  );
}, 180_000);

test("program.md is the user's brief for the LLM at Level 1 and Level 2", async () => {
  const proposals: string[] = [];
  const mock = await startMockLlm((request: RecordedRequest) => {
    // The run's preflight probes the endpoint first.
    const preflight = preflightReply(request);
    if (preflight) return preflight;
    const system = systemPrompt(request);
    if (system.includes("[level2:")) return { status: 400, body: "no research in this test" };
    if (request.body?.response_format?.json_schema?.name === "strategy")
      return {
        content: JSON.stringify({
          strategy: "exploit",
          freeze: [],
          unfreeze: [],
          guidance: "",
          rationale: "ok",
        }),
      };
    proposals.push(request.body?.messages?.at(-1)?.content ?? "");
    return {
      content: JSON.stringify({
        changes: [{ param: "MATRIX_LR", value: 0.03 + proposals.length / 1000 }],
        rationale: "lower",
      }),
    };
  });
  try {
    const dir = path.join(tmp, "online");
    const c = config({
      iterations: 2,
      trainer: trainer({ params: { MATRIX_LR: {} } }),
      llm: { baseURL: mock.baseURL, model: "scripted", maxRetries: 0, timeoutMs: 600_000 },
      acceptance: { mode: "strict" },
      level15: { every: 2, minActive: 1 },
      level2: { everyCycles: 1, retireWindow: 0 },
    });
    await executeRun({ dir, config: c, offline: false, env: { OPENAI_API_KEY: "sk-test" }, observer: {} });
    const brief = "**The goal is simple: get the lowest val_bpb.**";
    expect(proposals[0]).toContain("The user's research brief (their program.md");
    expect(proposals[0]).toContain(brief);
    const level2 = mock.requests.find((r) => systemPrompt(r).includes("[level2:explore]"));
    expect(JSON.stringify(level2?.body?.messages)).toContain("get the lowest val_bpb");
  } finally {
    await mock.close();
  }
}, 60_000);

test("ExternalTrainer is what createTrainer builds without git (options carried as configured)", () => {
  const c = config({ trainer: trainer({ params: { MATRIX_LR: {} }, command: ["uv", "run", "{script}"] }) });
  const t = createTrainer(c, c.searchSpace);
  expect(t).toBeInstanceOf(ExternalTrainer);
  expect((t as ExternalTrainer).options.command).toEqual(["uv", "run", "{script}"]);
});
