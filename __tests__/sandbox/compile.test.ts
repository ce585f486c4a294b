// Compile + lint + manifest extraction, through the sandbox child.
import { Sandbox } from "../../sandbox/index.ts";
import type { SandboxError } from "../../sandbox/types.ts";
import { HEALTHY } from "./helpers.ts";

let sandbox: Sandbox;
beforeAll(async () => {
  sandbox = await Sandbox.start({ hookTimeoutMs: 500 });
});
afterAll(async () => {
  await sandbox.close();
});

const HEAD = `import type { Mechanism } from "bilevel/mechanism-api";\n`;
const wrap = (body: string, hooks = '["guide"]', caps = "[]") =>
  `${HEAD}export default {\n  manifest: { name: "m", version: 1, hooks: ${hooks}, capabilities: ${caps} },\n${body}\n} satisfies Mechanism;\n`;

async function errors(source: string): Promise<readonly SandboxError[]> {
  const outcome = await sandbox.compile(source);
  if (outcome.ok) throw new Error("expected a rejection");
  return outcome.errors;
}

test("a valid mechanism compiles to CommonJS with its manifest and hashes", async () => {
  const outcome = await sandbox.compile(HEALTHY);
  expect(outcome.ok).toBe(true);
  if (!outcome.ok) return;
  const m = outcome.mechanism;
  expect(m.manifest).toEqual({
    name: "healthy",
    version: 1,
    hooks: ["init", "guide", "filter", "observe"],
    capabilities: ["tabu", "bandit", "space"],
  });
  expect(m.js).toMatch(/exports\.default = /);
  expect(m.js).not.toMatch(/import|satisfies/);
  expect(m.sourceHash).toMatch(/^[0-9a-f]{64}$/);
  const again = await sandbox.compile(HEALTHY);
  expect(again.ok && again.mechanism.jsHash).toBe(m.jsHash);
});

test("type errors carry TS codes, line and column", async () => {
  const errs = await errors(wrap(`  guide(ctx) { const n: number = ctx.state; return fetch("x"); },`));
  expect(errs.every((e) => e.stage === "compile" && e.code === "type-error")).toBe(true);
  const names = errs.map((e) => e.message).join("\n");
  expect(names).toMatch(/TS\d+: .*fetch/); // no DOM lib: fetch does not exist
  const fetchError = errs.find((e) => /fetch/.test(e.message))!;
  expect(fetchError.line).toBe(4);
  expect(fetchError.column).toBe(52);
});

test("the API's types are enforced (a wrong verdict shape is a type error)", async () => {
  const errs = await errors(wrap(`  filter() { return { verdict: "maybe" }; },`, '["filter"]'));
  expect(errs[0]).toMatchObject({ stage: "compile", code: "type-error" });
});

test("Node and DOM globals do not type-check (types: [], lib es2022)", async () => {
  for (const expr of ["process.exit(1)", "setTimeout(() => 1, 1)", "document.title", "Buffer.from('x')"]) {
    const errs = await errors(wrap(`  guide() { ${expr}; return "x"; },`));
    expect(errs[0]?.code).toBe("type-error");
  }
});

test("syntax errors stop before type-checking", async () => {
  const errs = await errors(
    `${HEAD}export default { manifest: { name: "m", version: 1, hooks: [], capabilities: [] }, guide() { return ( };`,
  );
  expect(errs[0]).toMatchObject({ stage: "compile", code: "syntax-error", line: 2 });
  expect(errs[0]!.column).toBeGreaterThan(1);
});

test.each([
  ["eval", `  guide() { return String(eval("1")); },`, /eval/],
  ["Function", `  guide() { return String(new Function("return 1")()); },`, /Function/],
  ["globalThis", `  guide() { return String(globalThis); },`, /globalThis/],
  ["constructor", `  guide(ctx) { return String(ctx.constructor); },`, /constructor/],
  ["constructor via string", `  guide(ctx) { return String((ctx as any)["constructor"]); },`, /constructor/],
  ["__proto__", `  guide(ctx) { return String((ctx as any).__proto__); },`, /__proto__/],
  ["Reflect", `  guide(ctx) { return String(Reflect.ownKeys(ctx)); },`, /Reflect/],
  ["arguments", `  guide() { return String(arguments.length); },`, /arguments/],
  [
    "computed capability access",
    `  guide(ctx) { const k: string = "add"; return String((ctx.tabu as any)[k] ?? ""); },`,
    /literal member/,
  ],
  [
    "computed ctx access",
    `  guide(ctx) { const k = "tabu" as keyof typeof ctx; return String(ctx[k]); },`,
    /literal member/,
  ],
  ["dynamic import", `  guide() { void import("fs"); return "x"; },`, /dynamic import/],
  ["WebAssembly", `  guide() { return typeof WebAssembly; },`, /WebAssembly/],
  ["SharedArrayBuffer", `  guide() { return typeof SharedArrayBuffer; },`, /SharedArrayBuffer/],
  ["Atomics", `  guide() { return typeof Atomics; },`, /Atomics/],
  ["debugger", `  guide() { debugger; return "x"; },`, /debugger/],
])("lint rejects %s with a position", async (_name, body, pattern) => {
  const errs = await errors(wrap(body));
  const lint = errs.find((e) => e.stage === "lint");
  expect(lint).toMatchObject({ code: "forbidden-syntax" });
  expect(lint!.message).toMatch(pattern);
  expect(lint!.line).toBe(4);
  expect(lint!.column).toBeGreaterThan(2);
});

