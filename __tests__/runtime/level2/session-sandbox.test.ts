// The research session end to end with the real sandbox (compile, lint, isolated-vm dry run)
// and the mock LLM server: what the repair prompt carries are the sandbox's own errors.
import { readFileSync } from "node:fs";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, test } from "@jest/globals";
import { CODE_EXAMPLE } from "../../../runtime/level2/examples.ts";
import { repairSystem, STEP_MARKERS } from "../../../runtime/level2/prompts.ts";
import { type ResearchOutcome, runResearchSession } from "../../../runtime/level2/session.ts";
import { createLlmClient, type LlmClient } from "../../../runtime/llm/client.ts";
import { loadDefaultParams, Sandbox, syntheticTrace } from "../../../sandbox/index.ts";
import {
  type MockLlm,
  type MockStep,
  promptText,
  routeByMarker,
  startMockLlm,
} from "../../support/mock-llm-server.ts";
import {
  BROKEN_SOURCE,
  CRITIQUE_REPLY,
  EXPLORE_REPLY,
  fenced,
  GOOD_SOURCE,
  SPEC_REPLY,
  TRACE,
} from "./fixtures.ts";

const API_TEXT = readFileSync(path.resolve(import.meta.dirname, "../../../mechanism-api/index.d.ts"), "utf8");
const LOOPING = GOOD_SOURCE.replace("ctx.state.streak = 0;\n    return", "for (;;) {}\n    return");

let sandbox: Sandbox;
let mock: MockLlm | null = null;

beforeAll(async () => {
  sandbox = await Sandbox.start({ grantedCapabilities: ["tabu", "bandit", "space"], hookTimeoutMs: 300 });
});
afterAll(async () => {
  await sandbox.close();
});
afterEach(async () => {
  await mock?.close();
  mock = null;
});

async function run(generate: MockStep[], repair: MockStep[], maxRepairs: number): Promise<ResearchOutcome> {
  const routes: Record<keyof typeof STEP_MARKERS, MockStep[]> = {
    explore: [{ content: JSON.stringify(EXPLORE_REPLY) }],
    critique: [{ content: JSON.stringify(CRITIQUE_REPLY) }],
    specify: [{ content: JSON.stringify(SPEC_REPLY) }],
    generate,
    repair,
  };
  mock = await startMockLlm(
    routeByMarker(
      (Object.keys(routes) as (keyof typeof STEP_MARKERS)[]).map((s) => ({
        marker: STEP_MARKERS[s],
        steps: routes[s],
      })),
    ),
  );
  const llm = createLlmClient(
    {
      baseURL: mock.baseURL,
      apiKeyEnv: "X",
      model: "m",
      temperature: 0,
      maxTokens: 4000,
      timeoutMs: 600_000, // the local mock answers at once: no timeout on a loaded machine either
      maxRetries: 0,
    },
    {},
  ) as LlmClient;
  const trace = syntheticTrace(loadDefaultParams());
  return runResearchSession({
    llm,
    trace: TRACE,
    activeMechanisms: [],
    apiText: API_TEXT,
    validate: (source) => sandbox.validate(source, trace),
    maxRepairs,
    policy: { allowedCapabilities: ["tabu", "bandit", "space"] },
  });
}

describe("Level 2 session with the real sandbox", () => {
  test("a good mechanism compiles, lints, loads and dry-runs every hook first time", async () => {
    const outcome = await run([{ content: fenced(GOOD_SOURCE) }], [], 3);
    expect(outcome.status).toBe("validated");
    if (outcome.status !== "validated") return;
    expect(outcome.attempts).toBe(1);
    expect(outcome.report.ok).toBe(true);
    expect(outcome.report.manifest?.name).toBe("repeat-guard");
    expect(outcome.report.compiled?.js).toContain("repeat-guard");
    expect(outcome.report.stages.map((s) => s.stage)).toEqual(
      expect.arrayContaining(["compile", "lint", "load", "init", "filter", "observe"]),
    );
  });

  test("a type error is fed back with the compiler's line:column, and the repair validates", async () => {
    const outcome = await run([{ content: fenced(BROKEN_SOURCE) }], [{ content: fenced(GOOD_SOURCE) }], 3);
    expect(outcome.status).toBe("validated");
    if (outcome.status === "validated") expect(outcome.attempts).toBe(2);
    const feedback = mock!.requests.at(-1)?.body?.messages?.at(-1)?.content ?? "";
    expect(feedback).toMatch(/\[compile\/type-error\] at line 17:25: .*'historyy' does not exist/);
    expect(feedback).toContain("17 |     const repeats = ctx.historyy");
  });

  test("every compile error is fed back in one repair request", async () => {
    const two = BROKEN_SOURCE.replace(
      "ctx.state.streak = 0;",
      'ctx.state.streak = 0;\n    const nope: number = "x";',
    );
    expect(two).not.toBe(BROKEN_SOURCE);
    const outcome = await run([{ content: fenced(two) }], [{ content: fenced(GOOD_SOURCE) }], 3);
    expect(outcome.status).toBe("validated");
    const feedback = mock!.requests.at(-1)?.body?.messages?.at(-1)?.content ?? "";
    const historyy = feedback.indexOf("'historyy' does not exist");
    const nope = feedback.indexOf("Type 'string' is not assignable to type 'number'");
    expect(historyy).toBeGreaterThan(-1);
    expect(nope).toBeGreaterThan(-1);
  });

  test("a hook that loops forever times out in the dry run; without repairs it is rejected with that reason", async () => {
    const outcome = await run([{ content: fenced(LOOPING) }], [], 0);
    expect(outcome.status).toBe("rejected");
    if (outcome.status !== "rejected") return;
    expect(outcome.lastReport?.error).toMatchObject({ stage: "filter", code: "timeout" });
    expect(outcome.reason).toMatch(
      /^failed validation 1 time\(s\) \(0 repair\(s\) allowed\); last error filter\/timeout/,
    );
    expect(promptText(mock!.requests.at(-1)!)).toContain(STEP_MARKERS.generate);
  });
});

