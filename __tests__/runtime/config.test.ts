import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import {
  ConfigError,
  configDiff,
  DEFAULT_RUN_CONFIG,
  loadRunConfig,
  RUN_CONFIG_SCHEMA,
  resolveRunConfig,
  sandboxPolicy,
} from "../../runtime/config.ts";
import { DEFAULT_POLICY } from "../../sandbox/index.ts";
import { defaultConfig, loadSearchSpace } from "../../trainer/search-space.ts";
import { testConfig } from "../support/run-config.ts";

/** {startConfig: {a: {a: ...}}}, `depth` levels under startConfig. */
function deep(depth: number): unknown {
  const root: Record<string, unknown> = {};
  let node = root;
  for (let i = 0; i < depth; i++) {
    const next: Record<string, unknown> = {};
    node.a = next;
    node = next;
  }
  return { startConfig: root };
}

const tmp = mkdtempSync(path.join(tmpdir(), "bilevel-config-"));
function file(name: string, text: string): string {
  const p = path.join(tmp, name);
  mkdirSync(path.dirname(p), { recursive: true });
  writeFileSync(p, text);
  return p;
}

test("an empty object takes every default, resolved: cpu, the CPU search space and start config", () => {
  const c = testConfig({});
  const { device, searchSpace, startConfig, program, ...rest } = c;
  const { device: _d, startConfig: _s, ...defaults } = DEFAULT_RUN_CONFIG;
  expect(rest).toEqual(defaults);
  expect(program).toBeNull();
  expect(device).toBe("cpu");
  expect(searchSpace).toEqual(loadSearchSpace("cpu"));
  expect(startConfig).toEqual(defaultConfig("cpu"));
});

test("a cuda run starts from the GPU defaults (explicitly, or auto when the trainer's Python sees a GPU)", () => {
  const explicit = testConfig({ device: "cuda" });
  expect(explicit.device).toBe("cuda");
  expect(explicit.startConfig).toEqual(defaultConfig("cuda"));
  expect(explicit.startConfig.DEPTH).toBe(8);
  expect(explicit.searchSpace.find((p) => p.name === "SEQ_LEN")?.default).toBe(2048);
  const auto = resolveRunConfig({}, { baseDir: tmp, label: "t" }, { probeCuda: () => true });
  expect(auto.device).toBe("cuda");
  expect(auto.startConfig).toEqual(defaultConfig("cuda"));
  // startConfig overrides apply over the device's defaults.
  expect(testConfig({ device: "cuda", startConfig: { DEPTH: 4 } }).startConfig).toEqual({
    ...defaultConfig("cuda"),
    DEPTH: 4,
  });
  // The synthetic objective has no device: auto never asks.
  const synthetic = resolveRunConfig(
    { trainer: { kind: "synthetic", delayMs: 0, noise: 0 } },
    { baseDir: tmp, label: "t" },
    {
      probeCuda: () => {
        throw new Error("asked");
      },
    },
  );
  expect(synthetic.device).toBe("cpu");
});

test("nested fields merge over the defaults; a trainer of another kind replaces the default whole", () => {
  const c = testConfig({
    acceptance: { k: 2 },
    trainer: { kind: "synthetic", delayMs: 0, noise: 0.01 },
  });
  expect(c.acceptance).toEqual({ ...DEFAULT_RUN_CONFIG.acceptance, k: 2 });
  expect(c.trainer).toEqual({ kind: "synthetic", delayMs: 0, noise: 0.01 });
});

test("one sandbox policy: the run's defaults are the sandbox's defaults", () => {
  expect(sandboxPolicy(testConfig({}).policy)).toEqual({
    ...DEFAULT_POLICY,
    grantedCapabilities: [...DEFAULT_POLICY.grantedCapabilities],
  });
  expect(sandboxPolicy(testConfig({ policy: { isolateMemoryMb: 32 } }).policy).isolateMemoryMb).toBe(32);
});

