// `bilevel mechanism new`: every skeleton it writes passes `mechanism check` (real compiler, real
// isolates, every declared hook dry-run), whatever hooks and capabilities were asked for; bad input
// is a usage error before anything is written.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { mechanismCheckFiles } from "../../runtime/commands/mechanism.ts";
import { ALL_CAPABILITIES, ALL_HOOKS, mechanismNew } from "../../runtime/commands/mechanism-new.ts";
import { Sandbox } from "../../sandbox/index.ts";

let dir: string;
let sandbox: Sandbox;

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), "bilevel-new-"));
  sandbox = await Sandbox.start({}, { preloadCompiler: true });
});
afterAll(async () => {
  await sandbox.close();
  rmSync(dir, { recursive: true, force: true });
});

function io() {
  const out = { stdout: "", stderr: "" };
  return {
    out,
    io: {
      stdout: (t: string) => {
        out.stdout += t;
      },
      stderr: (t: string) => {
        out.stderr += t;
      },
    },
  };
}

test("every hook alone and all of them, with no, each and every capability: the skeleton passes check and its scenarios", async () => {
  const hookSets = [...ALL_HOOKS.map((h) => [h]), [...ALL_HOOKS]];
  const capSets = [[], ...ALL_CAPABILITIES.map((c) => [c]), [...ALL_CAPABILITIES]];
  const files: string[] = [];
  for (const [i, hooks] of hookSets.entries()) {
    for (const [j, caps] of capSets.entries()) {
      const name = `m-${i}-${j}`;
      const { io: sink, out } = io();
      const code = mechanismNew(name, { hooks: hooks.join(","), capabilities: caps.join(",") }, sink, dir);
      expect(code).toBe(0);
      expect(out.stdout).toBe(`${path.join(dir, `${name}.ts`)}\n`);
      const source = readFileSync(path.join(dir, `${name}.ts`), "utf8");
      // What was asked for is declared (init always: it creates the state).
      for (const h of ["init", ...hooks]) expect(source).toMatch(new RegExp(`hooks: \\[[^\\]]*"${h}"`));
      for (const c of caps) {
        expect(source).toMatch(new RegExp(`capabilities: \\[[^\\]]*"${c}"`));
        expect(source).toContain(`ctx.${c}.`);
      }
      files.push(path.join(dir, `${name}.ts`));
    }
  }
  const { io: sink, out } = io();
  // Every built-in scenario too: a skeleton's examples must not assume a history, a score or free parameters.
  const code = await mechanismCheckFiles(files, { json: true, scenario: ["all"] }, sink, sandbox);
  const reports = JSON.parse(out.stdout) as { file: string; ok: boolean; error: unknown }[];
  expect(reports.filter((r) => !r.ok)).toEqual([]);
  expect(code).toBe(0);
}, 120_000);

test("the skeleton documents each hook and the state's JSON rule", () => {
  const { io: sink } = io();
  expect(mechanismNew("documented", {}, sink, dir)).toBe(0);
  const source = readFileSync(path.join(dir, "documented.ts"), "utf8");
  expect(source).toContain("JSON only (no Set, Map, Date or class instance)");
  expect(source).toContain("Only an LLM");
  expect(source).toContain("satisfies Mechanism<State>");
  expect(source.match(/^ {2}\/\/ /gm)?.length ?? 0).toBeGreaterThanOrEqual(ALL_HOOKS.length);
});

test.each([
  ["Bad_Name", {}, /kebab-case/],
  ["ok-name", { hooks: "filter,watch" }, /--hooks: unknown "watch"/],
  ["ok-name", { capabilities: "tabu,network" }, /--capabilities: unknown "network"/],
])("%s %j is a usage error and writes nothing", (name, options, message) => {
  const { io: sink, out } = io();
  expect(mechanismNew(name, options, sink, dir)).toBe(2);
  expect(out.stderr).toMatch(message);
  expect(existsSync(path.join(dir, `${name}.ts`))).toBe(false);
});

test("an existing file is kept unless --force", () => {
  const file = path.join(dir, "mine.ts");
  writeFileSync(file, "// my work\n");
  const { io: sink, out } = io();
  expect(mechanismNew("mine", {}, sink, dir)).toBe(2);
  expect(out.stderr).toMatch(/exists \(use --force/);
  expect(readFileSync(file, "utf8")).toBe("// my work\n");
  expect(mechanismNew("mine", { force: true }, sink, dir)).toBe(0);
  expect(readFileSync(file, "utf8")).toMatch(/name: "mine"/);
});

test("the hint names the launcher as it was called", () => {
  const previous = process.env.BILEVEL_LAUNCHER;
  process.env.BILEVEL_LAUNCHER = "/somewhere/else/bilevel";
  try {
    const { io: sink, out } = io();
    expect(mechanismNew("hinted", {}, sink, dir)).toBe(0);
    expect(out.stderr).toMatch(/next: \/somewhere\/else\/bilevel mechanism check hinted\.ts/);
  } finally {
    if (previous === undefined) delete process.env.BILEVEL_LAUNCHER;
    else process.env.BILEVEL_LAUNCHER = previous;
  }
});
