// The loop options the study's groups rest on: level1.restartEvery (group R) resets the incumbent
// to the best trial so far every K iterations, with an event each time; level15.enabled false
// (groups A, D, R) runs no Level 1.5 step.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { restartPoint } from "../../../runtime/loop.ts";
import { RunStore } from "../../../runtime/store.ts";
import { builtinGroups } from "../../../runtime/study/spec.ts";
import { executeRun } from "../../../runtime/wiring.ts";
import { testConfig } from "../../support/run-config.ts";

const RUN = {
  name: "restart-test",
  seed: 5,
  iterations: 9,
  budgetSeconds: 1,
  trainer: { kind: "synthetic", delayMs: 0, noise: 0.003 },
  acceptance: { mode: "strict", baselineRepeats: 1 },
  level1: { restartEvery: 3 },
  level15: { every: 3, enabled: false },
  level2: { everyCycles: 0 },
};

test("restartPoint: the last multiple of K before the iteration (0: none yet or off)", () => {
  const config = testConfig(RUN);
  expect([1, 2, 3, 4, 6, 7, 9, 10].map((it) => restartPoint(config, it))).toEqual([0, 0, 0, 3, 3, 6, 6, 9]);
  expect(restartPoint(testConfig({ ...RUN, level1: { restartEvery: 0 } }), 8)).toBe(0);
});

test("a run with restartEvery 3 restarts from the best trial at iterations 4 and 7; Level 1.5 off does nothing", async () => {
  const dir = mkdtempSync(path.join(tmpdir(), "bilevel-restart-"));
  await executeRun({ dir, config: testConfig(RUN), offline: true, observer: {} });
  const store = RunStore.open(dir, { readOnly: true });
  const events = store.events();
  const trials = store.trials();
  expect(store.runConfig()?.level1).toEqual({ restartEvery: 3 });
  store.close();
  expect(events.filter((e) => e.kind === "restart").map((e) => e.iteration)).toEqual([4, 7]);
  expect(events.filter((e) => e.level === "1.5")).toEqual([]);
  let checked = 0;
  for (const at of [4, 7]) {
    // The trial right after a restart is judged against the best val_bpb so far.
    const before = trials.filter((t) => t.iteration < at && t.valBpb !== null).map((t) => t.valBpb as number);
    const trial = trials.find((t) => t.kind === "search" && t.iteration === at);
    if (trial?.valBpb == null) continue;
    expect(trial.delta).toBeCloseTo(trial.valBpb - Math.min(...before), 12);
    checked++;
  }
  expect(checked).toBeGreaterThan(0);
});

test("the built-in groups differ only in the levels they switch on", () => {
  const g = builtinGroups(10);
  expect(Object.keys(g)).toEqual(["A", "B", "C", "D", "R"]);
  expect(g.A?.run).toEqual({ level15: { enabled: false }, level2: { everyCycles: 0 } });
  expect(g.C?.run).toEqual({});
  expect(g.R?.run).toMatchObject({ level1: { restartEvery: 10 } });
});

test("group D's shape (Level 1.5 off, Level 2 on): Level 2 keeps its cadence of cycles, as in C", async () => {
  const dir = mkdtempSync(path.join(tmpdir(), "bilevel-group-d-"));
  const config = testConfig({
    ...RUN,
    level1: { restartEvery: 0 },
    level15: { every: 2, enabled: false },
    level2: { everyCycles: 2 },
  });
  await executeRun({ dir, config: { ...config, iterations: 8 }, offline: true, observer: {} });
  const store = RunStore.open(dir, { readOnly: true });
  const events = store.events();
  store.close();
  // Cycles end at iterations 2, 4, 6, 8; every second one holds a Level 2 session.
  expect(events.filter((e) => e.level === "2" && e.kind === "session").map((e) => e.iteration)).toEqual([
    4, 8,
  ]);
  expect(events.filter((e) => e.level === "1.5")).toEqual([]);
});
