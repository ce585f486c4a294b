// `bilevel mechanism check`: in-process against a shared sandbox for the many cases, and as a real
// subprocess for exit codes and garbage files; several files in one call.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { jest } from "@jest/globals";
import { mechanismCheck, mechanismCheckFiles } from "../../runtime/commands/mechanism.ts";
import { SandboxChild } from "../../sandbox/child-process.ts";
import { Sandbox } from "../../sandbox/index.ts";
import { cliArgv } from "../support/cli.ts";
import { HEALTHY } from "./helpers.ts";

let dir: string;
let sandbox: Sandbox;

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), "bilevel-check-"));
  sandbox = await Sandbox.start({ hookTimeoutMs: 300 });
});
afterAll(async () => {
  await sandbox.close();
  rmSync(dir, { recursive: true, force: true });
});

function file(name: string, content: string | Buffer): string {
  const p = path.join(dir, name);
  writeFileSync(p, content);
  return p;
}

async function check(p: string, json = false): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const code = await mechanismCheck(
    p,
    { json },
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

function cli(...args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, cliArgv(...args), { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    child.on("close", (status) => resolve({ status, stdout, stderr }));
  });
}

test("a valid mechanism: exit 0 with the manifest and every stage", async () => {
  const r = await check(file("healthy.ts", HEALTHY));
  expect(r.code).toBe(0);
  expect(r.out).toMatch(/ok — healthy v1; hooks init, guide, filter, observe/);
  for (const stage of ["compile", "lint", "load", "init", "guide", "filter", "observe"])
    expect(r.out).toContain(stage);
});

test("--json prints the validation report", async () => {
  const r = await check(file("healthy2.ts", HEALTHY), true);
  expect(r.code).toBe(0);
  const report = JSON.parse(r.out) as {
    ok: boolean;
    manifest: { name: string };
    stages: unknown[];
    error: null;
  };
  expect(report).toMatchObject({ ok: true, manifest: { name: "healthy" }, error: null });
  expect(report.stages).toHaveLength(7);
});

test.each([
  [
    "a lint error",
    `import type { Mechanism } from "bilevel/mechanism-api";\nexport default {\n  manifest: { name: "m", version: 1, hooks: ["guide"], capabilities: [] },\n  guide() { return String(globalThis); },\n} satisfies Mechanism;\n`,
    /:4:27: lint\/forbidden-syntax: globalThis/,
  ],
  [
    "a type error",
    `import type { Mechanism } from "bilevel/mechanism-api";\nexport default {\n  manifest: { name: "m", version: 1, hooks: ["guide"], capabilities: [] },\n  guide() { return 42; },\n} satisfies Mechanism;\n`,
    /:4:\d+: compile\/type-error: TS\d+/,
  ],
  ["a syntax error", "export default {{{", /:1:\d+: compile\/syntax-error/],
  ["an empty file", "", /lint\/invalid-manifest/],
  [
    "a runaway hook",
    `import type { Mechanism } from "bilevel/mechanism-api";\nexport default {\n  manifest: { name: "m", version: 1, hooks: ["guide"], capabilities: [] },\n  guide() { for (;;) {} },\n} satisfies Mechanism;\n`,
    /guide\/timeout/,
  ],
  [
    "a runtime error",
    `import type { Mechanism } from "bilevel/mechanism-api";\nexport default {\n  manifest: { name: "m", version: 1, hooks: ["filter"], capabilities: [] },\n  filter(p) {\n    const c = p.changes[99]!;\n    return { verdict: "reject", reason: c.param };\n  },\n} satisfies Mechanism;\n`,
    /:6:\d+: filter\/thrown: TypeError/,
  ],
  ["a huge file", `// ${"x".repeat(1024 * 1024)}\n`, /compile\/syntax-error: the source is \d+ bytes/],
])("%s: exit 1 naming the stage, the category and the position", async (_name, content, pattern) => {
  const r = await check(file("m.ts", content));
  expect(r.code).toBe(1);
  expect(r.err).toMatch(pattern);
  expect(r.err).toMatch(/rejected at/);
});

