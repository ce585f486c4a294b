import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, test } from "@jest/globals";
import type { Change, TrialStatus } from "../../../mechanism-api/index.d.ts";
import { DEFAULT_RUN_CONFIG } from "../../../runtime/config.ts";
import { runFacts } from "../../../runtime/level2/facts.ts";
import { STEP_MARKERS } from "../../../runtime/level2/prompts.ts";
import { LlmResearcher, toResearchResult } from "../../../runtime/level2/researcher.ts";
import { formatTrace, researchTraceFrom } from "../../../runtime/level2/trace.ts";
import { createLlmClient, type LlmClient } from "../../../runtime/llm/client.ts";
import { RunStore, type TrialRow } from "../../../runtime/store.ts";
import type { DryRunTrace } from "../../../sandbox/types.ts";
import { type MockLlm, type MockStep, routeByMarker, startMockLlm } from "../../support/mock-llm-server.ts";
import { testConfig } from "../../support/run-config.ts";
import {
  BROKEN_SOURCE,
  CRITIQUE_REPLY,
  EXPLORE_REPLY,
  FACTS,
  fakeValidate,
  fenced,
  GOOD_SOURCE,
  PARAMS,
  SPEC_REPLY,
  TRACE,
} from "./fixtures.ts";

let mock: MockLlm | null = null;
let store: RunStore | null = null;
let dir: string | null = null;
afterEach(async () => {
  await mock?.close();
  store?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
  mock = null;
  store = null;
  dir = null;
});

let nextId = 1;
function row(
  iteration: number,
  kind: TrialRow["kind"],
  changes: Change[],
  valBpb: number | null,
  kept: boolean,
): TrialRow {
  const status: TrialStatus = valBpb === null ? "crashed" : "ok";
  return {
    id: nextId++,
    iteration,
    kind,
    proposalId: null,
    seed: 1,
    config: TRACE.incumbent.config,
    changes,
    status,
    valBpb,
    kept,
    delta: valBpb === null ? null : valBpb - 2.43,
    result: null,
    message: "",
    durationMs: 10,
    description: "",
  };
}

const TRIALS: TrialRow[] = [
  row(0, "baseline", [], 2.43, true),
  row(0, "baseline", [], 2.44, false),
  row(1, "search", [{ param: "MATRIX_LR", value: 0.05, previous: 0.04 }], 2.41, true),
  row(2, "search", [{ param: "WARMUP_RATIO", value: 0.1 }], null, false),
];

const DRY: DryRunTrace = {
  context: {
    iteration: 3,
    params: PARAMS,
    incumbent: TRACE.incumbent,
    best: TRACE.best,
    history: [],
    acceptance: { rule: "strict", k: 1, sigma: null, threshold: 0 },
    seed: 1,
  },
  proposal: { changes: [], rationale: "", source: "offline", config: TRACE.incumbent.config },
  trial: {
    id: 1,
    iteration: 1,
    config: TRACE.incumbent.config,
    changes: [],
    status: "ok",
    valBpb: 2.41,
    kept: true,
    delta: -0.02,
  },
};

describe("research trace", () => {
  test("built from trial rows: baselines excluded from the search counts, stats and recent trials", () => {
    const trace = researchTraceFrom({
      iteration: 3,
      params: PARAMS,
      incumbent: TRACE.incumbent,
      best: TRACE.best,
      trials: TRIALS,
      facts: FACTS,
      notes: ["n1"],
    });
    expect(trace.totalTrials).toBe(2);
    expect(trace.keptTrials).toBe(1);
    expect(trace.recent.map((t) => t.iteration)).toEqual([1, 2]);
    expect(trace.paramStats.find((s) => s.param === "WARMUP_RATIO")).toMatchObject({ tried: 1, failed: 1 });
    const text = formatTrace(trace);
    // A change shows the value it replaced; one recorded without it (an older run) its new value only.
    expect(text).toContain("#1 MATRIX_LR=0.04→0.05 -> 2.4100");
    expect(text).toContain("#2 WARMUP_RATIO=0.1 -> crashed discarded");
    expect(text).toContain("- MATRIX_LR: float [0.001, 0.2] log, default 0.04");
    expect(text).toContain('- WINDOW_PATTERN: choice of ["L","SL","SSSL"], default SSSL');
    expect(text).toContain("Notes:\n- n1");
    // The trace explains its deltas and the run's budget, and says how a mechanism is judged.
    expect(text).toContain("Δ (delta) = a trial's val_bpb minus the incumbent's val_bpb when it ran");
    expect(text).toContain("16 iteration(s) left");
    expect(text).toContain("- How a mechanism is judged:");
    const frozen = researchTraceFrom({
      ...{ iteration: 3, incumbent: TRACE.incumbent, best: TRACE.best, trials: TRIALS, facts: FACTS },
      params: PARAMS.map((p) => (p.name === "WARMUP_RATIO" ? { ...p, frozen: true } : p)),
    });
    expect(formatTrace(frozen)).toContain(
      "- WARMUP_RATIO: float [0, 0.5], default 0 FROZEN by Level 1.5 (changes to it are refused)",
    );
    expect(text).toContain('Incumbent config: {"MATRIX_LR":0.05,"WARMUP_RATIO":0,"WINDOW_PATTERN":"SSSL"}');
  });

  test("an empty run formats without throwing", () => {
    const trace = researchTraceFrom({
      iteration: 0,
      params: [],
      incumbent: { config: {}, valBpb: null },
      best: null,
      trials: [],
      facts: runFacts({ config: testConfig({}), iteration: 0, noise: null, trials: [] }),
    });
    const text = formatTrace(trace);
    expect(text).toContain("Incumbent val_bpb unknown; best val_bpb unknown.");
    expect(text).toContain("(none yet)");
    expect(text).toContain("σ is not measured");
    expect(text).toContain("a trial is kept when Δ < 0 (any gain)");
    expect(text).toContain("The first incumbent is the start config's baseline run;");
  });
});

