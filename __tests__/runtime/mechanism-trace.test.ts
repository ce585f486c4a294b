// `mechanism test --verbose` and `--trace FILE`: every hook call's input, result, ctx.log lines and
// full guide text, and every trial, in the order they happened; the trace agrees with the summary
// the harness reads from the store (same calls, same trials). Real sandbox, real loop, real store.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { mechanismTest } from "../../runtime/commands/mechanism-test.ts";
import type { TraceEvent } from "../../runtime/mechanism-trace.ts";
import { Sandbox } from "../../sandbox/index.ts";
import { sharedTestSandbox } from "../support/shared-sandbox.ts";

let sandbox: Sandbox;
let dir: string;
// One sandbox for every run: the command's close() must not end it.
const shared = sharedTestSandbox(() => sandbox);

beforeAll(async () => {
  sandbox = await Sandbox.start();
  dir = mkdtempSync(path.join(tmpdir(), "bilevel-mtrace-"));
});
afterAll(async () => {
  await sandbox.close();
  rmSync(dir, { recursive: true, force: true });
});

// A guide longer than the console's 500-character cut, over two lines; a filter that rejects every
// other proposal and logs why; an observe that counts.
const LONG = "x".repeat(700);
const SOURCE = `import type { Mechanism } from "bilevel/mechanism-api";
export default {
  manifest: { name: "traced", version: 1, hooks: ["init", "guide", "filter", "observe"], capabilities: [] },
  init: () => ({ seen: 0, asked: 0 }),
  guide(ctx) { return "first line " + ctx.iteration + "\\n${LONG}"; },
  filter(proposal, ctx) {
    ctx.state.asked += 1;
    ctx.log("asked " + ctx.state.asked + " about " + proposal.changes.length + " changes");
    return ctx.state.asked % 2 === 0 ? { verdict: "reject", reason: "every other one" } : { verdict: "accept" };
  },
  observe(trial, ctx) { ctx.state.seen += 1; },
} satisfies Mechanism<{ seen: number; asked: number }>;
`;

async function run(options: Parameters<typeof mechanismTest>[1]) {
  const file = path.join(dir, "traced.ts");
  writeFileSync(file, SOURCE);
  let stdout = "";
  let stderr = "";
  const code = await mechanismTest(
    file,
    options,
    {
      stdout: (t) => {
        stdout += t;
      },
      stderr: (t) => {
        stderr += t;
      },
    },
    { startSandbox: shared },
  );
  return { code, stdout, stderr };
}

