// The research session end to end with the real sandbox (compile, lint, isolated-vm dry run)
// and the mock LLM server: what the repair prompt carries are the sandbox's own errors.
import { readFileSync } from "node:fs";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, test } from "@jest/globals";
import { STEP_MARKERS } from "../../../runtime/level2/prompts.ts";
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
