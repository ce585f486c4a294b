import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { ConfigError, DEFAULT_RUN_CONFIG, loadRunConfig, resolveRunConfig } from "../../runtime/config.ts";

const tmp = mkdtempSync(path.join(tmpdir(), "bilevel-config-"));
function file(name: string, text: string): string {
  const p = path.join(tmp, name);
  writeFileSync(p, text);
  return p;
}

test("an empty object takes every default", () => {
  expect(resolveRunConfig({})).toEqual(DEFAULT_RUN_CONFIG);
});

test("nested fields merge over the defaults; a trainer of another kind replaces the default whole", () => {
  const c = resolveRunConfig({
    acceptance: { k: 2 },
    trainer: { kind: "synthetic", delayMs: 0, noise: 0.01 },
  });
  expect(c.acceptance).toEqual({ ...DEFAULT_RUN_CONFIG.acceptance, k: 2 });
  expect(c.trainer).toEqual({ kind: "synthetic", delayMs: 0, noise: 0.01 });
});

test.each([
  [{ iterations: 0 }, /iterations: must be >= 1/],
  [{ iterations: "10" }, /iterations: must be integer/],
  [{ acceptance: { mode: "lenient" } }, /acceptance\.mode: must be one of \["noise-aware","strict"\]/],
  [{ policy: { capabilities: ["tabu", "network"] } }, /policy\.capabilities\.1: must be one of/],
  [{ bogus: true }, /bogus: unknown field/],
  [{ level15: { evry: 3 } }, /level15\.evry: unknown field/],
  [{ llm: { baseURL: "ftp://x" } }, /llm\.baseURL: must match pattern/],
  [{ trainer: { kind: "external" } }, /trainer/],
  [{ budgetSeconds: -5 }, /budgetSeconds: must be > 0/],
])("garbage %j is a ConfigError naming the field", (partial, message) => {
  expect(() => resolveRunConfig(partial)).toThrow(ConfigError);
  expect(() => resolveRunConfig(partial)).toThrow(message);
});

test("non-object configs are rejected", () => {
  for (const bad of [null, 3, "x", [1, 2]])
    expect(() => resolveRunConfig(bad)).toThrow(/must be a JSON object/);
});

test("config files: missing, not JSON, and valid", () => {
  expect(() => loadRunConfig(path.join(tmp, "nope.json"))).toThrow(/cannot read config .*ENOENT/);
  expect(() => loadRunConfig(file("bad.json", "{ iterations: 3"))).toThrow(/is not valid JSON/);
  const c = loadRunConfig(file("ok.json", JSON.stringify({ iterations: 7, $schema: "./schema.json" })), {
    seed: 9,
  });
  expect(c.iterations).toBe(7);
  expect(c.seed).toBe(9);
});

test("the published schema file is the one the code validates with", async () => {
  const { RUN_CONFIG_SCHEMA } = await import("../../runtime/config.ts");
  const published = JSON.parse(
    (await import("node:fs")).readFileSync(
      path.resolve(import.meta.dirname, "../../runtime/run-config.schema.json"),
      "utf8",
    ),
  );
  expect(published).toEqual(JSON.parse(JSON.stringify(RUN_CONFIG_SCHEMA)));
});
