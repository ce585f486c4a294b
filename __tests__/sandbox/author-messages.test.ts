// Messages for mechanism authors: compile errors worded for the sandbox and placed where the mistake
// is, runtime faults at the mechanism's own line and naming the limit that was hit. Real compiler,
// real isolates (one sandbox child for the file).
import { Sandbox } from "../../sandbox/index.ts";
import type { SandboxError } from "../../sandbox/types.ts";
import { trace } from "./helpers.ts";

let sandbox: Sandbox;

beforeAll(async () => {
  // A generous deadline: these calls must not time out on a loaded machine (the timeout test has its own).
  sandbox = await Sandbox.start({ hookTimeoutMs: 10_000, capabilityCallBudget: 50 });
});
afterAll(async () => {
  await sandbox.close();
});

const HEAD = `import type { Mechanism } from "bilevel/mechanism-api";\n`;

/** The first error of validating `body` (lines after the import), or null if it is valid. */
async function firstError(body: string): Promise<SandboxError | null> {
  const report = await sandbox.validate(HEAD + body, trace);
  return report.error;
}

/** 1-based line and column of `needle`'s first occurrence in the whole source (HEAD + body). */
function at(body: string, needle: string): { line: number; column: number } {
  const lines = (HEAD + body).split("\n");
  const line = lines.findIndex((l) => l.includes(needle));
  if (line < 0) throw new Error(`${needle} not in the source`);
  return { line: line + 1, column: lines[line]!.indexOf(needle) + 1 };
}

function mechanism(manifest: string, hooks: string): string {
  return `export default {\n  manifest: ${manifest},\n${hooks}\n} satisfies Mechanism;\n`;
}

test("console.log is answered with ctx.log, not with the DOM library", async () => {
  const body = mechanism(
    `{ name: "a", version: 1, hooks: ["guide"], capabilities: [] }`,
    `  guide(ctx) {\n    console.log("here");\n    return "x";\n  },`,
  );
  const error = await firstError(body);
  expect(error).toMatchObject({ stage: "compile", code: "type-error", ...at(body, "console") });
  expect(error?.message).toMatch(/console is not available in the sandbox: use ctx\.log/);
  expect(error?.message).not.toMatch(/dom/i);
});

test("a timer says hooks are synchronous", async () => {
  const body = mechanism(
    `{ name: "a", version: 1, hooks: ["guide"], capabilities: [] }`,
    `  guide() {\n    setTimeout(() => 1, 5);\n    return "x";\n  },`,
  );
  expect((await firstError(body))?.message).toMatch(/synchronous/);
});

test("a wrong value from a hook's return is reported at that return, not at the hook's name", async () => {
  const body = mechanism(
    `{ name: "a", version: 1, hooks: ["filter"], capabilities: [] }`,
    `  filter(proposal, ctx) {\n    const ok = [1].map((x) => { return x; });\n    if (ctx.iteration > ok.length) return { verdict: "maybe" };\n    return { verdict: "accept" };\n  },`,
  );
  const error = await firstError(body);
  expect(error).toMatchObject({ code: "type-error", ...at(body, `return { verdict: "maybe" }`) });
  expect(error?.message).toMatch(/filter must return FilterVerdict; this returns \{ verdict: "maybe"; \}/);
});

test("an arrow hook's expression body is the return", async () => {
  const body = mechanism(
    `{ name: "a", version: 1, hooks: ["guide"], capabilities: [] }`,
    `  guide: (ctx) => ctx.iteration,`,
  );
  const error = await firstError(body);
  expect(error).toMatchObject({ code: "type-error", ...at(body, "ctx.iteration") });
  expect(error?.message).toMatch(/guide must return .*; this returns number/);
});

test("a hook whose parameters are wrong keeps the compiler's own message at the hook", async () => {
  const body = mechanism(
    `{ name: "a", version: 1, hooks: ["filter"], capabilities: [] }`,
    `  filter(proposal: number) {\n    return { verdict: "accept" };\n  },`,
  );
  const error = await firstError(body);
  expect(error).toMatchObject({ code: "type-error", ...at(body, "filter(proposal") });
  expect(error?.message).not.toMatch(/must return/);
});

