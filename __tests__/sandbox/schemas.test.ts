import * as contract from "../../mechanism-api/schemas.ts";
import { capabilityArgumentSchemas } from "../../sandbox/capabilities/schemas.ts";
import { defaultPolicy } from "../../sandbox/policy.ts";
import { isRequest, isResponse, LineReader } from "../../sandbox/protocol.ts";
import * as host from "../../sandbox/schemas.ts";
import { jsonDepth, validator } from "../../sandbox/validation.ts";

const schemas = { ...contract, ...host };

const config = { LR: 0.1, WIN: "L" };
const proposal = { changes: [{ param: "LR", value: 0.1 }], rationale: "r", source: "llm", config };
const trial = {
  id: 1,
  iteration: 0,
  config,
  changes: [],
  status: "ok",
  valBpb: 1.2,
  kept: true,
  delta: null,
};
const param = { name: "LR", kind: "float", min: 0, max: 1, default: 0.5, description: "d" };
const context = {
  iteration: 1,
  params: [param],
  incumbent: { config, valBpb: null },
  best: null,
  history: [trial],
  acceptance: { rule: "noise-aware", k: 1, sigma: 0.002, threshold: 0.002 },
  seed: 7,
};
const manifest = { name: "tabu-search", version: 1, hooks: ["filter"], capabilities: ["tabu"] };
const call = {
  mechanismId: "m",
  hook: "filter",
  context,
  state: {},
  capabilities: { tabu: {}, bandit: {} },
  argument: proposal,
};

const cases: [string, object, unknown, unknown[]][] = [
  [
    "config",
    schemas.configSchema,
    config,
    [{ LR: { x: 1 } }, { LR: true }, { "": 1 }, [1], { LR: "x".repeat(201) }],
  ],
  [
    "paramSpec",
    schemas.paramSpecSchema,
    param,
    [{ ...param, kind: "real" }, { ...param, extra: 1 }, { name: "x" }],
  ],
  [
    "proposal",
    schemas.proposalSchema,
    proposal,
    [
      { ...proposal, source: "me" },
      { ...proposal, changes: [{ param: "LR" }] },
    ],
  ],
  [
    "trial",
    schemas.trialSchema,
    trial,
    [
      { ...trial, status: "great" },
      { ...trial, valBpb: "1.2" },
      { ...trial, id: 1.5 },
    ],
  ],
  [
    "filterVerdict",
    schemas.filterVerdictSchema,
    { verdict: "modify", changes: [{ param: "LR", value: 1 }], reason: "r" },
    [
      { verdict: "reject" },
      { verdict: "accept", reason: 1 },
      { verdict: "modify", changes: [], reason: "r" },
      { verdict: "maybe" },
      "accept",
    ],
  ],
  [
    "suggestion",
    schemas.suggestionSchema,
    { changes: [{ param: "LR", value: 1 }], rationale: "r" },
    [{ changes: [], rationale: "r" }, { changes: [{ param: "LR", value: 1 }] }],
  ],
  ["guideText", schemas.guideTextSchema, null, [42, "x".repeat(4001), {}]],
  [
    "manifest",
    schemas.manifestSchema,
    manifest,
    [
      { ...manifest, name: "Not Kebab" },
      { ...manifest, version: 0 },
      { ...manifest, version: 1.5 },
      { ...manifest, hooks: [] },
      { ...manifest, hooks: ["filter", "filter"] },
      { ...manifest, hooks: ["launch"] },
      { ...manifest, capabilities: ["network"] },
      { ...manifest, extra: true },
    ],
  ],
  [
    "capabilityState",
    schemas.capabilityStateSchema,
    { tabu: { l: [{ config, expires: 3 }] }, bandit: { b: { a: { pulls: 1, rewardSum: 0.5 } } } },
    [
      { tabu: {} },
      { tabu: { l: [{ config }] }, bandit: {} },
      { tabu: {}, bandit: { b: { a: { pulls: -1, rewardSum: 0 } } } },
    ],
  ],
  [
    "hookContextData",
    schemas.hookContextDataSchema,
    context,
    [
      { ...context, iteration: -1 },
      { ...context, seed: "7" },
      { ...context, best: {} },
    ],
  ],
  [
    "hookCall",
    schemas.hookCallSchema,
    call,
    [
      { ...call, hook: "launch" },
      { ...call, argument: { x: 1 } },
      { ...call, capabilities: {} },
    ],
  ],
  [
    "sandboxError",
    schemas.sandboxErrorSchema,
    { stage: "lint", code: "forbidden-syntax", message: "m", line: 1, column: 2 },
    [
      { stage: "lint", code: "oops", message: "m" },
      { stage: "lint", code: "thrown", message: "m", line: 0 },
    ],
  ],
  [
    "compiledMechanism",
    schemas.compiledMechanismSchema,
    { manifest, source: "s", js: "j", sourceHash: "a".repeat(64), jsHash: "b".repeat(64) },
    [{ manifest, source: "s", js: "j", sourceHash: "xyz", jsHash: "b".repeat(64) }],
  ],
];

