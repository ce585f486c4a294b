import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { Command, CommanderError } from "commander";
import {
  type MechanismTestOptions,
  mechanismTest,
  registerMechanismTestCommand,
} from "../../runtime/commands/mechanism-test.ts";
import { parseBaseline } from "../../runtime/harness-baseline.ts";
import { Sandbox } from "../../sandbox/index.ts";
import { sharedTestSandbox } from "../support/shared-sandbox.ts";

const examples = path.resolve(import.meta.dirname, "../../examples/mechanisms");
const EXAMPLES = [
  "tabu-search",
  "ucb-bandit",
  "orthogonal-doe",
  "stagnation-restart",
  "paper-tabu-manager",
  "paper-multiscale-bandit",
  "paper-lhs-explorer",
];

let sandbox: Sandbox;
let dir: string;
// One sandbox for every run: the command's close() must not end it.
const shared = sharedTestSandbox(() => sandbox);

beforeAll(async () => {
  sandbox = await Sandbox.start();
  dir = mkdtempSync(path.join(tmpdir(), "bilevel-mtest-"));
});
afterAll(async () => {
  await sandbox.close();
  rmSync(dir, { recursive: true, force: true });
});

async function run(file: string, options: MechanismTestOptions = {}) {
  let stdout = "";
  let stderr = "";
  const code = await mechanismTest(
    file,
    options,
    { stdout: (t) => (stdout += t), stderr: (t) => (stderr += t) },
    { startSandbox: shared },
  );
  return { code, stdout, stderr };
}

const write = (name: string, text: string) => {
  const file = path.join(dir, name);
  writeFileSync(file, text);
  return file;
};