test.each([
  [
    "a value import",
    `import { Mechanism } from "bilevel/mechanism-api";\nexport default { manifest: { name: "m", version: 1, hooks: ["guide"], capabilities: [] }, guide() { return "x"; } } satisfies Mechanism;`,
    /import type/,
  ],
  [
    "another module",
    `import type { X } from "fs";\nexport default { manifest: { name: "m", version: 1, hooks: ["guide"], capabilities: [] }, guide() { return "x"; } };`,
    /limited to types/,
  ],
  [
    "require",
    `${HEAD}const fs = require("fs");\nexport default { manifest: { name: "m", version: 1, hooks: ["guide"], capabilities: [] }, guide() { return "x"; } } satisfies Mechanism;`,
    /require/,
  ],
  [
    "ambient declare",
    `${HEAD}declare const process: { exit(): void };\nexport default { manifest: { name: "m", version: 1, hooks: ["guide"], capabilities: [] }, guide() { process.exit(); return "x"; } } satisfies Mechanism;`,
    /declare/,
  ],
  [
    "top-level this",
    `${HEAD}const self_ = this;\nexport default { manifest: { name: "m", version: 1, hooks: ["guide"], capabilities: [] }, guide() { return String(self_); } } satisfies Mechanism;`,
    /this/,
  ],
  [
    "@ts-ignore",
    `${HEAD}// @ts-ignore\nconst n: number = "x";\nexport default { manifest: { name: "m", version: 1, hooks: ["guide"], capabilities: [] }, guide() { return String(n); } } satisfies Mechanism;`,
    /ts-ignore/,
  ],
])("lint rejects %s", async (_name, source, pattern) => {
  const errs = await errors(source);
  expect(errs.some((e) => e.stage === "lint" && pattern.test(e.message))).toBe(true);
});

test("`this` inside methods and ordinary class code is fine", async () => {
  const outcome = await sandbox.compile(
    `${HEAD}class Counter { n = 0; inc() { this.n++; return this.n; } }\n` +
      `export default { manifest: { name: "m", version: 1, hooks: ["guide"], capabilities: [] }, helper() { return 1; }, guide() { return String(new Counter().inc() + this.helper()); } };`,
  );
  expect(outcome.ok).toBe(true);
});

test.each([
  ["no default export", `${HEAD}export const x = 1;`, "invalid-manifest", /default export/],
  [
    "a default function",
    `${HEAD}export default function () { return 1; }`,
    "invalid-manifest",
    /object literal/,
  ],
  [
    "a computed manifest",
    `${HEAD}const hooks = ["guide"] as const;\nexport default { manifest: { name: "m", version: 1, hooks, capabilities: [] }, guide() { return "x"; } };`,
    "invalid-manifest",
    /literal/,
  ],
  [
    "a bad name",
    `${HEAD}export default { manifest: { name: "Bad Name", version: 1, hooks: ["guide"], capabilities: [] }, guide() { return "x"; } };`,
    "invalid-manifest",
    /name/,
  ],
  [
    "a declared hook that is missing",
    `${HEAD}export default { manifest: { name: "m", version: 1, hooks: ["guide", "filter"], capabilities: [] }, guide() { return "x"; } };`,
    "missing-hook",
    /filter/,
  ],
  [
    "a hook that is not declared",
    `${HEAD}export default { manifest: { name: "m", version: 1, hooks: ["guide"], capabilities: [] }, guide() { return "x"; }, observe() {} };`,
    "missing-hook",
    /observe/,
  ],
  [
    "a spread",
    `${HEAD}const base = {};\nexport default { ...base, manifest: { name: "m", version: 1, hooks: ["guide"], capabilities: [] }, guide() { return "x"; } };`,
    "invalid-manifest",
    /spread/,
  ],
])("manifest extraction rejects %s", async (_name, source, code, pattern) => {
  const errs = await errors(source);
  const e = errs.find((x) => x.code === code);
  expect(e).toBeDefined();
  expect(e!.message).toMatch(pattern);
  expect(e!.line).toBeGreaterThanOrEqual(1);
});

test("a const default export is followed to its object literal", async () => {
  const outcome = await sandbox.compile(
    `${HEAD}const m: Mechanism = { manifest: { name: "via-const", version: 2, hooks: ["guide"], capabilities: [] }, guide() { return "x"; } };\nexport default m;`,
  );
  expect(outcome.ok && outcome.mechanism.manifest.name).toBe("via-const");
});

test("garbage is rejected, never thrown: empty, binary, huge, deeply nested", async () => {
  expect((await errors(""))[0]?.code).toBe("invalid-manifest");
  const binary = Buffer.from(Array.from({ length: 2000 }, (_, i) => (i * 7919) % 256)).toString("latin1");
  expect((await errors(binary))[0]?.stage).toBe("compile");
  const huge = await errors(`// ${"x".repeat(600 * 1024)}`);
  expect(huge[0]).toMatchObject({ stage: "compile", code: "syntax-error" });
  expect(huge[0]!.message).toMatch(/limit/);
  const nested = await errors(`${HEAD}const x = ${"[".repeat(5000)}${"]".repeat(5000)};`);
  expect(nested[0]?.stage).toBe("compile");
  // The compiler is still healthy afterwards.
  expect((await sandbox.compile(HEALTHY)).ok).toBe(true);
});
