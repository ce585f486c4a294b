// Run stores and study data built directly (no trainer) for the report tests: every outcome
// (baseline, kept, discarded, failed), Level 1.5 changes, a generated mechanism with its research
// session, a quarantined and a retired one, LLM exchanges with tokens, and hostile text in the
// places a mechanism or an LLM controls (names, rationales, reasons, code, replies).
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import type { StudyData, StudyRun } from "../../runtime/report/study-data.ts";
import { type MechanismRow, RunStore } from "../../runtime/store.ts";
import { EMPTY_CAPABILITIES } from "../../sandbox/index.ts";

export const HOSTILE = `<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'"&`;
export const HOSTILE_NAME = `evil<script>window.__pwned=3</script>"'`;
export const GENERATED_ID = "m1-bandit-sweep";

export interface FixtureOptions {
  /** Search iterations (one trial each); 3 baselines come first. */
  readonly iterations: number;
  /** Leave the run "running" (for serve) instead of "finished". */
  readonly running?: boolean;
}

function mechanism(id: string, name: string, over: Partial<MechanismRow>): MechanismRow {
  return {
    id,
    name,
    origin: "generated",
    status: "active",
    source: `// ${name}\nexport default { name: ${JSON.stringify(name)} };\n// ${HOSTILE}\n`,
    js: "compiled",
    sourceHash: `${id}-s`,
    jsHash: `${id}-j`,
    manifest: { name, version: 1, hooks: ["suggest", "observe"], capabilities: [] },
    validation: null,
    state: null,
    capabilities: EMPTY_CAPABILITIES,
    reason: null,
    createdIteration: 4,
    activatedIteration: 4,
    designName: null,
    ...over,
  };
}

function seedMechanisms(store: RunStore): void {
  store.upsertMechanism(mechanism(GENERATED_ID, "bandit-sweep", { designName: HOSTILE_NAME }));
  store.upsertMechanism(
    mechanism("m2-evil", HOSTILE_NAME, {
      origin: "file",
      status: "quarantined",
      reason: `threw ${HOSTILE}`,
      createdIteration: 0,
      activatedIteration: null,
    }),
  );
  store.upsertMechanism(
    mechanism("m3-tabu", "tabu", {
      origin: "library",
      status: "retired",
      reason: "never touched a kept trial",
    }),
  );
  store.addEvent(0, "2", "quarantined", `${HOSTILE_NAME} quarantined: ${HOSTILE}`, { id: "m2-evil" });
  store.addEvent(4, "2", "session", "Level 2 research session (LLM)");
  store.addEvent(4, "2", "research", "Level 2 design: bandit-sweep", {
    candidates: [{ name: "bandit-sweep" }, { name: HOSTILE_NAME }],
    critique: { selected: "bandit-sweep" },
  });
  for (const [i, step] of ["explore", "critique", "specify", "generate", "repair"].entries()) {
    store.addExchange({
      iteration: 4,
      purpose: `level2.${step}`,
      model: "test-model",
      messages: [
        { role: "system", content: `You design mechanisms (${step}).` },
        { role: "user", content: `step ${i}: ${HOSTILE}` },
      ],
      reply: `reply to ${step}: ${HOSTILE}`,
      error: null,
      promptTokens: 1000 + i,
      completionTokens: 200 + i,
      latencyMs: 1500 + 100 * i,
    });
  }
  store.addEvent(4, "2", "activated", "bandit-sweep activated (generated; hooks: suggest, observe)", {
    id: GENERATED_ID,
  });
  store.addEvent(4, "2", "activated", "tabu activated (library)", { id: "m3-tabu" });
}

