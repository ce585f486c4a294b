import { readFileSync } from "node:fs";
import path from "node:path";
import type { Config, ParamSpec } from "../../mechanism-api/index.d.ts";
import { fromUnit, toUnit } from "../../runtime/param-scale.ts";
import { SYNTHETIC_OPTIMUM, syntheticObjective } from "../../runtime/synthetic-objective.ts";

const params: ParamSpec[] = JSON.parse(
  readFileSync(path.resolve(import.meta.dirname, "../../trainer/search-space.json"), "utf8"),
).params;
const defaults: Config = Object.fromEntries(params.map((p) => [p.name, p.default]));

describe("syntheticObjective", () => {
  it("has its minimum at the known optimum, away from the defaults, in a val_bpb-like range", () => {
    const atOpt = syntheticObjective(params, SYNTHETIC_OPTIMUM);
    const atDefaults = syntheticObjective(params, defaults);
    expect(atOpt.status).toBe("ok");
    expect(atDefaults.status).toBe("ok");
    expect(atOpt.valBpb).toBeCloseTo(1.5, 6);
    expect(atDefaults.valBpb as number).toBeGreaterThan(2);
    expect(atDefaults.valBpb as number).toBeLessThan(3);
    const differing = params.filter((p) => SYNTHETIC_OPTIMUM[p.name] !== p.default);
    expect(differing.length).toBeGreaterThanOrEqual(12);
  });

  it("is worse when any single parameter moves off the optimum", () => {
    for (const p of params) {
      if (p.kind === "choice") continue;
      const u = toUnit(p, SYNTHETIC_OPTIMUM[p.name] as number);
      const off = fromUnit(p, u > 0.5 ? u - 0.3 : u + 0.3);
      const r = syntheticObjective(params, { ...SYNTHETIC_OPTIMUM, [p.name]: off });
      if (r.status === "ok") expect(r.valBpb as number).toBeGreaterThan(1.5);
    }
  });

  it("stays inside [1.5, 3.1] over random valid configs and is deterministic", () => {
    let seed = 1;
    const rand = () => {
      seed = (seed * 16807) % 2147483647;
      return seed / 2147483647;
    };
    for (let i = 0; i < 500; i++) {
      const config = Object.fromEntries(params.map((p) => [p.name, fromUnit(p, rand())]));
      const a = syntheticObjective(params, config);
      expect(syntheticObjective(params, config)).toEqual(a);
      if (a.status === "ok") {
        expect(a.valBpb as number).toBeGreaterThanOrEqual(1.5);
        expect(a.valBpb as number).toBeLessThanOrEqual(3.1);
      } else {
        expect(["diverged", "oom"]).toContain(a.status);
        expect(a.valBpb).toBeNull();
      }
    }
  });

  it("has interactions: the best MATRIX_LR depends on TOTAL_BATCH_SIZE", () => {
    const bestLr = (batch: number) => {
      const lr = params.find((p) => p.name === "MATRIX_LR") as ParamSpec;
      let best = { u: 0, v: Number.POSITIVE_INFINITY };
      for (let u = 0; u <= 0.8; u += 0.01) {
        const r = syntheticObjective(params, {
          ...SYNTHETIC_OPTIMUM,
          TOTAL_BATCH_SIZE: batch,
          MATRIX_LR: fromUnit(lr, u),
        });
        if (r.valBpb !== null && r.valBpb < best.v) best = { u, v: r.valBpb };
      }
      return best.u;
    };
    expect(bestLr(32768)).toBeGreaterThan(bestLr(1024));
  });

  it("fails like a trainer: divergence, out of memory, invalid configs", () => {
    // Values relative to the declared ranges, so the test follows the trainer's search space.
    const at = (name: string, u: number) => fromUnit(params.find((p) => p.name === name) as ParamSpec, u);
    expect(syntheticObjective(params, { ...defaults, MATRIX_LR: at("MATRIX_LR", 0.85) }).status).toBe(
      "diverged",
    );
    // Warmup makes the same LR survivable.
    expect(
      syntheticObjective(params, {
        ...defaults,
        MATRIX_LR: at("MATRIX_LR", 0.85),
        WARMUP_RATIO: at("WARMUP_RATIO", 1),
      }).status,
    ).toBe("ok");
    expect(syntheticObjective(params, { ...defaults, EMBEDDING_LR: at("EMBEDDING_LR", 0.95) }).status).toBe(
      "diverged",
    );
    const oom = syntheticObjective(params, {
      ...defaults,
      DEVICE_BATCH_SIZE: at("DEVICE_BATCH_SIZE", 1),
      SEQ_LEN: at("SEQ_LEN", 1),
      DEPTH: 8,
    });
    expect(oom).toEqual({ status: "oom", valBpb: null, message: expect.stringMatching(/out of memory/) });
    for (const bad of [
      { HEAD_DIM: 48 },
      { DEPTH: 2.5 },
      { DEPTH: 0 },
      { MATRIX_LR: "fast" },
      { MATRIX_LR: Number.NaN },
      { BOGUS: 1 },
    ] as unknown as Config[]) {
      const r = syntheticObjective(params, { ...defaults, ...bad });
      expect(r.status).toBe("invalid-config");
      expect(r.valBpb).toBeNull();
      expect(r.message.length).toBeGreaterThan(0);
    }
  });

  it("adds seeded noise: same draw same value, different draws differ, mean near the noiseless value", () => {
    const clean = syntheticObjective(params, defaults).valBpb as number;
    const noisy = (draw: number) =>
      syntheticObjective(params, defaults, { noiseSigma: 0.01, noiseSeed: 3, draw }).valBpb as number;
    expect(noisy(1)).toBe(noisy(1));
    expect(noisy(1)).not.toBe(noisy(2));
    const xs = Array.from({ length: 400 }, (_, i) => noisy(i));
    const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
    expect(Math.abs(mean - clean)).toBeLessThan(0.003);
  });
});