test.each([
  [{ iterations: 0 }, /iterations: must be >= 1/],
  [{ parallel: 0 }, /parallel: must be >= 1/],
  [{ parallel: "2" }, /parallel: must be integer/],
  [{ parallel: 1.5 }, /parallel: must be integer/],
  [
    { executor: { kind: "pbs" } },
    /^invalid run config \(test config\):\nexecutor\.kind: must be one of \["local","slurm"\]$/,
  ],
  [{ executor: "slurm" }, /executor\.kind: must be one of \["local","slurm"\]/],
  [
    { executor: { kind: "slurm", partiton: "gpu" } },
    /^invalid run config \(test config\):\nexecutor\.partiton: unknown field \(did you mean partition\?\)$/,
  ],
  [
    { executor: { kind: "slurm", partition: "" } },
    /executor\.partition: must NOT have fewer than 1 characters/,
  ],
  [{ iterations: "10" }, /iterations: must be integer/],
  [{ acceptance: { mode: "lenient" } }, /acceptance\.mode: must be one of \["noise-aware","strict"\]/],
  [
    { policy: { grantedCapabilities: ["tabu", "network"] } },
    /policy\.grantedCapabilities\.1: must be one of/,
  ],
  [
    { policy: { capabilities: ["tabu"] } },
    /policy\.capabilities: unknown field \(renamed to policy\.grantedCapabilities\)/,
  ],
  [{ bogus: true }, /bogus: unknown field$/],
  [{ itrations: 3 }, /^itrations: unknown field \(did you mean iterations\?\)$/m],
  [{ BudgetSecond: 3 }, /^BudgetSecond: unknown field \(did you mean budgetSeconds\?\)$/m],
  [{ level15: { evry: 3 } }, /level15\.evry: unknown field \(did you mean every\?\)/],
  [
    { trainer: { kind: "synthetic", delayMs: 0, noise: 0, nosie: 1 } },
    /trainer\.nosie: unknown field \(did you mean noise\?\)/,
  ],
  [{ llm: { baseURL: "ftp://x" } }, /llm\.baseURL: must match pattern/],
  [{ trainer: { kind: "external" } }, /trainer: must have required property 'script' \(kind external\)/],
  [
    { trainer: { kind: "synthetic" } },
    /^invalid run config \(test config\):\ntrainer: must have required property 'delayMs' \(kind synthetic\)\ntrainer: must have required property 'noise' \(kind synthetic\)$/,
  ],
  [
    { trainer: { kind: "pyth" } },
    /trainer\.kind: must be one of \["python","external","synthetic","surrogate"\]/,
  ],
  [{ trainer: { kind: "python", env: ["OK_NAME", "bad name"] } }, /trainer\.env\.1: must match pattern/],
  [deep(100), /startConfig(\.a)+: nested deeper than 64 levels/],
  [
    { llm: { structuredOutput: "xml" } },
    /llm\.structuredOutput: must be one of \["auto","json_schema","json_object","tools","text"\]/,
  ],
  [{ llm: { temperature: "hot" } }, /llm\.temperature: must be number,null/],
  [{ llm: { temperature: 3 } }, /llm\.temperature: must be <= 2/],
  [{ llm: { maxTokensPerRun: 0 } }, /llm\.maxTokensPerRun/],
  [{ llm: { maxTokensPerRun: "lots" } }, /llm\.maxTokensPerRun/],
  [{ llm: { onBudgetExhausted: "panic" } }, /llm\.onBudgetExhausted: must be one of \["offline","stop"\]/],
  [{ llm: { maxConsecutiveFailures: -1 } }, /llm\.maxConsecutiveFailures: must be >= 0/],
  [{ llm: { maxOutageMs: -1 } }, /llm\.maxOutageMs: must be >= 0/],
  [{ llm: { maxOutageMs: "forever" } }, /llm\.maxOutageMs: must be integer/],
  [{ llm: { maxOutageMs: 86_400_001 } }, /llm\.maxOutageMs: must be <= 86400000/],
  [{ llm: { maxTokensCap: 0 } }, /llm\.maxTokensCap: must be >= 1/],
  [{ llm: { retryBaseMs: 1.5 } }, /llm\.retryBaseMs: must be integer/],
  [{ llm: { maxRetryWaitMs: -1 } }, /llm\.maxRetryWaitMs: must be >= 0/],
  [{ budgetSeconds: -5 }, /budgetSeconds: must be > 0/],
  [{ name: "../escape" }, /name: must match pattern/],
  [{ startConfig: { DEPTH: 99 } }, /startConfig\.DEPTH: DEPTH must be in \[1, 24\], got 99/],
  [{ startConfig: { NOPE: 1 } }, /startConfig\.NOPE: unknown parameter/],
  [{ activeParams: ["DEPTH", "NOPE"] }, /activeParams: unknown parameter "NOPE"/],
  [JSON.parse('{"__proto__": {"iterations": 1}}'), /__proto__: a prototype key is not allowed/],
  [JSON.parse('{"startConfig": {"__proto__": 1}}'), /startConfig\.__proto__: a prototype key/],
  [JSON.parse('{"llm": {"constructor": {}}}'), /llm\.constructor: a prototype key/],
])("garbage %j is a ConfigError naming the field", (partial, message) => {
  expect(() => testConfig(partial)).toThrow(ConfigError);
  expect(() => testConfig(partial)).toThrow(message);
});

