// `mechanism check --scenario`: a branch that throws only in a situation the synthetic dry run does
// not produce is caught at check, in the scenario that produces it, at the mechanism's own line.
// Real compiler, real isolates, the run's default search space.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { mechanismCheckFiles } from "../../runtime/commands/mechanism.ts";
import { BUILT_IN_SCENARIOS } from "../../runtime/mechanism-scenarios.ts";
import { Sandbox } from "../../sandbox/index.ts";

let dir: string;
let sandbox: Sandbox;

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), "bilevel-scenario-"));
  sandbox = await Sandbox.start({}, { preloadCompiler: true });
});
afterAll(async () => {
  await sandbox.close();
  rmSync(dir, { recursive: true, force: true });
});

async function check(files: string[], scenario?: string[], json = false, verbose = false) {
  let out = "";
  let err = "";
  const code = await mechanismCheckFiles(
    files,
    { json, verbose, ...(scenario ? { scenario } : {}) },
    {
      stdout: (t) => {
        out += t;
      },
      stderr: (t) => {
        err += t;
      },
    },
    sandbox,
  );
  return { code, out, err };
}

function write(name: string, content: string): string {
  const file = path.join(dir, name);
  writeFileSync(file, content);
  return file;
}

const HEAD = `import type { Mechanism } from "bilevel/mechanism-api";\n`;

/** A mechanism whose `bug` line (line 4 of the file) throws only in one situation. */
function mechanism(name: string, hooks: string, bug: string, rest = ""): string {
  return `${HEAD}export default {
  manifest: { name: "${name}", version: 1, hooks: [${hooks}], capabilities: [] },
  ${bug}
  ${rest}
} satisfies Mechanism;
`;
}

// Each scenario and a bug that only it reveals (the synthetic dry run passes every one of them).
const BUGS: Record<(typeof BUILT_IN_SCENARIOS)[number], [string, string, string]> = {
  "empty-history": [
    `"filter"`,
    `filter(p, ctx) { const last = ctx.history[ctx.history.length - 1]!; return last.id > 0 ? { verdict: "accept" } : { verdict: "accept" }; },`,
    "filter",
  ],
  "failed-trials": [
    `"observe"`,
    `observe(trial) { if (trial.status !== "ok" && trial.status !== "oom") throw new Error("unexpected " + trial.status); },`,
    "observe",
  ],
  frozen: [
    `"suggest"`,
    `suggest(ctx) { const free = ctx.params.filter((p) => !p.frozen && p.kind !== "choice"); return { changes: [{ param: free[1]!.name, value: free[1]!.default }], rationale: "x" }; },`,
    "suggest",
  ],
  "repeated-proposal": [
    `"init", "filter"`,
    `filter(p, ctx) { const key = JSON.stringify(p.config); if (ctx.state.keys.includes(key)) throw new Error("proposed twice"); ctx.state.keys = [...ctx.state.keys, key]; return { verdict: "accept" }; },`,
    "filter",
  ],
  restart: [
    `"guide"`,
    `guide(ctx) { const kept = [...ctx.history].reverse().find((t) => t.kept); if (kept && JSON.stringify(kept.config) !== JSON.stringify(ctx.incumbent.config)) throw new Error("the incumbent is not the last kept trial"); return undefined; },`,
    "guide",
  ],
  "full-window": [
    `"guide"`,
    `guide(ctx) { if (ctx.history.length === 0) return undefined; const t = ctx.history[ctx.iteration - 2]!; return String(t.id); },`,
    "guide",
  ],
};

