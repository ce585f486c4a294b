// Mistakes the contract's types catch at `check`, with a position, before anything runs: an
// undeclared capability, non-JSON state, a missing init, unchecked indexing, a newer API version.
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { compileMechanism } from "../../sandbox/compiler.ts";
import type { SandboxError } from "../../sandbox/types.ts";

const HEAD = `import type { Mechanism } from "bilevel/mechanism-api";\n`;

/** A file whose line 3 is the manifest's line and whose hooks start on line 4. */
function file(opts: { state?: string; caps?: string; hooks?: string; body: string; extra?: string }): string {
  const manifest = `{ name: "m", version: 1${opts.extra ?? ""}, hooks: ${opts.hooks ?? '["guide"]'}, capabilities: ${opts.caps ?? "[]"} }`;
  return `${HEAD}export default {\n  manifest: ${manifest},\n${opts.body}\n} satisfies Mechanism${opts.state ? `<${opts.state}>` : ""};\n`;
}

function errors(source: string): SandboxError[] {
  const r = compileMechanism(source);
  if (r.ok) throw new Error("expected a rejection");
  return r.errors;
}

function ok(source: string): void {
  const r = compileMechanism(source);
  expect(r.ok ? [] : r.errors).toEqual([]);
}

describe("Context offers only the capabilities the manifest declares", () => {
  test("an undeclared one is a type error at its use, naming the capability", () => {
    const errs = errors(file({ body: `  guide(ctx) { return String(ctx.bandit.stats("b").length); },` }));
    expect(errs[0]).toMatchObject({ stage: "compile", code: "type-error", line: 4, column: 41 });
    expect(errs[0]?.message).toMatch(/CapabilityNotDeclared<"bandit">/);
    expect(errs[0]?.message).toMatch(
      /ctx\.bandit is used but not declared: add "bandit" to manifest\.capabilities/,
    );
  });

  test("a declared one type-checks, and the next file's declaration is its own", () => {
    ok(file({ caps: '["bandit"]', body: `  guide(ctx) { return String(ctx.bandit.stats("b").length); },` }));
    expect(
      errors(
        file({ caps: '["tabu"]', body: `  guide(ctx) { return String(ctx.space.distance({}, {})); },` }),
      )[0]?.message,
    ).toMatch(/CapabilityNotDeclared<"space">/);
    ok(
      file({
        caps: '["tabu", "space"]',
        body: `  guide(ctx) { return String(ctx.space.distance({}, {}) + ctx.tabu.size("x")); },`,
      }),
    );
  });

  test("a manifest the compiler cannot read simply still gets the manifest's own error", () => {
    const errs = errors(file({ caps: '["tabu", "telepathy"]', body: `  guide() { return "x"; },` }));
    expect(errs.map((e) => e.code)).toContain("invalid-manifest");
  });
});