/** What the loop records around a trial: the hook calls that shaped it, its verdict, Level 1.5 every 4 iterations. */
function recordAround(
  store: RunStore,
  it: number,
  {
    trialId,
    proposalId,
    byMechanism,
    kept,
  }: { trialId: number; proposalId: number; byMechanism: boolean; kept: boolean },
): void {
  if (byMechanism) {
    store.addLedger({
      iteration: it,
      mechanismId: GENERATED_ID,
      hook: "suggest",
      outcome: "suggested",
      detail: {},
      latencyMs: 1.2,
      proposalId,
      trialId,
    });
  }
  store.addLedger({
    iteration: it,
    mechanismId: "m3-tabu",
    hook: "observe",
    outcome: "observed",
    detail: {},
    latencyMs: 0.4,
    proposalId: null,
    trialId,
  });
  store.addEvent(it, "1", kept ? "kept" : "discarded", `#${trialId}`, { trialId });
  if (it % 4 === 0) {
    store.addSearchConfig(
      it,
      it / 4,
      "llm",
      { strategy: "exploit", active: ["MATRIX_LR"], frozen: ["DEPTH"], guidance: "" },
      `cycle ${it / 4}: ${HOSTILE}`,
    );
    store.addEvent(it, "1.5", it % 8 === 0 ? "unchanged" : "adjusted", `Level 1.5 (llm): exploit`, {});
  }
}

function addSearchTrial(store: RunStore, it: number, best: { value: number }): void {
  const failed = it % 7 === 0;
  const byMechanism = it > 4 && it % 3 === 0;
  const value = failed ? null : 2.2 - 0.15 * (1 - Math.exp(-it / 20)) + 0.05 * Math.abs(Math.sin(it * 1.7));
  const kept = value !== null && value < best.value - 0.002;
  if (kept && value !== null) best.value = value;
  const changes = [{ param: "MATRIX_LR", value: 0.04 + it / 1000 }];
  const proposalId = store.addProposal({
    iteration: it,
    attempt: 1,
    source: byMechanism ? "mechanism" : "llm",
    mechanismId: byMechanism ? GENERATED_ID : null,
    changes,
    rationale: it === 5 ? `rationale ${HOSTILE}` : `try a slightly larger matrix LR (iteration ${it})`,
    config: { MATRIX_LR: 0.04 + it / 1000 },
    status: "trained",
    reason: null,
  });
  if (!byMechanism) {
    store.addExchange({
      iteration: it,
      purpose: "propose",
      model: "test-model",
      messages: [{ role: "user", content: "propose" }],
      reply: "{}",
      error: null,
      promptTokens: 800,
      completionTokens: 60,
      latencyMs: 900,
    });
  }
  const trialId = store.addTrial({
    iteration: it,
    kind: "search",
    proposalId,
    seed: 1,
    config: { MATRIX_LR: 0.04 + it / 1000 },
    changes,
    status: failed ? "oom" : "ok",
    valBpb: value,
    kept,
    delta: value === null ? null : value - best.value,
    result: null,
    message: failed ? "CUDA out of memory" : kept ? "improved" : "worse",
    durationMs: 1000 + (it % 5) * 50,
    description: `MATRIX_LR 0.04 -> ${(0.04 + it / 1000).toFixed(3)}${it === 6 ? ` ${HOSTILE}` : ""}`,
  });
  recordAround(store, it, { trialId, proposalId, byMechanism, kept });
  store.checkpoint(`iter:${it}:done`);
}

/** A run store in `dir` with 3 baselines and `iterations` search trials. */
export function buildFixtureRun(dir: string, options: FixtureOptions): void {
  const store = RunStore.open(dir);
  try {
    store.transaction(() => {
      store.setMeta(
        "run_config",
        JSON.stringify({ name: `fixture ${HOSTILE}`, iterations: options.iterations }),
      );
      store.setMeta("mode", "online");
      store.setMeta("status", options.running ? "running" : "finished");
      store.addEvent(0, "run", "start", "run started");
      store.addSearchConfig(
        0,
        0,
        "initial",
        { strategy: "balanced", active: ["MATRIX_LR"], frozen: [], guidance: "" },
        "all listed parameters active",
      );
      for (let seed = 1; seed <= 3; seed++) {
        store.addTrial({
          iteration: 0,
          kind: "baseline",
          proposalId: null,
          seed,
          config: { MATRIX_LR: 0.04 },
          changes: [],
          status: "ok",
          valBpb: 2.2 + seed * 0.001,
          kept: false,
          delta: null,
          result: null,
          message: "baseline",
          durationMs: 1000,
          description: `baseline run ${seed} (seed ${seed})`,
        });
      }
      store.setMeta("noise", JSON.stringify({ mean: 2.202, sigma: 0.001, n: 3 }));
      seedMechanisms(store);
      const best = { value: 2.201 };
      for (let it = 1; it <= options.iterations; it++) addSearchTrial(store, it, best);
      if (options.iterations >= 12)
        store.addEvent(12, "2", "retired", "tabu retired: never touched a kept trial", { id: "m3-tabu" });
      if (!options.running) store.addEvent(options.iterations, "run", "finish", "run finished");
    });
  } finally {
    store.close();
  }
}