describe("the code rules the prompt states hold in the real sandbox", () => {
  const system = repairSystem(["tabu", "bandit", "space"], API_TEXT);
  const variant = (from: string, to: string): string => {
    expect(CODE_EXAMPLE).toContain(from);
    return CODE_EXAMPLE.replace(from, to);
  };
  const FILTER = "  filter(proposal, ctx) {\n";
  // Each case names its rule's text in the prompt and breaks it in the prompt's own example.
  const cases: { rule: string; source: () => string; fails: { code: string; message: RegExp } | null }[] = [
    {
      rule: "1. ONE file. The only import is",
      source: () => `import { readFileSync } from "node:fs";\n${CODE_EXAMPLE}`,
      fails: { code: "type-error", message: /node:fs/ },
    },
    {
      rule: '1. ONE file. The only import is `import type { ... } from "bilevel/mechanism-api";`',
      source: () => variant("import type { Change, Mechanism }", "import { Change, Mechanism }"),
      fails: { code: "forbidden-syntax", message: /use `import type/ },
    },
    {
      rule: "(without `satisfies`, untyped hook parameters are a",
      source: () => variant("} satisfies Mechanism<State>;", "};"),
      fails: { code: "type-error", message: /implicitly has an 'any' type/ },
    },
    {
      rule: "manifest is a literal: { name (kebab-case",
      source: () => variant('name: "discard-memory"', 'name: "Discard_Memory"'),
      fails: { code: "invalid-manifest", message: /name/ },
    },
    {
      rule: "3. manifest.hooks lists exactly the hooks defined.",
      source: () =>
        variant('hooks: ["init", "filter", "observe"]', 'hooks: ["init", "guide", "filter", "observe"]'),
      fails: { code: "missing-hook", message: /guide/ },
    },
    {
      rule: "no console (use ctx.log)",
      source: () => variant(FILTER, `${FILTER}    console.log("x");\n`),
      fails: { code: "type-error", message: /console|ctx\.log/ },
    },
    {
      rule: "6. No eval, Function",
      source: () => variant(FILTER, `${FILTER}    eval("1");\n`),
      fails: { code: "forbidden-syntax", message: /eval/ },
    },
    {
      rule: "an async hook does not type-check",
      source: () => variant(FILTER, "  async filter(proposal, ctx) {\n"),
      fails: { code: "type-error", message: /Promise|async/ },
    },
    {
      rule: "a state that is not\n   exact JSON",
      source: () => variant("return { discarded: [], streak: 0 };", "return { discarded: [], streak: NaN };"),
      fails: { code: "invalid-state", message: /NaN/ },
    },
    {
      rule: "8. In the dry run each declared hook runs once",
      source: () =>
        variant(FILTER, `${FILTER}    if (proposal.changes.length >= 0) throw new Error("boom");\n`),
      fails: { code: "thrown", message: /boom/ },
    },
    {
      rule: "9. A throw in a branch the dry run did not take quarantines the mechanism",
      source: () => variant(FILTER, `${FILTER}    if (ctx.iteration > 100000) throw new Error("late");\n`),
      fails: null,
    },
    {
      rule: "10. A suggested or modified value outside its range",
      source: () =>
        variant(
          FILTER,
          '  suggest() {\n    return { changes: [{ param: "MATRIX_LR", value: 1e9 }], rationale: "far" };\n  },\n' +
            FILTER,
        ).replace('hooks: ["init", "filter", "observe"]', 'hooks: ["init", "suggest", "filter", "observe"]'),
      fails: null,
    },
    {
      rule: "ctx has only those: using one not listed is a type error.",
      source: () => variant(FILTER, `${FILTER}    ctx.tabu.size("x");\n`),
      fails: { code: "type-error", message: /CapabilityNotDeclared<"tabu">/ },
    },
    {
      rule: "Index access is checked: ctx.history[i] or arr[0] has type `T | undefined`",
      source: () =>
        variant(FILTER, `${FILTER}    if (ctx.history[0].valBpb === 0) return { verdict: "accept" };\n`),
      fails: { code: "type-error", message: /possibly 'undefined'/ },
    },
  ];

  test("the prompt's example validates, and every case of a rule does what the rule says", async () => {
    const trace = syntheticTrace(loadDefaultParams());
    expect((await sandbox.validate(CODE_EXAMPLE, trace)).ok).toBe(true);
    for (const c of cases) {
      expect(system).toContain(c.rule);
      const report = await sandbox.validate(c.source(), trace);
      const got = report.error ? { code: report.error.code, message: report.error.message } : null;
      if (c.fails === null) expect([c.rule, got]).toEqual([c.rule, null]);
      else
        expect([c.rule, got]).toEqual([
          c.rule,
          { code: c.fails.code, message: expect.stringMatching(c.fails.message) },
        ]);
    }
  });
});