test("non-object configs are rejected", () => {
  for (const bad of [null, 3, "x", [1, 2]]) expect(() => testConfig(bad)).toThrow(/must be a JSON object/);
});

test("config files: missing, not JSON, valid; paths in them resolve against the file's folder", () => {
  expect(() => loadRunConfig(path.join(tmp, "nope.json"))).toThrow(
    `no such file: ${path.join(tmp, "nope.json")}`,
  );
  expect(() => loadRunConfig(tmp)).toThrow(`config ${tmp} is a folder, not a file`);
  // Type and unknown-key errors name the file like the others.
  const typo = file("typo.json", JSON.stringify({ itrations: 3, seed: "x" }));
  expect(() => loadRunConfig(typo)).toThrow(
    `invalid run config (${typo}):\nitrations: unknown field (did you mean iterations?)\nseed: must be integer`,
  );
  expect(() => loadRunConfig(file("bad.json", "{ iterations: 3"))).toThrow(/is not valid JSON/);
  file("proj/mech/m.ts", "export default {};\n");
  mkdirSync(path.join(tmp, "proj/data"), { recursive: true });
  file("proj/train.py", "DEPTH = 2\n");
  const cfg = file(
    "proj/run.json",
    JSON.stringify({
      iterations: 7,
      $schema: "./schema.json",
      mechanisms: ["mech/m.ts"],
      dataDir: "data",
      device: "cpu",
      trainer: { kind: "external", script: "train.py" },
      activeParams: ["DEPTH"],
    }),
  );
  const c = loadRunConfig(cfg, { overrides: { seed: 9 } });
  expect(c.iterations).toBe(7);
  expect(c.seed).toBe(9);
  expect(c.mechanisms).toEqual([path.join(tmp, "proj/mech/m.ts")]);
  expect(c.dataDir).toBe(path.join(tmp, "proj/data"));
  // Not in a git repository: git is off; no program.md next to the script: no brief.
  expect(c.trainer).toEqual({ kind: "external", script: path.join(tmp, "proj/train.py"), git: false });
  expect(c.program).toBeNull();
});

test("inputs are checked before anything runs: missing, a folder, too large", () => {
  const big = file("big.ts", "x".repeat(600 * 1024));
  const binary = path.join(tmp, "binary.ts");
  writeFileSync(binary, Buffer.from([0x66, 0xff, 0xfe, 0x00, 0x80]));
  const cases: [unknown, RegExp][] = [
    [{ mechanisms: ["missing.ts"] }, /mechanisms\[0\]: .*missing\.ts does not exist/],
    [{ mechanisms: ["."] }, /mechanisms\[0\]: .* is not a file/],
    [{ mechanisms: [big] }, /mechanisms\[0\]: .*big\.ts is 614400 bytes \(at most 524288\)/],
    [{ mechanisms: [binary] }, /mechanisms\[0\]: .*binary\.ts is not UTF-8 text/],
    [{ dataDir: "nowhere" }, /dataDir: .*nowhere does not exist/],
    [
      { trainer: { kind: "external", script: "none.py" }, activeParams: ["DEPTH"] },
      /trainer\.script: .* does not exist/,
    ],
  ];
  for (const [partial, message] of cases) expect(() => testConfig(partial, tmp)).toThrow(message);
});

test("configDiff names the changed leaves", () => {
  const a = testConfig({});
  const b = testConfig({ acceptance: { k: 2 }, llm: { model: "x" }, device: "cuda" });
  expect(configDiff(a, b).sort()).toEqual(
    ["acceptance.k", "device", "llm.model", "searchSpace", "startConfig.DEPTH"]
      .concat(
        configDiff(a.startConfig, b.startConfig)
          .filter((k) => k !== "DEPTH")
          .map((k) => `startConfig.${k}`),
      )
      .sort(),
  );
});

test("the published schema file is the one the code validates with", () => {
  const published = JSON.parse(
    readFileSync(path.resolve(import.meta.dirname, "../../runtime/run-config.schema.json"), "utf8"),
  );
  expect(published).toEqual(JSON.parse(JSON.stringify(RUN_CONFIG_SCHEMA)));
});