/** Append one more search trial to a fixture run (what a live run does between two page updates). */
export function appendFixtureTrial(dir: string, iteration: number): void {
  const store = RunStore.open(dir);
  try {
    store.transaction(() => addSearchTrial(store, iteration, { value: 0 }));
  } finally {
    store.close();
  }
}

function studyRun(group: string, repeat: number, shift: number): StudyRun {
  const curve = Array.from({ length: 11 }, (_, it) => ({
    iteration: it,
    best: 2.2 - shift * (1 - Math.exp(-it / 4)) - 0.004 * repeat * Math.min(it, 1),
  }));
  const best = curve.at(-1)?.best ?? null;
  return {
    group,
    repeat,
    seed: repeat,
    dir: `${group}-${repeat}`,
    status: "finished",
    baseline: 2.2,
    best,
    improvement: best === null ? null : 2.2 - best,
    trials: 13,
    curve,
  };
}

/** Study data as the study module's loader returns it: 3 groups × 3 repeats, with comparisons. */
export function fixtureStudy(dir: string): StudyData {
  const groups = [
    ["A", "Level 1", 0.05],
    ["C", `Level 1 + 1.5 + 2 ${HOSTILE}`, 0.09],
    ["R", "Level 1 + restart every 4", 0.06],
  ] as const;
  const runs = groups.flatMap(([id, , shift]) => [1, 2, 3].map((r) => studyRun(id, r, shift)));
  return {
    name: `study ${HOSTILE}`,
    dir,
    status: "finished",
    objective: "surrogate",
    iterations: 10,
    target: 2.14,
    notes: [`note: ${HOSTILE}`],
    runs,
    groups: groups.map(([id, label, shift]) => ({
      id,
      label,
      improvement: {
        n: 3,
        mean: shift,
        sd: 0.004,
        median: shift,
        ciLow: shift - 0.006,
        ciHigh: shift + 0.006,
        ciMethod: "bootstrap 95%",
      },
      comparisons:
        id === "A"
          ? []
          : [
              {
                against: "A",
                nSelf: 3,
                nOther: 3,
                difference: shift - 0.05,
                ciLow: shift - 0.058,
                ciHigh: shift - 0.042,
                test: "Mann–Whitney U",
                p: 0.05,
              },
              ...(id === "R"
                ? []
                : [
                    {
                      against: "R",
                      nSelf: 3,
                      nOther: 3,
                      difference: 0.03,
                      ciLow: -0.01,
                      ciHigh: 0.07,
                      test: "permutation",
                      p: 0.2,
                    },
                  ]),
            ],
      trialsToTarget: { median: 7, reached: 2, n: 3 },
      llmTokensPerRun: id === "A" ? null : 12345,
      time: { trainingMs: 60000, llmMs: 5000, overheadMs: 2000 },
    })),
  };
}

/** A study folder the fallback loader reads: study.json listing fixture runs. */
export function buildFixtureStudyFolder(dir: string): void {
  mkdirSync(dir, { recursive: true });
  const runs = ["A", "B"].flatMap((group) =>
    [1, 2].map((repeat) => ({ group, repeat, seed: repeat, dir: `${group}-${repeat}` })),
  );
  for (const r of runs) buildFixtureRun(path.join(dir, r.dir), { iterations: 8 + r.repeat });
  writeFileSync(
    path.join(dir, "study.json"),
    JSON.stringify({
      name: "fixture study",
      iterations: 10,
      target: 2.15,
      groups: [
        { id: "A", label: "Level 1" },
        { id: "B", label: "Level 1 + 1.5" },
      ],
      runs,
    }),
  );
}
