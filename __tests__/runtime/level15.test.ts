import type { ParamSpec } from "../../mechanism-api/index.d.ts";
import { DEFAULT_RUN_CONFIG } from "../../runtime/config.ts";
import { enforceCaps, paramStats, ruleBasedStrategy } from "../../runtime/level15/strategy.ts";
import type { TrialRow } from "../../runtime/store.ts";

const params: ParamSpec[] = ["A", "B", "C", "D", "E", "F"].map((name) => ({
  name,
  kind: "float",
  min: 0,
  max: 1,
  default: 0.5,
  description: name,
}));
const caps = { ...DEFAULT_RUN_CONFIG.level15, maxFreezesPerCycle: 2, minActive: 4, freezeAfterTries: 2 };

function trial(iteration: number, param: string, kept: boolean, delta: number): TrialRow {
  return {
    id: iteration,
    iteration,
    kind: "search",
    proposalId: null,
    seed: 1,
    config: {},
    changes: [{ param, value: 0.1 }],
    status: "ok",
    valBpb: 2 + delta,
    kept,
    delta,
    result: null,
    message: "",
    durationMs: 1,
    description: "",
  };
}

test("rules freeze parameters tried often without a gain, within the caps", () => {
  const trials = [
    trial(1, "A", false, 0.05),
    trial(2, "A", false, 0.04),
    trial(3, "B", false, 0.01),
    trial(4, "B", false, 0.02),
    trial(5, "C", false, 0.03),
    trial(6, "C", false, 0.09),
  ];
  const stats = paramStats(params, trials);
  expect(stats.find((s) => s.param === "A")).toMatchObject({ tried: 2, kept: 0 });
  const current = {
    strategy: "balanced" as const,
    active: params.map((p) => p.name),
    frozen: [],
    guidance: "",
  };
  const request = ruleBasedStrategy(current, stats, 0, caps);
  expect(request.strategy).toBe("explore");
  expect(request.freeze[0]).toBe("C"); // worst mean effect first
  const { config, notes } = enforceCaps(current, request, params, caps);
  expect(config.frozen).toHaveLength(2);
  expect(config.active).toHaveLength(4);
  expect(notes.join(" ")).toMatch(/at most 2 per cycle/);
});

test("caps keep a floor of active parameters and ignore unknown names", () => {
  const current = {
    strategy: "balanced" as const,
    active: ["A", "B", "C", "D"],
    frozen: ["E", "F"],
    guidance: "",
  };
  const { config, notes } = enforceCaps(
    current,
    { strategy: "exploit", freeze: ["A", "NOPE"], unfreeze: [], guidance: " g ", rationale: "" },
    params,
    caps,
  );
  expect(config.active).toEqual(["A", "B", "C", "D"]);
  expect(config.guidance).toBe("g");
  expect(notes.join(" ")).toMatch(/unknown parameter NOPE/);
  expect(notes.join(" ")).toMatch(/at least 4 parameters stay active/);
});

test("a kept trial this cycle unfreezes everything and switches to exploit", () => {
  const current = {
    strategy: "explore" as const,
    active: ["A", "B", "C", "D"],
    frozen: ["E", "F"],
    guidance: "",
  };
  const request = ruleBasedStrategy(current, paramStats(params, []), 1, caps);
  expect(request.unfreeze).toEqual(["E", "F"]);
  expect(enforceCaps(current, request, params, caps).config.frozen).toEqual([]);
});
