// The compiler process (sandbox/compiler-server.ts, compiler-process.ts, compiler-blob.ts), as real
// processes: started from its snapshot and started plainly it gives the same answers; a damaged
// blob falls back to the plain start and is built again; a compile past its deadline is killed in
// the snapshot process too; a line that is not a request is refused.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import type { Failure } from "../../sandbox/child-process.ts";
import {
  buildBlob,
  compilerCacheDir,
  findBlob,
  PLAIN_START,
  snapshotStart,
} from "../../sandbox/compiler-blob.ts";
import { type Compiled, Compiler } from "../../sandbox/compiler-process.ts";
import { HEALTHY } from "./helpers.ts";

const ROOT = path.resolve(import.meta.dirname, "../..");
const DEADLINE_MS = 30_000;
const HEAD = `import type { Mechanism } from "bilevel/mechanism-api";\n`;
const wrap = (body: string, caps = "[]") =>
  `${HEAD}export default {\n  manifest: { name: "m", version: 1, hooks: ["guide"], capabilities: ${caps} },\n${body}\n} satisfies Mechanism;\n`;

/** The examples, and sources that fail at each stage (syntax, types, lint, manifest, nesting). */
function corpus(): string[] {
  const examples = path.join(ROOT, "examples", "mechanisms");
  const files = readdirSync(examples)
    .filter((f) => f.endsWith(".ts"))
    .map((f) => readFileSync(path.join(examples, f), "utf8"));
  return [
    ...files,
    HEALTHY,
    "",
    `${HEAD}export default { manifest: { name: "m", version: 1, hooks: [], capabilities: [] }, guide() { return ( };`,
    wrap(`  guide(ctx) { const n: number = ctx.state; return fetch("x"); },`),
    wrap(`  guide(ctx) { return String(ctx.tabu); },`),
    wrap(`  guide() { return String(eval("1")); },`),
    wrap(`  guide(ctx) { ctx.tabu.add({}, 1); return "x"; },`, '["tabu"]'),
    `${HEAD}export default { manifest: { name: "m", version: 1, apiVersion: 99, hooks: ["guide"], capabilities: [] }, guide() { return "x"; } };`,
    `const x = ${"[".repeat(5000)}${"]".repeat(5000)};`,
  ];
}

/** The answer without its timings (which differ from run to run). */
function answer(answer: Compiled | Failure): unknown {
  if ("failure" in answer) return answer;
  const { compileMs: _c, lintMs: _l, ...rest } = answer.result;
  return { ...rest, mappings: answer.mappings };
}

const compiledOk = (answer: Compiled | Failure) => ("failure" in answer ? answer : answer.result.ok);

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), "bilevel-compiler-"));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

const options = (cacheDir: string | null, notice: (line: string) => void = () => {}) => ({
  heapMb: 1024,
  startTimeoutMs: 20_000,
  cacheDir,
  notice,
});

test("the snapshot start and the plain start give the same answers on the compiler corpus", async () => {
  const notices: string[] = [];
  const fast = new Compiler(options(dir, (line) => notices.push(line)));
  const plain = new Compiler(options(null));
  try {
    for (const source of corpus()) {
      const a = await fast.compile(source, DEADLINE_MS);
      const b = await plain.compile(source, DEADLINE_MS);
      expect("failure" in a).toBe(false);
      expect(answer(a)).toEqual(answer(b));
    }
    expect(fast.startedFrom).toBe("snapshot");
    expect(plain.startedFrom).toBe("plain");
    // A mechanism that compiled comes with its source map's mappings (the child maps errors with them).
    const healthy = await fast.compile(HEALTHY, DEADLINE_MS);
    if ("failure" in healthy || !healthy.result.ok) throw new Error("HEALTHY did not compile");
    expect(healthy.mappings).toMatch(/^[A-Za-z0-9+/,;]+$/);
    // ...and a load of JS it did not just compile asks for them: null when the JS is not the source's.
    const js = healthy.result.mechanism.js;
    expect(await plain.mappings(HEALTHY, js, DEADLINE_MS)).toBe(healthy.mappings);
    expect(await fast.mappings(HEALTHY, `${js}\n;0;`, DEADLINE_MS)).toBeNull();
    expect(notices).toEqual(["preparing the compiler (once, ~2 s)"]);
    expect(fast.restarts).toBe(0);
  } finally {
    await Promise.all([fast.close(), plain.close()]);
  }
});

test("a damaged blob falls back to the plain start, and the next start builds it again", async () => {
  const first = new Compiler(options(dir));
  const reference = await first.compile(HEALTHY, DEADLINE_MS);
  await first.close();
  const found = findBlob(dir);
  if (found.kind !== "ready") throw new Error("no blob was built");

  truncateSync(found.blob, 4096);
  const damaged = new Compiler(options(dir));
  expect(answer(await damaged.compile(HEALTHY, DEADLINE_MS))).toEqual(answer(reference));
  expect(damaged.startedFrom).toBe("plain");
  await damaged.close();
  expect(findBlob(dir).kind).toBe("absent");

  const notices: string[] = [];
  const rebuilt = new Compiler(options(dir, (line) => notices.push(line)));
  expect(answer(await rebuilt.compile(HEALTHY, DEADLINE_MS))).toEqual(answer(reference));
  expect(rebuilt.startedFrom).toBe("snapshot");
  expect(notices).toHaveLength(1);
  await rebuilt.close();
  expect(findBlob(dir)).toEqual({ kind: "ready", blob: found.blob });
});