describe("mechanism-api schemas reject bad input", () => {
  test.each(cases)("%s", (_name, schema, good, bad) => {
    const check = validator(schema);
    expect(check(good)).toBe(true);
    for (const value of bad) {
      expect(check(value)).toBe(false);
      expect(check.explain().length).toBeGreaterThan(3);
    }
  });
  test("no coercion: numeric strings are not numbers", () => {
    expect(validator(schemas.trialSchema)({ ...trial, iteration: "0" })).toBe(false);
  });
  test("capability argument schemas accept the documented shapes only", () => {
    const add = validator(capabilityArgumentSchemas["tabu.add"]);
    expect(add(["l", config, 3])).toBe(true);
    expect(add(["l", config])).toBe(false);
    expect(add(["l", config, 0])).toBe(false);
    const select = validator(capabilityArgumentSchemas["bandit.select"]);
    expect(select(["b", "ucb1"])).toBe(true);
    expect(select(["b", "ucb1", { c: 2 }])).toBe(true);
    expect(select(["b", "softmax"])).toBe(false);
    expect(select(["b", "ucb1", { temperature: 2 }])).toBe(false);
  });
});

describe("policy", () => {
  test("defaults are valid and overrides apply", () => {
    const p = defaultPolicy({ hookTimeoutMs: 50, grantedCapabilities: ["space"] });
    expect(p.hookTimeoutMs).toBe(50);
    expect(p.grantedCapabilities).toEqual(["space"]);
    expect(Object.isFrozen(p)).toBe(true);
  });
  test("capability data has its own size cap, well under the 32 MiB protocol line", () => {
    expect(defaultPolicy().maxCapabilityStateBytes).toBe(512 * 1024);
    expect(defaultPolicy({ maxCapabilityStateBytes: 4096 }).maxCapabilityStateBytes).toBe(4096);
  });
  test.each([
    [{ hookTimeoutMs: 0 }],
    [{ hookTimeoutMs: 1.5 }],
    [{ isolateMemoryMb: 4 }],
    [{ grantedCapabilities: ["network"] }],
    [{ maxJsonBytes: "big" }],
    [{ maxCapabilityStateBytes: 64 * 1024 * 1024 }],
    [{ maxCapabilityStateBytes: 0 }],
    [{ unknown: 1 }],
  ])("bad overrides throw: %j", (overrides) => {
    expect(() => defaultPolicy(overrides as never)).toThrow(/invalid sandbox policy/);
  });
});

describe("protocol", () => {
  test("requests and responses are validated strictly", () => {
    expect(isRequest({ id: 1, op: "unload", mechanismId: "m" })).toBe(true);
    expect(isRequest({ id: 1, op: "unload", mechanismId: "m", extra: 1 })).toBe(false);
    expect(isRequest({ id: 1, op: "shutdown" })).toBe(false);
    expect(isRequest({ id: -1, op: "unload", mechanismId: "m" })).toBe(false);
    expect(isRequest({ id: 1, op: "call", mechanismId: "m", hook: "filter" })).toBe(false);
    expect(isResponse({ id: 0, op: "ready" })).toBe(true);
    expect(isResponse({ id: 3, op: "load", error: null })).toBe(true);
    expect(
      isResponse({
        id: 3,
        op: "load",
        error: { stage: "load", code: "thrown", message: "x", stack: "/host" },
      }),
    ).toBe(false);
    expect(
      isResponse({
        id: 3,
        op: "call",
        outcome: { ok: true, result: { hook: "filter", value: { verdict: "accept" } } },
      }),
    ).toBe(false);
  });
  test("the line reader splits lines and refuses oversized ones", () => {
    const lines: string[] = [];
    let overflowed = 0;
    const reader = new LineReader(
      10,
      (l) => lines.push(l),
      () => overflowed++,
    );
    reader.push("ab\ncd");
    reader.push("e\n\nfg\n");
    expect(lines).toEqual(["ab", "cde", "fg"]);
    reader.push("x".repeat(11));
    expect(overflowed).toBe(1);
    reader.push("more\n");
    expect(lines).toHaveLength(3);
  });
  test("jsonDepth measures nesting without recursion", () => {
    expect(jsonDepth(1, 10)).toBe(0);
    expect(jsonDepth({ a: [1, { b: 2 }] }, 10)).toBe(3);
    let deep: unknown = 0;
    for (let i = 0; i < 100000; i++) deep = [deep];
    expect(jsonDepth(deep, 64)).toBeGreaterThan(64);
  });
});