describe("state must be JSON-shaped", () => {
  test.each([
    ["a Set", "{ seen: Set<string> }", "seen is a Set"],
    ["a Map", "{ m: Map<string, number> }", "m is a Map"],
    ["a Date", "{ at: Date }", "at is a Date"],
    ["a function", "{ f: () => number }", "f is a function"],
    ["a nested Set", "{ a: { b: Set<number>[] } }", "a.b[] is a Set"],
    ["a bigint", "{ n: bigint }", "n is a bigint"],
  ])("%s is a type error at the state type", (_name, state, part) => {
    const errs = errors(
      file({
        state,
        hooks: '["init", "guide"]',
        body: `  init() { return {} as never; },\n  guide() { return "x"; },`,
      }),
    );
    expect(errs[0]).toMatchObject({ stage: "compile", code: "type-error", line: 6 });
    expect(errs[0]?.message).toContain(`is not JSON: ${part}`);
  });

  test("init returning a Set under plain `satisfies Mechanism`: the error at the return says a Set is not JSON", () => {
    const errs = errors(
      file({
        hooks: '["init", "guide"]',
        body: `  init: () => new Set<string>(),\n  guide() { return "x"; },`,
      }),
    );
    expect(errs[0]).toMatchObject({ stage: "compile", code: "type-error", line: 4 });
    expect(errs[0]?.message).toMatch(/init must return .*; this returns Set<string> \(a Set is not JSON/);
  });

  test("interfaces, optional and readonly properties, arrays, records and null are fine", () => {
    const source = `${HEAD}interface Arm { readonly id: string; pulls: number; last?: number | null }
interface State { arms: Arm[]; byName: Record<string, number>; pair: [number, string]; note: string | null }
export default {
  manifest: { name: "m", version: 1, hooks: ["init", "guide"], capabilities: [] },
  init: () => ({ arms: [], byName: {}, pair: [0, ""], note: null }),
  guide(ctx) { return String(ctx.state.arms.length); },
} satisfies Mechanism<State>;
`;
    ok(source);
  });
});

describe("init is required exactly when {} is not a valid state", () => {
  test("a state with required fields and no init: a type error", () => {
    const errs = errors(
      file({ state: "{ count: number }", body: `  guide(ctx) { return String(ctx.state.count); },` }),
    );
    expect(errs[0]).toMatchObject({ code: "type-error", line: 5 }); // the `satisfies` line
    expect(errs[0]?.message).toMatch(/init/);
  });

  test("a state whose fields are all optional, or the default state, needs none", () => {
    ok(file({ state: "{ count?: number }", body: `  guide(ctx) { return String(ctx.state.count ?? 0); },` }));
    ok(file({ body: `  guide() { return "x"; },` }));
  });
});

test("indexing is checked: ctx.history[0] may be undefined", () => {
  const errs = errors(file({ body: `  guide(ctx) { return String(ctx.history[0].valBpb); },` }));
  expect(errs[0]).toMatchObject({ code: "type-error", line: 4, column: 30 });
  expect(errs[0]?.message).toMatch(/possibly 'undefined'/);
  ok(file({ body: `  guide(ctx) { return String(ctx.history[0]?.valBpb ?? "none"); },` }));
});

describe("apiVersion", () => {
  test("1, or none, compiles; the manifest keeps what the file says", () => {
    const r = compileMechanism(file({ extra: ", apiVersion: 1", body: `  guide() { return "x"; },` }));
    expect(r.ok && r.mechanism.manifest.apiVersion).toBe(1);
    const none = compileMechanism(file({ body: `  guide() { return "x"; },` }));
    expect(none.ok && "apiVersion" in none.mechanism.manifest).toBe(false);
  });

  test("a newer version is refused with a clear error at the manifest, and only that", () => {
    // Written for another contract, its type errors here would mislead: ctx.tabu is not declared.
    const source = file({
      extra: ", apiVersion: 2",
      body: `  guide(ctx) { return String(ctx.tabu.size("x")); },`,
    });
    const errs = errors(source);
    expect(errs).toHaveLength(1);
    // At the apiVersion property itself.
    const column = (source.split("\n")[2] ?? "").indexOf("apiVersion") + 1;
    expect(column).toBeGreaterThan(1);
    expect(errs[0]).toMatchObject({ stage: "lint", code: "invalid-manifest", line: 3, column });
    expect(errs[0]?.message).toMatch(/mechanism API version 2, but this runtime has version 1/);
  });
});

test("every example mechanism compiles under these rules", () => {
  const dir = path.join(import.meta.dirname, "../../examples/mechanisms");
  const files = readdirSync(dir).filter((f) => f.endsWith(".ts"));
  expect(files.length).toBeGreaterThan(3);
  for (const f of files) {
    const r = compileMechanism(readFileSync(path.join(dir, f), "utf8"));
    expect({ file: f, errors: r.ok ? [] : r.errors }).toEqual({ file: f, errors: [] });
  }
});
