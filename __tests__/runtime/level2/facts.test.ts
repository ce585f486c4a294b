// The facts every Level 2 round states: computed from the run config, the measured noise and the
// trials, and true of what the loop does (the threshold is the acceptance rule's own).
import { describe, expect, test } from "@jest/globals";
import { decide } from "../../../runtime/level1/acceptance.ts";
import { formatFacts, runFacts } from "../../../runtime/level2/facts.ts";
import type { TrialRow } from "../../../runtime/store.ts";
import { testConfig } from "../../support/run-config.ts";

function baseline(id: number, seed: number, valBpb: number | null): TrialRow {
  return {
    id,
    iteration: 0,
    kind: "baseline",
    proposalId: null,
    seed,
    config: {},
    changes: [],
    status: valBpb === null ? "crashed" : "ok",
    valBpb,
    kept: false,
    delta: null,
    result: null,
    message: "",
    durationMs: 1,
    description: "",
  };
}

const NOISE = { mean: 2.45, sigma: 0.005, n: 3 };

describe("run facts", () => {
  test("noise-aware: the stated threshold is the acceptance rule's, and the run seed's baseline is the first incumbent", () => {
    const config = testConfig({ seed: 7, iterations: 20, acceptance: { mode: "noise-aware", k: 2 } });
    const trials = [baseline(1, 8, 2.44), baseline(2, 7, 2.46), baseline(3, 9, 2.45)];
    const facts = runFacts({ config, iteration: 10, noise: NOISE, trials });
    expect(facts.acceptance.threshold).toBeCloseTo(0.01, 12);
    // What the text says is what decide() does: kept only beyond the threshold.
    expect(decide("noise-aware", 2.46 - 0.0101, 2.46, NOISE, 2).kept).toBe(true);
    expect(decide("noise-aware", 2.46 - 0.0099, 2.46, NOISE, 2).kept).toBe(false);
    expect(facts.baseline).toBe(2.46);
    const text = formatFacts(facts);
    expect(text).toContain("after iteration 10 of 20 (numbered from 1): 10 iteration(s) left");
    expect(text).toContain(
      "a mechanism validated now acts from iteration 11. The next research session is after iteration 20.",
    );
    expect(text).toContain("Δ < −k·σ = −2 × 0.0050 = −0.0100");
    expect(text).toContain("over 3 baseline run(s)");
    expect(text).toContain("baseline run on the run seed (val_bpb 2.4600)");
  });

  test("strict, no session left, restarts, no retirement, and a failed run-seed baseline (the mean stands in)", () => {
    const config = testConfig({
      iterations: 12,
      acceptance: { mode: "strict" },
      level1: { restartEvery: 4 },
      level2: { everyCycles: 2, retireWindow: 0 },
      policy: { autoActivate: false },
      proposer: { maxChanges: 1, maxFilterRejections: 5, historyWindow: 7 },
    });
    const facts = runFacts({ config, iteration: 10, noise: NOISE, trials: [baseline(1, config.seed, null)] });
    expect(facts.acceptance.threshold).toBe(0);
    expect(facts.baseline).toBe(2.45);
    const text = formatFacts(facts);
    expect(text).toContain("a trial is kept when Δ < 0 (any gain)");
    expect(text).toContain("No further research session is due in this run.");
    expect(text).toContain("waits for a person's approval");
    expect(text).toContain("Every 4 iterations the incumbent restarts from the best trial so far.");
    expect(text).toContain("Mechanisms are not retired in this run");
    expect(text).toContain("at most 1 parameter(s) per proposal");
    expect(text).toContain("at most 5 time(s): when all 6 proposals of an iteration are rejected");
    expect(text).toContain("ctx.history: the last 7 search trials");
  });
});