test("every compile error is reported, in source order, each with its position", async () => {
  const r = await check(
    file(
      "two-errors.ts",
      `import type { Mechanism } from "bilevel/mechanism-api";\nexport default {\n  manifest: { name: "m", version: 1, hooks: ["guide"], capabilities: [] },\n  guide(ctx) {\n    setTimeout(() => {}, 1);\n    const n: number = "x";\n    return String(globalThis) + n;\n  },\n} satisfies Mechanism;\n`,
    ),
  );
  expect(r.code).toBe(1);
  const lines = r.err.split("\n").filter((l) => l.includes("two-errors.ts:"));
  expect(lines.map((l) => /two-errors\.ts:(\d+):/.exec(l)?.[1])).toEqual(["5", "6", "7"]);
  expect(lines[0]).toMatch(/setTimeout is not available in the sandbox/);
  expect(lines[2]).toMatch(/lint\/forbidden-syntax: globalThis/);
  expect(r.err).toMatch(/rejected at compile \(type-error; 3 errors\)\n$/);
  const json = JSON.parse((await check(path.join(dir, "two-errors.ts"), true)).out) as { errors: unknown[] };
  expect(json.errors).toHaveLength(3);
});

test("a lint error before a type error: the compile stage is recorded failed, and the report is rejected at compile", async () => {
  const r = await check(
    file(
      "lint-then-type.ts",
      `import type { Mechanism } from "bilevel/mechanism-api";\nexport default {\n  manifest: { name: "m", version: 1, hooks: ["guide"], capabilities: [] },\n  guide(ctx) {\n    const g = String(globalThis);\n    const n: number = "x";\n    return g + n;\n  },\n} satisfies Mechanism;\n`,
    ),
    true,
  );
  expect(r.code).toBe(1);
  const report = JSON.parse(r.out) as {
    stages: { stage: string; ok: boolean; error?: { line: number } }[];
    error: { stage: string; line: number };
    errors: { stage: string; line: number }[];
  };
  expect(report.stages.map((s) => [s.stage, s.ok, s.error?.line])).toEqual([["compile", false, 6]]);
  expect(report.error).toMatchObject({ stage: "compile", line: 6 });
  expect(report.errors.map((e) => [e.stage, e.line])).toEqual([
    ["lint", 5],
    ["compile", 6],
  ]);
});

test("a binary file: exit 1, a compile error, no crash", async () => {
  const bytes = Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 2654435761) % 256));
  const r = await check(file("binary.ts", bytes));
  expect(r.code).toBe(1);
  expect(r.err).toMatch(/compile\/syntax-error/);
});

test("a missing file or a directory: exit 2 (usage)", async () => {
  expect((await check(path.join(dir, "nope.ts"))).code).toBe(2);
  const r = await check(dir);
  expect(r.code).toBe(2);
  expect(r.err).toMatch(/not a file/);
});

