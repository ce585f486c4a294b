// The lifecycle the API documents, on a real run: iteration numbering, what ctx holds in observe,
// ctx.acceptance and ctx.params' active/frozen, and what `status` calls having fired.
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { formatReport } from "../../runtime/report.ts";
import { RunStore } from "../../runtime/store.ts";
import { executeRun } from "../../runtime/wiring.ts";
import { testConfig } from "../support/run-config.ts";

const SYNTHETIC = { trainer: { kind: "synthetic", delayMs: 0, noise: 0.002 }, budgetSeconds: 1 };

// Records what each hook saw; its filter always accepts, so it never changes what the loop does.
const RECORDER = `import type { Mechanism } from "bilevel/mechanism-api";
interface Seen { hook: string; iteration: number }
interface Observed {
  iteration: number;
  kept: boolean;
  trialIsIncumbent: boolean;
  historyHasTrial: boolean;
  rule: string;
  k: number;
  sigma: number | null;
  threshold: number;
  allActiveSet: boolean;
}
interface State { seen: Seen[]; observed: Observed[] }
export default {
  manifest: { name: "recorder", version: 1, apiVersion: 1, hooks: ["init", "filter", "observe"], capabilities: [] },
  init: (ctx) => ({ seen: [{ hook: "init", iteration: ctx.iteration }], observed: [] }),
  filter(_proposal, ctx) {
    ctx.state.seen.push({ hook: "filter", iteration: ctx.iteration });
    return { verdict: "accept" };
  },
  observe(trial, ctx) {
    const same = (a: object, b: object) => JSON.stringify(a) === JSON.stringify(b);
    ctx.state.observed.push({
      iteration: ctx.iteration,
      kept: trial.kept,
      trialIsIncumbent: same(trial.config, ctx.incumbent.config),
      historyHasTrial: ctx.history.some((t) => t.id === trial.id),
      rule: ctx.acceptance.rule,
      k: ctx.acceptance.k,
      sigma: ctx.acceptance.sigma,
      threshold: ctx.acceptance.threshold,
      allActiveSet: ctx.params.every((p) => typeof p.active === "boolean"),
    });
  },
} satisfies Mechanism<State>;
`;

interface Recorded {
  seen: { hook: string; iteration: number }[];
  observed: {
    iteration: number;
    kept: boolean;
    trialIsIncumbent: boolean;
    historyHasTrial: boolean;
    rule: string;
    k: number;
    sigma: number | null;
    threshold: number;
    allActiveSet: boolean;
  }[];
}

test("a run: numbering, observe's view, ctx.acceptance, and a mechanism that only accepts has fired", async () => {
  const dir = mkdtempSync(path.join(tmpdir(), "bilevel-lifecycle-"));
  const file = path.join(dir, "recorder.ts");
  writeFileSync(file, RECORDER);
  const config = testConfig({ ...SYNTHETIC, iterations: 4, mechanisms: [file], acceptance: { k: 2 } });
  const summary = await executeRun({ dir: path.join(dir, "run"), config, offline: true, observer: {} });
  expect(summary.report.status).toBe("finished");

  const store = RunStore.open(path.join(dir, "run"), { readOnly: true });
  const row = store.mechanisms().find((m) => m.name === "recorder");
  expect(row?.status).toBe("active");
  const state = row?.state as unknown as Recorded;
  // init sees iteration 0 (the baselines); the search iterations are 1..N.
  expect(state.seen[0]).toEqual({ hook: "init", iteration: 0 });
  expect(state.seen.filter((s) => s.hook === "filter")[0]?.iteration).toBe(1);
  expect(state.observed.map((o) => o.iteration)).toEqual([1, 2, 3, 4]);
  // In observe, the incumbent and the history are still as before the observed trial.
  for (const o of state.observed) {
    expect(o.historyHasTrial).toBe(false);
    expect(o.allActiveSet).toBe(true);
  }
  const kept = state.observed.filter((o) => o.kept);
  expect(kept.length).toBeGreaterThan(0);
  for (const o of kept) expect(o.trialIsIncumbent).toBe(false);
  // ctx.acceptance is the rule the run applied, with the σ it measured.
  const noise = JSON.parse(store.getMeta("noise") ?? "null") as { sigma: number };
  for (const o of state.observed) {
    expect(o).toMatchObject({ rule: "noise-aware", k: 2, sigma: noise.sigma });
    expect(o.threshold).toBeCloseTo(2 * noise.sigma, 12);
  }
  store.close();

  // 1 init + 4 filters + 4 observes ran, none of which changed anything: fired, never acted.
  const status = formatReport(summary.report);
  expect(status).not.toMatch(/NEVER FIRED/);
  expect(status).toMatch(/fired 9×, never acted/);
  expect(summary.report.mechanisms.find((m) => m.name === "recorder")).toMatchObject({ fired: 9, acted: 0 });
});