test("--trace: every call and trial as JSON lines, agreeing with the summary; --verbose: the same as text", async () => {
  const trace = path.join(dir, "trace.jsonl");
  const r = await run({ seeds: "2", iterations: "5", json: true, verbose: true, trace });
  expect(r.code).toBe(0);
  const summary = JSON.parse(r.stdout).summary;
  const events = readFileSync(trace, "utf8")
    .trimEnd()
    .split("\n")
    .map((l) => JSON.parse(l) as TraceEvent);

  for (const [i, seed] of [1, 2].entries()) {
    const mine = events.filter((e) => e.seed === seed);
    expect(mine[0]).toEqual({ type: "start", format: "bilevel-mechanism-trace/1", seed });
    // The baselines train first; then the mechanism is validated on their trace and initialised.
    const baselines = mine.filter((e) => e.type === "trial" && e.kind === "baseline").length;
    expect(baselines).toBeGreaterThan(0);
    expect(mine.slice(1, 1 + baselines).every((e) => e.type === "trial" && e.kind === "baseline")).toBe(true);
    expect(mine[1 + baselines]).toMatchObject({ type: "validation", ok: true });
    expect(mine[2 + baselines]).toMatchObject({ type: "hook", hook: "init", iteration: 0 });
    const hooks = mine.filter((e) => e.type === "hook");
    // The same calls as the store's ledger, hook by hook.
    for (const hook of ["init", "guide", "filter", "observe"] as const)
      expect(hooks.filter((e) => e.hook === hook)).toHaveLength(summary.seeds[i].calls[hook]);
    const trials = mine.filter((e) => e.type === "trial");
    expect(trials.filter((t) => t.kind === "search")).toHaveLength(summary.seeds[i].trials);
    expect(
      hooks.filter((e) => e.hook === "filter" && (e.result as { verdict: string }).verdict === "reject"),
    ).toHaveLength(summary.seeds[i].rejected);
    // Each observe is told about the trial of its iteration, which comes just before it.
    for (const [k, e] of mine.entries()) {
      if (e.type !== "hook" || e.hook !== "observe") continue;
      const before = mine[k - 1];
      expect(before).toMatchObject({ type: "trial", iteration: e.iteration, id: e.input.trial?.id });
    }
    // Full guide text; ctx.log lines; the state before and after.
    const guide = hooks.find((e) => e.hook === "guide" && e.iteration === 2);
    expect(guide?.result).toBe(`first line 2\n${LONG}`);
    const filters = hooks.filter((e) => e.hook === "filter");
    expect(filters[0]?.logs[0]).toMatch(/^asked 1 about \d+ changes$/);
    expect(filters[1]?.input.state).toEqual({ seen: expect.any(Number), asked: 1 });
    expect(filters[1]?.state).toEqual({ seen: expect.any(Number), asked: 2 });
    expect(filters[1]?.input.proposal?.source).toBe("offline");
  }

  // --verbose on stderr: the same calls, the guide in full, the log lines and verdicts.
  expect(r.stderr).toContain("seed 1\n");
  expect(r.stderr).toContain("seed 2\n");
  expect(r.stderr).toContain(`            | ${LONG}`);
  expect(r.stderr).toMatch(/log: asked 2 about \d+ changes/);
  expect(r.stderr).toMatch(/→ reject: every other one/);
  expect(r.stderr).toMatch(/trial #\d+: .* → ok \d\.\d{4}/);
  // Changes handed to hooks and trials show what they replaced.
  expect(r.stderr).toMatch(/trial #\d+: [A-Z_]+=\S+ \(from \S+\)/);
  expect(r.stderr).toMatch(/proposal [A-Z_]+=\S+ \(from \S+\)/);
}, 120_000);

test("--trace to a path that cannot be written is a usage error before anything runs", async () => {
  const r = await run({ seeds: "1", iterations: "2", trace: path.join(dir, "no-such-dir", "t.jsonl") });
  expect(r.code).toBe(2);
  expect(r.stderr).toMatch(/cannot write --trace/);
  expect(r.stdout).toBe("");
});

test("a fault is in the trace at the mechanism's line, and the quarantined mechanism is called no more", async () => {
  const faulty = path.join(dir, "faulty.ts");
  writeFileSync(
    faulty,
    `import type { Mechanism } from "bilevel/mechanism-api";
export default {
  manifest: { name: "faulty", version: 1, hooks: ["observe"], capabilities: [] },
  observe(trial, ctx) {
    if (ctx.iteration === 3) throw new Error("boom at three");
  },
} satisfies Mechanism;
`,
  );
  const trace = path.join(dir, "faulty.jsonl");
  let stderr = "";
  const code = await mechanismTest(
    faulty,
    { seeds: "1", iterations: "5", trace, verbose: true },
    {
      stdout: () => {},
      stderr: (t) => {
        stderr += t;
      },
    },
    { startSandbox: shared },
  );
  expect(code).toBe(1);
  const hooks = readFileSync(trace, "utf8")
    .trimEnd()
    .split("\n")
    .map((l) => JSON.parse(l) as TraceEvent)
    .filter((e) => e.type === "hook");
  expect(hooks.map((e) => [e.iteration, e.ok])).toEqual([
    [1, true],
    [2, true],
    [3, false],
  ]);
  expect(hooks[2]?.error).toMatchObject({ stage: "observe", code: "thrown", line: 5, column: 36 }); // at `new Error`
  expect(stderr).toMatch(/→ FAULT thrown at 5:36: Error: boom at three/);
});

test("an invalid suggestion or modify is in the trace and --verbose with the host's reason, and the table counts it as ignored", async () => {
  const bad = path.join(dir, "out-of-range.ts");
  writeFileSync(
    bad,
    `import type { Mechanism } from "bilevel/mechanism-api";
export default {
  manifest: { name: "out-of-range", version: 1, hooks: ["suggest", "filter"], capabilities: [] },
  suggest: () => ({ changes: [{ param: "DEPTH", value: 9999 }], rationale: "deeper" }),
  filter: () => ({ verdict: "modify", changes: [{ param: "NOPE", value: 1 }], reason: "unknown" }),
} satisfies Mechanism;
`,
  );
  const trace = path.join(dir, "ignored.jsonl");
  let stdout = "";
  let stderr = "";
  const io = {
    stdout: (t: string) => {
      stdout += t;
    },
    stderr: (t: string) => {
      stderr += t;
    },
  };
  const code = await mechanismTest(bad, { seeds: "1", iterations: "3", trace, verbose: true }, io, {
    startSandbox: shared,
  });
  expect(code).toBe(0);
  const ignored = readFileSync(trace, "utf8")
    .trimEnd()
    .split("\n")
    .map((l) => JSON.parse(l) as TraceEvent)
    .filter((e) => e.type === "ignored");
  const suggestions = ignored.filter((e) => e.outcome === "invalid-suggestion");
  const modifications = ignored.filter((e) => e.outcome === "invalid-modification");
  expect(suggestions).toHaveLength(3);
  expect(modifications).toHaveLength(3);
  expect(suggestions[0]).toMatchObject({ hook: "suggest", mechanism: "out-of-range", iteration: 1 });
  expect(suggestions[0]?.changes).toEqual([{ param: "DEPTH", value: 9999 }]);
  expect(suggestions[0]?.errors.join(" ")).toMatch(/DEPTH/);
  expect(modifications[0]?.errors.join(" ")).toMatch(/NOPE/);
  expect(stderr).toMatch(/suggest IGNORED \(invalid-suggestion\) DEPTH=9999 from out-of-range: .*DEPTH/);
  expect(stderr).toMatch(/filter {2}IGNORED \(invalid-modification\) NOPE=1 from out-of-range: .*NOPE/);
  // The seed table's "ignored" column: 3 suggestions + 3 modifications; and the pointer to why.
  const lines = stdout.split("\n");
  const at = lines.findIndex((l) => l.startsWith("seed "));
  const [header, row] = [lines[at], lines[at + 1]];
  const column = header?.split(/\s+/).indexOf("ignored") ?? -1;
  expect(column).toBeGreaterThan(0);
  expect(row?.split(/\s+/)[column]).toBe("6");
  expect(stdout).toMatch(/ignored: 6 suggestion\(s\) or modification\(s\) .* --verbose or --trace FILE/);
}, 120_000);