describe("mechanism test", () => {
  it.each(EXAMPLES)("%s passes its saved baseline", async (name) => {
    const r = await run(path.join(examples, `${name}.ts`), {
      baseline: path.join(examples, "baselines", `${name}.json`),
    });
    expect(r.stderr).toBe("");
    expect(r.stdout).toMatch(/baseline: OK/);
    expect(r.stdout).toMatch(/behaviour identical to the baseline/);
    expect(r.code).toBe(0);
  });

  it("takes the run's acceptance and proposer settings from --config; a baseline refuses a config that differs", async () => {
    const file = path.join(examples, "tabu-search.ts");
    const strict = write(
      "strict.json",
      JSON.stringify({ acceptance: { mode: "strict", k: 2 }, proposer: { maxChanges: 1 } }),
    );
    const r = await run(file, { config: strict, json: true, seeds: "1", iterations: "4" });
    const settings = JSON.parse(r.stdout).summary.settings;
    expect(settings).toMatchObject({ acceptance: "strict", k: 2, maxChanges: 1 });
    const text = await run(file, { config: strict, seeds: "1", iterations: "4" });
    expect(text.stdout).toMatch(/acceptance strict \(keep any gain\)/);
    const k8 = write("k8.json", JSON.stringify({ acceptance: { k: 8 } }));
    const refused = await run(file, {
      config: k8,
      baseline: path.join(examples, "baselines", "tabu-search.json"),
    });
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/--config \(k 8\) does not match the baseline \(recorded with k 1\)/);
  });

  it("a mechanism quarantined for its time budget is reported at the iteration it happened", async () => {
    const slow = write(
      "slow.ts",
      `import type { Mechanism } from "bilevel/mechanism-api";
export default {
  manifest: { name: "slow", version: 1, hooks: ["filter"], capabilities: [] },
  filter() {
    let x = 0;
    for (let i = 0; i < 3_000_000; i++) x += i % 7;
    return x < 0 ? { verdict: "reject", reason: "never" } : { verdict: "accept" };
  },
} satisfies Mechanism<{}>;
`,
    );
    const budget = write("budget.json", JSON.stringify({ policy: { mechanismBudgetMs: 1, maxOverruns: 1 } }));
    const r = await run(slow, { config: budget, seeds: "1", iterations: "4" });
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/fault: seed 1, iteration 2, budget\/time-budget: over its time budget/);
  });

  it("prints the same deterministic JSON twice; timing is kept apart", async () => {
    const file = path.join(examples, "ucb-bandit.ts");
    const a = JSON.parse((await run(file, { json: true, seeds: "2", iterations: "8" })).stdout);
    const b = JSON.parse((await run(file, { json: true, seeds: "2", iterations: "8" })).stdout);
    expect(a.ok).toBe(true);
    expect(b.summary).toEqual(a.summary);
    expect(a.summary.settings.seeds).toEqual([1, 2]);
    expect(a.timing.hooks.suggest.calls).toBe(16);
  });

  it("saves a baseline that reloads and passes, and a worse mechanism then fails it", async () => {
    const saved = path.join(dir, "tabu.json");
    const ok = await run(path.join(examples, "tabu-search.ts"), {
      seeds: "2",
      iterations: "15",
      saveBaseline: saved,
    });
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/baseline saved/);
    const parsed = parseBaseline(readFileSync(saved, "utf8"));
    expect(parsed.ok).toBe(true);
    expect((await run(path.join(examples, "tabu-search.ts"), { baseline: saved })).code).toBe(0);

    // Same name, but it rejects everything: nothing trains, and observe never fires.
    const worse = write(
      "worse.ts",
      `import type { Mechanism } from "bilevel/mechanism-api";
export default {
  manifest: { name: "tabu-search", version: 2, hooks: ["filter", "observe"], capabilities: [] },
  filter() { return { verdict: "reject", reason: "everything is tabu" }; },
  observe() {},
} satisfies Mechanism;`,
    );
    const bad = await run(worse, { baseline: saved });
    expect(bad.code).toBe(1);
    expect(bad.stdout).toMatch(/baseline: REGRESSION/);
    expect(bad.stdout).toMatch(/seed 1: best .* worse than the baseline/);
    expect(bad.stdout).toMatch(/hook observe no longer fires/);
  });

  it("runs a control on the same seeds when asked", async () => {
    const r = await run(path.join(examples, "stagnation-restart.ts"), {
      seeds: "1",
      iterations: "10",
      control: true,
    });
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/control \(same seeds, no mechanism\): mean best \d\.\d{4}/);
  });

  it("exits 1 with the stage and position when the mechanism does not compile", async () => {
    const broken = write(
      "broken.ts",
      `import type { Mechanism } from "bilevel/mechanism-api";
export default { manifest: { name: "broken", version: 1, hooks: [], capabilities: [] }, x: 1 + "a" * 2 } satisfies Mechanism;`,
    );
    const r = await run(broken);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/rejected before it could run/);
    expect(r.stderr).toMatch(/compile\/type-error at 2:\d+/);
  });

  it("exits 1 and reports faults when a mechanism faults and there is no baseline", async () => {
    const faulty = write(
      "faulty.ts",
      `import type { Mechanism } from "bilevel/mechanism-api";
export default {
  manifest: { name: "faulty", version: 1, hooks: ["guide"], capabilities: [] },
  guide(ctx) { if (ctx.iteration === 2) throw new Error("kaput"); return "ok"; },
} satisfies Mechanism;`,
    );
    const r = await run(faulty, { seeds: "1", iterations: "4" });
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/fault: seed 1, iteration 2, guide\/thrown: .*kaput/);
    expect(r.stdout).toMatch(/quarantined/);
  });

  describe("usage errors exit 2 with a clear message", () => {
    const tabu = path.join(examples, "tabu-search.ts");
    const cases: [string, () => [string, MechanismTestOptions], RegExp][] = [
      ["missing file", () => [path.join(dir, "nope.ts"), {}], /nope\.ts does not exist/],
      ["a directory", () => [dir, {}], /not a file/],
      ["--seeds abc", () => [tabu, { seeds: "abc" }], /--seeds takes a whole number, got "abc"/],
      ["--seeds 0", () => [tabu, { seeds: "0" }], /--seeds must be between 1 and 100/],
      ["--seeds -3", () => [tabu, { seeds: "-3" }], /--seeds takes a whole number/],
      ["--iterations 1e9", () => [tabu, { iterations: "1e9" }], /--iterations takes a whole number/],
      ["--iterations 5000", () => [tabu, { iterations: "5000" }], /--iterations must be between 1 and 1000/],
      ["--noise x", () => [tabu, { noise: "x" }], /--noise takes a number/],
      ["--tolerance -1", () => [tabu, { tolerance: "-1" }], /--tolerance takes a number/],
      ["missing baseline", () => [tabu, { baseline: path.join(dir, "none.json") }], /cannot read baseline/],
      [
        "corrupt baseline",
        () => [tabu, { baseline: write("corrupt.json", '{"format": ') }],
        /unusable: not JSON/,
      ],
      [
        "wrong-shape baseline",
        () => [tabu, { baseline: write("shape.json", '{"format":"bilevel-mechanism-test/1","seeds":[]}') }],
        /unusable: not a bilevel-mechanism-test\/2 summary/,
      ],
      [
        "--seeds contradicting the baseline",
        () => [tabu, { seeds: "7", baseline: path.join(examples, "baselines", "tabu-search.json") }],
        /--seeds 7 does not match the baseline \(recorded with 3 seeds\)/,
      ],
    ];
    it.each(cases)("%s", async (_name, input, message) => {
      const [file, options] = input();
      const r = await run(file, options);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(message);
      expect(r.stdout).toBe("");
    });
  });

  describe("as a commander subcommand", () => {
    function program() {
      let err = "";
      const p = new Command("bilevel").exitOverride().configureOutput({
        writeErr: (t) => (err += t),
        writeOut: () => {},
      });
      const group = p
        .command("mechanism")
        .configureOutput({ writeErr: (t) => (err += t), writeOut: () => {} });
      registerMechanismTestCommand(group);
      return { p, err: () => err };
    }

    it("exits 2 on an unknown option or a missing file argument", async () => {
      for (const argv of [
        ["mechanism", "test", "x.ts", "--frobnicate"],
        ["mechanism", "test"],
      ]) {
        const { p, err } = program();
        const error = await p.parseAsync(argv, { from: "user" }).then(
          () => null,
          (e: unknown) => e,
        );
        expect(error).toBeInstanceOf(CommanderError);
        expect((error as CommanderError).exitCode).toBe(2);
        expect(err()).toMatch(/unknown option '--frobnicate'|missing required argument 'file'/);
      }
    });

    it("--help exits 0 and lists the flags", async () => {
      let out = "";
      const { p } = program();
      p.commands[0]?.commands[0]?.configureOutput({ writeOut: (t) => (out += t) });
      const error = await p.parseAsync(["mechanism", "test", "--help"], { from: "user" }).then(
        () => null,
        (e: unknown) => e,
      );
      expect((error as CommanderError).exitCode).toBe(0);
      for (const flag of [
        "--seeds",
        "--iterations",
        "--baseline",
        "--save-baseline",
        "--json",
        "--control",
      ]) {
        expect(out).toContain(flag);
      }
    });
  });
});
