// `bilevel mechanism check`: in-process against a shared sandbox for the many cases, and as a real
// subprocess for exit codes and garbage files.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { mechanismCheck } from "../../runtime/commands/mechanism.ts";
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