test("[slow] as a subprocess: exit codes 0, 1 and 2", async () => {
  const [ok, binary, missing, noArg] = await Promise.all([
    cli("mechanism", "check", file("sub-ok.ts", HEALTHY)),
    cli("mechanism", "check", file("sub-bin.ts", Buffer.from([0, 255, 1, 254, 0, 0, 17, 3]))),
    cli("mechanism", "check", path.join(dir, "missing.ts")),
    cli("mechanism", "check"),
  ]);
  expect(ok.status).toBe(0);
  expect(ok.stdout).toMatch(/ok — healthy/);
  expect(binary.status).toBe(1);
  expect(binary.stderr).toMatch(/sub-bin\.ts(:\d+:\d+)?: (compile|lint)\//);
  expect(missing.status).toBe(2);
  expect(missing.stderr).toMatch(/does not exist/);
  expect(noArg.status).toBe(2);
  expect(noArg.stderr).toMatch(/missing required argument/);
}, 60000);

describe("several files in one call", () => {
  const REJECTED = "export default {{{";

  /** mechanismCheckFiles with the shared sandbox; `log` holds stdout and stderr interleaved, in order. */
  async function checkAll(files: string[], json = false) {
    let out = "";
    let err = "";
    let log = "";
    const code = await mechanismCheckFiles(
      files,
      { json },
      {
        stdout: (t) => {
          out += t;
          log += t;
        },
        stderr: (t) => {
          err += t;
          log += t;
        },
      },
      sandbox,
    );
    return { code, out, err, log };
  }

  test("one report each, in order; the exit code is the worst file's (usage 2 > rejected 1 > valid 0)", async () => {
    const ok = file("many-ok.ts", HEALTHY);
    const bad = file("many-bad.ts", REJECTED);
    const missing = path.join(dir, "many-missing.ts");
    const all = await checkAll([ok, bad, missing]);
    expect(all.code).toBe(2);
    expect(all.out).toMatch(/many-ok\.ts: ok — healthy v1/);
    expect(all.err).toMatch(/many-bad\.ts:1:\d+: compile\/syntax-error/);
    expect(all.err).toMatch(/many-missing\.ts.*does not exist/);
    const at = (s: string) => all.log.indexOf(s);
    expect(at("many-ok.ts: ok")).toBeLessThan(at("many-bad.ts:1:"));
    expect(at("many-bad.ts:1:")).toBeLessThan(at("many-missing.ts"));
    expect(all.out).toMatch(/\n3 files: 1 ok, 1 rejected, 1 not checked \(usage errors\)\n$/);
    expect((await checkAll([ok, bad])).code).toBe(1);
    expect((await checkAll([ok, ok])).code).toBe(0);
    expect((await checkAll([missing, ok])).code).toBe(2);
  });

  test("--json: an array with one entry per file, in order (a usage error as usageError)", async () => {
    const ok = file("json-ok.ts", HEALTHY);
    const bad = file("json-bad.ts", REJECTED);
    const missing = path.join(dir, "json-missing.ts");
    const all = await checkAll([ok, bad, missing], true);
    expect(all.code).toBe(2);
    const entries = JSON.parse(all.out) as { file: string; ok: boolean; usageError?: string }[];
    expect(entries.map((e) => [e.file, e.ok])).toEqual([
      [ok, true],
      [bad, false],
      [missing, false],
    ]);
    expect(entries[1]).toMatchObject({ error: { stage: "compile", code: "syntax-error" } });
    expect(entries[2]?.usageError).toMatch(/does not exist/);
    // One file keeps the single report (and a usage error prints nothing on stdout).
    expect(JSON.parse((await checkAll([ok], true)).out)).toMatchObject({ file: ok, ok: true });
    expect((await checkAll([missing], true)).out).toBe("");
  });

  test("files that fail before the sandbox stage start no sandbox child", async () => {
    const start = jest.spyOn(SandboxChild, "start");
    const huge = file("many-huge.ts", `// ${"x".repeat(1024 * 1024)}\n`);
    let err = "";
    const io = {
      stdout: () => {},
      stderr: (t: string) => {
        err += t;
      },
    };
    const code = await mechanismCheckFiles([path.join(dir, "gone.ts"), huge], {}, io);
    expect(code).toBe(2);
    expect(err).toMatch(/gone\.ts.*does not exist/);
    expect(err).toMatch(/many-huge\.ts: compile\/syntax-error: the source is \d+ bytes/);
    expect(start).not.toHaveBeenCalled();
    start.mockRestore();
  });

  test("[slow] as a subprocess: one child for all files, exit 2 for a missing one among them", async () => {
    const r = await cli(
      "mechanism",
      "check",
      file("sub-many-ok.ts", HEALTHY),
      file("sub-many-bad.ts", REJECTED),
      path.join(dir, "sub-many-missing.ts"),
      file("sub-many-ok2.ts", HEALTHY),
    );
    expect(r.status).toBe(2);
    expect(r.stdout.match(/: ok — healthy v1/g)).toHaveLength(2);
    expect(r.stderr).toMatch(/sub-many-bad\.ts:1:\d+: compile\/syntax-error/);
    expect(r.stderr).toMatch(/sub-many-missing\.ts.*does not exist/);
  }, 60000);
});
