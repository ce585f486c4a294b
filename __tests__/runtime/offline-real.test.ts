// [slow: ~40 s] An offline bilevel run end to end on the REAL CPU trainer and the real corpus:
// baselines, a trial per iteration, Level 1.5 and a Level 2 activation, all stored.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { RunStore } from "../../runtime/store.ts";
import { executeRun } from "../../runtime/wiring.ts";
import { testConfig } from "../support/run-config.ts";

test("[slow] offline run on the real CPU trainer", async () => {
  const dir = mkdtempSync(path.join(tmpdir(), "bilevel-offline-real-"));
  const summary = await executeRun({
    dir,
    config: testConfig({
      name: "offline-real",
      iterations: 2,
      budgetSeconds: 3,
      device: "cpu",
      trainer: { kind: "python" },
      acceptance: { mode: "strict" },
      level15: { every: 1, minActive: 6 },
      level2: { everyCycles: 1, retireWindow: 0 },
      activeParams: [
        "MATRIX_LR",
        "EMBEDDING_LR",
        "UNEMBEDDING_LR",
        "WARMDOWN_RATIO",
        "WEIGHT_DECAY",
        "ADAM_BETA1",
      ],
    }),
    offline: true,
    observer: {},
  });
  expect(summary.stopped).toBe(false);
  const store = RunStore.open(dir, { readOnly: true });
  const trials = store.trials();
  // strict mode: one baseline, then one trial per iteration, each from the real trainer.
  expect(trials.map((t) => t.kind)).toEqual(["baseline", "search", "search"]);
  for (const t of trials) {
    expect(t.status).toBe("ok");
    expect(t.valBpb).toBeGreaterThan(0.5);
    expect(t.valBpb).toBeLessThan(8.5); // below a uniform byte model (8 bits): it trained
    expect(t.result).toMatchObject({ device: "cpu" });
  }
  expect(store.searchConfigs().filter((c) => c.source === "rules")).toHaveLength(2);
  expect(
    store.mechanisms().filter((m) => m.origin === "library" && m.status === "active").length,
  ).toBeGreaterThan(0);
  store.close();
}, 180_000);