test.each(BUILT_IN_SCENARIOS)(
  "a bug only %s reveals passes the dry run and is caught by its scenario, with its position",
  async (name) => {
    const [hooks, bug, hook] = BUGS[name];
    const rest = hooks.includes('"init"') ? "init: () => ({ keys: [] as string[] })," : "";
    const source = mechanism(`bug-${name}`, hooks, bug, rest).replace(
      "satisfies Mechanism;",
      hooks.includes('"init"') ? "satisfies Mechanism<{ keys: string[] }>;" : "satisfies Mechanism;",
    );
    const file = write(`${name}.ts`, source);
    const plain = await check([file]);
    expect(plain.err).toBe("");
    expect(plain.code).toBe(0);
    const r = await check([file], [name]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(
      new RegExp(`^${file.replaceAll(/[.*+?^${}()|[\]\\/]/g, "\\$&")}:4:\\d+: ${hook}/thrown: `),
    );
    expect(r.err).toMatch(new RegExp(`rejected in scenario ${name} \\(.+\\), iteration \\d+\\n$`));
  },
  60_000,
);

test("the examples pass every built-in scenario; the text lists each", async () => {
  const examples = path.resolve(import.meta.dirname, "../../examples/mechanisms");
  const files = ["tabu-search", "ucb-bandit", "orthogonal-doe", "stagnation-restart"].map((n) =>
    path.join(examples, `${n}.ts`),
  );
  const r = await check(files, ["all"]);
  expect(r.err).toBe("");
  expect(r.code).toBe(0);
  for (const name of BUILT_IN_SCENARIOS)
    expect(
      r.out.match(new RegExp(`  scenario ${name} +ok  \\d+ iterations?, \\d+ hook calls?`, "g")),
    ).toHaveLength(4);
}, 120_000);

test("a scenario file: frozen parameters and scripted trials; --json reports each scenario", async () => {
  const file = write(
    "frozen-depth.ts",
    mechanism(
      "frozen-depth",
      `"filter"`,
      `filter(p, ctx) { const depth = ctx.params.find((q) => q.name === "DEPTH")!; if (depth.frozen && ctx.history.some((t) => t.status === "diverged")) throw new Error("diverged while DEPTH frozen"); return { verdict: "accept" }; },`,
    ),
  );
  const scenario = write(
    "lr.json",
    JSON.stringify({
      name: "lr-blowup",
      frozen: ["DEPTH"],
      steps: [
        { changes: { MATRIX_LR: 0.05 }, valBpb: 2.45 },
        { changes: { MATRIX_LR: 0.2 }, status: "diverged" },
        { changes: { MATRIX_LR: 0.06 }, valBpb: 2.44 },
      ],
    }),
  );
  const r = await check([file], [scenario, "empty-history"], true);
  expect(r.code).toBe(1);
  const report = JSON.parse(r.out) as {
    ok: boolean;
    scenarios: { name: string; ok: boolean; iteration?: number; error?: { stage: string; line?: number } }[];
  };
  expect(report.ok).toBe(false);
  expect(report.scenarios.map((s) => [s.name, s.ok])).toEqual([
    ["lr-blowup", false],
    ["empty-history", true],
  ]);
  expect(report.scenarios[0]).toMatchObject({ iteration: 3, error: { stage: "filter", line: 4 } });
});

test.each([
  ["an unknown name", () => "no-such-scenario", /not a built-in \(empty-history, failed-trials, .*all\)/],
  [
    "a file naming an unknown parameter",
    () => write("bad1.json", JSON.stringify({ steps: [{ changes: { NOPE: 1 }, valBpb: 2 }] })),
    /steps\[0\]: NOPE: unknown parameter/,
  ],
  [
    "a file with an ok trial without a score",
    () => write("bad2.json", JSON.stringify({ steps: [{ changes: { DEPTH: 2 } }] })),
    /steps\[0\]: an "ok" trial needs its valBpb/,
  ],
  [
    "a file that is not a scenario",
    () => write("bad3.json", JSON.stringify({ stepz: [] })),
    /--scenario .*bad3\.json: /,
  ],
])("%s is a usage error before anything is checked", async (_what, scenario, message) => {
  const file = write("fine.ts", mechanism("fine", `"guide"`, `guide() { return undefined; },`));
  const r = await check([file], [scenario()]);
  expect(r.code).toBe(2);
  expect(r.err).toMatch(message);
  expect(r.out).toBe("");
});

test("the dry run and every scenario hand filter and observe changes with previous, the incumbent's value; a modification's own previous is replaced", async () => {
  const source = `${HEAD}export default {
  manifest: { name: "reads-previous", version: 1, hooks: ["filter", "observe"], capabilities: [] },
  filter(p, ctx) {
    for (const c of p.changes)
      if (c.previous === undefined || c.previous !== ctx.incumbent.config[c.param]) throw new Error("filter: " + JSON.stringify(c));
    if (ctx.iteration % 2 === 1) return { verdict: "accept" };
    return { verdict: "modify", changes: p.changes.map((c) => ({ ...c, previous: -123 })), reason: "restated" };
  },
  observe(trial, ctx) {
    for (const t of [trial, ...ctx.history])
      for (const c of t.changes)
        if (c.previous === undefined || c.previous === -123) throw new Error("observe: " + JSON.stringify(c));
  },
} satisfies Mechanism;
`;
  const r = await check([write("reads-previous.ts", source)], ["all"]);
  expect(r.err).toBe("");
  expect(r.code).toBe(0);
  expect(r.out.match(/ {2}scenario \S+ +ok {2}\d+ iterations?/g)).toHaveLength(BUILT_IN_SCENARIOS.length);
}, 60_000);

test("no built-in scenario hands a hook a change to the value the incumbent already has (a run drops those)", async () => {
  const source = `${HEAD}export default {
  manifest: { name: "no-op-detector", version: 1, hooks: ["filter", "observe"], capabilities: [] },
  filter(p, ctx) {
    for (const c of p.changes)
      if (c.value === ctx.incumbent.config[c.param] || c.value === c.previous) throw new Error("no-op in filter: " + c.param);
    return { verdict: "accept" };
  },
  observe(trial) {
    for (const c of trial.changes) if (c.value === c.previous) throw new Error("no-op in observe: " + c.param);
  },
} satisfies Mechanism;
`;
  const r = await check([write("no-op-detector.ts", source)], ["all"]);
  expect(r.err).toBe("");
  expect(r.code).toBe(0);
  expect(r.out.match(/ {2}scenario \S+ +ok {2}\d+ iterations?/g)).toHaveLength(BUILT_IN_SCENARIOS.length);
}, 60_000);

test("scenarios treat a mechanism's own changes as a run does: no-op changes dropped, an invalid modify ignored", async () => {
  const source = `${HEAD}export default {
  manifest: { name: "sloppy", version: 1, hooks: ["suggest", "filter", "observe"], capabilities: [] },
  suggest(ctx) {
    const floats = ctx.params.filter((p) => p.kind === "float" && !p.frozen && p.min !== undefined && p.max !== undefined);
    const keep = ctx.params[0];
    const move = floats[0];
    if (keep === undefined || move === undefined) return undefined;
    const cur = ctx.incumbent.config[move.name];
    const value = cur === move.min ? move.max! : move.min!;
    // One change to the value the parameter already has, and one real change.
    return { changes: [{ param: keep.name, value: ctx.incumbent.config[keep.name]! }, { param: move.name, value }], rationale: "sloppy" };
  },
  filter(p, ctx) {
    for (const c of p.changes) if (c.value === c.previous) throw new Error("no-op handed to filter: " + c.param);
    if (ctx.iteration % 2 === 0) return { verdict: "modify", changes: [{ param: "DEPTH", value: 9999 }], reason: "too deep" };
    return { verdict: "accept" };
  },
  observe(trial) {
    for (const c of trial.changes) if (c.value === 9999) throw new Error("an invalid modification was trained");
  },
} satisfies Mechanism;
`;
  const r = await check([write("sloppy.ts", source)], ["all"]);
  expect(r.err).toBe("");
  expect(r.code).toBe(0);
  expect(r.out.match(/ {2}scenario \S+ +ok {2}\d+ iterations?/g)).toHaveLength(BUILT_IN_SCENARIOS.length);
}, 60_000);

test("--verbose prints each scenario's hook calls on stderr: inputs, verdicts, ctx.log lines and state", async () => {
  const source = `${HEAD}export default {
  manifest: { name: "talker", version: 1, hooks: ["init", "filter", "observe"], capabilities: [] },
  init: () => ({ seen: 0 }),
  filter(p, ctx) {
    ctx.log("asked about " + p.changes.map((c) => c.param).join(","));
    return ctx.iteration === 2 ? { verdict: "reject", reason: "not at two" } : { verdict: "accept" };
  },
  observe(trial, ctx) { ctx.state.seen += 1; },
} satisfies Mechanism<{ seen: number }>;
`;
  const file = write("talker.ts", source);
  const r = await check([file], ["repeated-proposal", "restart"], false, true);
  expect(r.code).toBe(0);
  expect(r.err).toContain(`${file}: scenario repeated-proposal (`);
  expect(r.err).toContain(`${file}: scenario restart (`);
  expect(r.err).toMatch(/ {2}iteration 2\n {4}filter .*proposal [A-Z_]+=\S+ \(from \S+\)/);
  expect(r.err).toMatch(/→ reject: not at two/);
  expect(r.err).toMatch(/log: asked about [A-Z_]+/);
  expect(r.err).toMatch(/state \{"seen":1\}/);
  // Without --verbose: no trace. --verbose without --scenario, or with --json: a usage error.
  const quiet = await check([file], ["restart"]);
  expect(quiet.err).toBe("");
  const alone = await check([file], undefined, false, true);
  expect([alone.code, alone.out]).toEqual([2, ""]);
  expect(alone.err).toMatch(/--verbose prints the hook calls of --scenario runs as text: add --scenario/);
  const json = await check([file], ["restart"], true, true);
  expect([json.code, json.out]).toEqual([2, ""]);
  expect(json.err).toMatch(/without --json/);
}, 60_000);