test("a start that is only slow keeps the blob (a loaded machine says nothing against it)", async () => {
  const first = new Compiler(options(dir));
  expect(compiledOk(await first.compile(HEALTHY, DEADLINE_MS))).toBe(true);
  await first.close();
  const found = findBlob(dir);
  if (found.kind !== "ready") throw new Error("no blob was built");
  // A 1 ms start deadline: the snapshot start misses it while its process runs, and so does the
  // plain one; the compile fails, but the blob is neither removed nor marked broken.
  const slow = new Compiler({ ...options(dir), startTimeoutMs: 1 });
  expect("failure" in (await slow.compile(HEALTHY, DEADLINE_MS))).toBe(true);
  await slow.close();
  expect(findBlob(dir)).toEqual(found);
});

test("two first starts at once both build, and leave one good blob", async () => {
  const pair = [new Compiler(options(dir)), new Compiler(options(dir))];
  try {
    const answers = await Promise.all(pair.map((c) => c.compile(HEALTHY, DEADLINE_MS)));
    expect(answers.map(compiledOk)).toEqual([true, true]);
    expect(pair.map((c) => c.startedFrom)).toEqual(["snapshot", "snapshot"]);
  } finally {
    await Promise.all(pair.map((c) => c.close()));
  }
  expect(readdirSync(dir).sort()).toEqual([
    expect.stringMatching(/^compiler-[0-9a-f]{32}\.blob$/),
    "inputs.txt",
  ]);
  const after = new Compiler(options(dir));
  expect(compiledOk(await after.compile(HEALTHY, DEADLINE_MS))).toBe(true);
  expect(after.startedFrom).toBe("snapshot");
  await after.close();
});

test("the blob's folder is the checkout's own under BILEVEL_CACHE (checkouts sharing it keep their blobs)", () => {
  const shared = path.join(tmpdir(), "shared-cache");
  const dir = compilerCacheDir({ BILEVEL_CACHE: shared });
  expect(path.dirname(dir)).toBe(path.join(shared, "compiler"));
  expect(path.basename(dir)).toMatch(/^[0-9a-f]{16}$/);
  // The same checkout always gets the same folder; the default cache is inside the checkout.
  expect(compilerCacheDir({ BILEVEL_CACHE: shared })).toBe(dir);
  expect(compilerCacheDir({}).startsWith(path.join(ROOT, ".bilevel", "cache", "compiler"))).toBe(true);
});

test("a folder that cannot hold the blob: the plain start, and no error or build notice", async () => {
  const file = path.join(dir, "not-a-folder");
  writeFileSync(file, "");
  const notices: string[] = [];
  const compiler = new Compiler(options(path.join(file, "compiler"), (line) => notices.push(line)));
  try {
    expect(compiledOk(await compiler.compile(HEALTHY, DEADLINE_MS))).toBe(true);
    expect(compiler.startedFrom).toBe("plain");
    expect(notices).toEqual([]);
  } finally {
    await compiler.close();
  }
});

test("a compile past its deadline is killed in the snapshot process; the next compile gets a new one", async () => {
  const compiler = new Compiler(options(dir));
  try {
    expect(compiledOk(await compiler.compile(HEALTHY, DEADLINE_MS))).toBe(true);
    expect(compiler.startedFrom).toBe("snapshot");
    // A type check of this size takes the compiler far longer than 1 ms.
    const slow = await compiler.compile(HEALTHY, 1);
    expect(slow).toEqual({ failure: "timeout", detail: "no answer within 1 ms" });
    expect(compiler.restarts).toBe(0);
    expect(compiledOk(await compiler.compile(HEALTHY, DEADLINE_MS))).toBe(true);
    expect(compiler.restarts).toBe(1);
    expect(compiler.startedFrom).toBe("snapshot");
  } finally {
    await compiler.close();
  }
});

test.each([
  ["from its snapshot", true],
  ["plainly", false],
])(
  "the compiler process started %s refuses lines that are not requests, and answers the next one",
  async (_how, snapshot) => {
    const start = snapshot ? snapshotStart(await buildBlob(dir)) : PLAIN_START;
    const lines = [
      "garbage",
      "[1,2]",
      '{"id":1}',
      '{"id":-3,"source":"x"}',
      '{"id":2,"source":"","extra":1}',
      '{"id":3,"source":""}',
    ];
    const run = spawnSync(process.execPath, start.args, {
      input: `${lines.join("\n")}\n`,
      encoding: "utf8",
      timeout: 60_000,
    });
    expect(run.status).toBe(0);
    const answers = run.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(answers[0]).toEqual({ ready: true });
    expect(answers.slice(1, 6)).toEqual([
      { id: 0, invalid: "the request is not JSON" },
      { id: 0, invalid: expect.stringMatching(/a request is/) },
      { id: 1, invalid: expect.stringMatching(/a request is/) },
      { id: 0, invalid: expect.stringMatching(/a request is/) },
      { id: 2, invalid: expect.stringMatching(/a request is/) },
    ]);
    expect(answers[6]).toMatchObject({ id: 3, result: { ok: false } });
    expect(answers).toHaveLength(7);
  },
);