test("a runtime throw is at the mechanism's own line and column", async () => {
  const body = mechanism(
    `{ name: "a", version: 1, hooks: ["filter"], capabilities: [] }`,
    `  filter(proposal, ctx) {\n    const old = ctx.history[ctx.history.length - 50];\n    return old!.kept ? { verdict: "accept" } : { verdict: "accept" };\n  },`,
  );
  const error = await firstError(body);
  expect(error).toMatchObject({ stage: "filter", code: "thrown", line: at(body, "old!.kept").line });
});

test("an undeclared capability: the call, the reason and the line that made it, even when caught", async () => {
  // Typed, it is a compile error at the use (Context has only the declared capabilities)…
  const typed = mechanism(
    `{ name: "a", version: 1, hooks: ["filter"], capabilities: [] }`,
    `  filter(proposal, ctx) {\n    ctx.tabu.add("recent", proposal.config, 3);\n    return { verdict: "accept" };\n  },`,
  );
  expect(await firstError(typed)).toMatchObject({
    stage: "compile",
    code: "type-error",
    line: at(typed, "ctx.tabu.add").line,
  });
  // …and code that escapes the types meets the run-time refusal.
  const body = mechanism(
    `{ name: "a", version: 1, hooks: ["filter"], capabilities: [] }`,
    `  filter(proposal, ctx) {\n    try {\n      (ctx as any).tabu.add("recent", proposal.config, 3);\n    } catch {}\n    return { verdict: "accept" };\n  },`,
  );
  const error = await firstError(body);
  expect(error).toMatchObject({
    stage: "filter",
    code: "capability-denied",
    line: at(body, ".tabu.add").line,
  });
  expect(error?.message).toMatch(/^tabu\.add: capability "tabu" denied \(the manifest does not declare it\)/);
});

test("the capability call budget names the call and the policy's limit", async () => {
  const body = mechanism(
    `{ name: "a", version: 1, hooks: ["filter"], capabilities: ["space"] }`,
    `  filter(proposal, ctx) {\n    for (let i = 0; i < 100; i++) ctx.space.distance(proposal.config, proposal.config);\n    return { verdict: "accept" };\n  },`,
  );
  const error = await firstError(body);
  expect(error).toMatchObject({ code: "capability-budget", line: at(body, "ctx.space.distance").line });
  expect(error?.message).toBe(
    "space.distance: the hook made more than 50 capability calls (policy.capabilityCallBudget)",
  );
});

test("a timeout says which hook and which limit", async () => {
  const body = mechanism(
    `{ name: "a", version: 1, hooks: ["observe"], capabilities: [] }`,
    `  observe() {\n    for (;;) {}\n  },`,
  );
  const quick = await Sandbox.start({ hookTimeoutMs: 300 });
  try {
    const error = (await quick.validate(HEAD + body, trace)).error;
    expect(error).toMatchObject({ stage: "observe", code: "timeout" });
    expect(error?.message).toBe("observe did not finish within 300 ms (policy.hookTimeoutMs)");
  } finally {
    await quick.close();
  }
});

test.each([
  ["Set<string>", "seen is a Set"],
  ["Map<string, number>", "seen is a Map"],
  ["{ inner: Date }[]", "seen[].inner is a Date"],
  ["(() => number) | null", "seen is a function"],
  ["bigint", "seen is a bigint"],
])(
  "a state of type { seen: %s } is not JSON: the message names the part (%s), at the type argument",
  async (type, part) => {
    const body =
      `interface State { seen: ${type} }\n` +
      `export default {\n  manifest: { name: "s", version: 1, hooks: ["init", "guide"], capabilities: [] },\n` +
      `  init: () => ({}) as State,\n  guide: () => "x",\n} satisfies Mechanism<State>;\n`;
    const error = await firstError(body);
    expect(error).toMatchObject({ stage: "compile", code: "type-error", ...at(body, "State>") });
    expect(error?.message).toContain(`state type State is not JSON: ${part}`);
  },
);

test("a JSON state of arrays, nullable numbers and nested objects passes", async () => {
  const body =
    "interface State { seen: string[]; best: { value: number | null; tags: [string, number][] } }\n" +
    `export default {\n  manifest: { name: "s", version: 1, hooks: ["init", "guide"], capabilities: [] },\n` +
    `  init: () => ({ seen: [], best: { value: null, tags: [] } }),\n  guide: () => "x",\n} satisfies Mechanism<State>;\n`;
  expect(await firstError(body)).toBeNull();
});