async function researcher(routes: Partial<Record<keyof typeof STEP_MARKERS, MockStep[]>>) {
  mock = await startMockLlm(
    routeByMarker(
      (Object.keys(STEP_MARKERS) as (keyof typeof STEP_MARKERS)[]).map((s) => ({
        marker: STEP_MARKERS[s],
        steps: routes[s] ?? [],
      })),
    ),
  );
  dir = mkdtempSync(path.join(tmpdir(), "bilevel-l2-"));
  store = RunStore.open(dir);
  store.setMeta("noise", JSON.stringify({ mean: 2.43, sigma: 0.0042, n: 2 }));
  const llm = createLlmClient(
    { ...DEFAULT_RUN_CONFIG.llm, baseURL: mock.baseURL, maxRetries: 0 },
    {},
  ) as LlmClient;
  const r = new LlmResearcher(llm, store, testConfig({}));
  const result = await r.research({
    iteration: 7,
    trace: DRY,
    trials: TRIALS,
    params: PARAMS,
    active: [],
    tried: [],
    validate: fakeValidate,
  });
  return { result, store, mock };
}

const good = {
  explore: [{ content: JSON.stringify(EXPLORE_REPLY) }],
  critique: [{ content: JSON.stringify(CRITIQUE_REPLY) }],
  specify: [{ content: JSON.stringify(SPEC_REPLY) }],
  generate: [{ content: fenced(GOOD_SOURCE) }],
};

describe("LlmResearcher", () => {
  test("validated: stores every exchange with the iteration and the design as an event; sees the noise", async () => {
    const { result, store, mock } = await researcher(good);
    expect(result).toMatchObject({
      status: "validated",
      origin: "generated",
      name: "repeat-guard",
      source: GOOD_SOURCE,
    });
    const exchanges = store.exchanges();
    expect(exchanges.map((e) => [e.iteration, e.purpose])).toEqual([
      [7, "level2.explore"],
      [7, "level2.critique"],
      [7, "level2.specify"],
      [7, "level2.generate"],
    ]);
    expect(exchanges[3]?.reply).toContain("export default");
    const event = store.events().find((e) => e.kind === "research");
    expect(event?.message).toBe(
      "Level 2 design: repeat-guard (score 7) chosen from repeat-guard, ucb-param-picker",
    );
    // The stored noise and the run's acceptance rule (k = 1 by default) reach the prompt.
    expect(JSON.stringify(mock.requests[0]?.body?.messages)).toContain("Δ < −k·σ = −1 × 0.0042 = −0.0042");
  });

  test("an LLM error before any code is 'none' with the reason; the failed exchange is stored", async () => {
    const { result, store } = await researcher({ ...good, explore: [{ status: 500 }] });
    expect(result.status).toBe("none");
    if (result.status === "none")
      expect(result.reason).toMatch(/^research session stopped: LLM http during explore: 500/);
    expect(store.exchanges()).toHaveLength(1);
    expect(store.exchanges()[0]?.error).toMatch(/^http: 500/);
  });

  test("the stored repair request holds the failing file and its errors", async () => {
    const { result, store } = await researcher({
      ...good,
      generate: [{ content: fenced(BROKEN_SOURCE) }],
      repair: [{ content: fenced(GOOD_SOURCE) }],
    });
    expect(result.status).toBe("validated");
    const repair = store.exchanges().find((e) => e.purpose === "level2.repair");
    // What the store kept of the request: the conversation as sent.
    const sent = ((repair?.messages ?? []) as readonly { readonly content: string }[])
      .map((m) => m.content)
      .join("\n");
    expect(sent).toContain(BROKEN_SOURCE.trimEnd());
    const line = BROKEN_SOURCE.split("\n").findIndex((l) => l.includes("historyy")) + 1;
    expect(sent).toMatch(
      new RegExp(`\\[compile/type-error\\] at line ${line}:\\d+: Property 'historyy' does not exist`),
    );
  });

  test("an LLM error during repair rejects the failing code with both reasons", async () => {
    const { result } = await researcher({
      ...good,
      generate: [{ content: fenced(BROKEN_SOURCE) }],
      repair: [{ status: 500 }],
    });
    expect(result).toMatchObject({ status: "rejected" });
    if (result.status !== "rejected") return;
    expect(result.source).toBe(BROKEN_SOURCE);
    expect(result.reason).toContain("LLM http during repair");
    expect(result.reason).toContain("compile/type-error: Property 'historyy'");
  });

  test("a validator error is 'none', naming the sandbox", () => {
    const r = toResearchResult({
      status: "validator-error",
      message: "child died",
      design: {
        candidates: [],
        critique: CRITIQUE_REPLY,
        spec: { ...SPEC_REPLY, hooks: ["filter"], capabilities: [], behaviour: [] },
      },
      source: "x",
      exchanges: [],
    });
    expect(r).toEqual({
      status: "none",
      reason: "the sandbox could not validate the generated code: child died",
    });
  });
});
