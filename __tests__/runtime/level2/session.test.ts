import { readFileSync } from "node:fs";
import path from "node:path";
import { afterEach, describe, expect, test } from "@jest/globals";
import {
  CODE_EXAMPLE,
  CRITIQUE_EXAMPLE,
  EXPLORE_EXAMPLE,
  SPECIFY_EXAMPLE,
} from "../../../runtime/level2/examples.ts";
import {
  CRITIQUE_SCHEMA,
  critiqueSchema,
  exploreSchema,
  STEP_MARKERS,
  specifySchema,
} from "../../../runtime/level2/prompts.ts";
import {
  extractCode,
  type ResearchSessionInput,
  runResearchSession,
} from "../../../runtime/level2/session.ts";
import {
  createLlmClient,
  type LlmClient,
  type LlmExchange,
  strictSchemaProblems,
} from "../../../runtime/llm/client.ts";
import type { ValidationReport } from "../../../sandbox/types.ts";
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
  fakeValidate,
  fenced,
  GOOD_SOURCE,
  SPEC_REPLY,
  TRACE,
} from "./fixtures.ts";

const API_TEXT = readFileSync(path.resolve(import.meta.dirname, "../../../mechanism-api/index.d.ts"), "utf8");

let mock: MockLlm | null = null;
afterEach(async () => {
  await mock?.close();
  mock = null;
});

type Routes = Partial<Record<keyof typeof STEP_MARKERS, MockStep[]>>;

const json = (value: unknown): MockStep => ({ content: JSON.stringify(value) });

function defaultRoutes(over: Routes = {}): Routes {
  return {
    explore: [json(EXPLORE_REPLY)],
    critique: [json(CRITIQUE_REPLY)],
    specify: [json(SPEC_REPLY)],
    generate: [{ content: fenced(GOOD_SOURCE) }],
    repair: [],
    ...over,
  };
}

async function session(
  routes: Routes,
  extra: Partial<ResearchSessionInput> = {},
  client: { structuredOutput?: "json_schema" | "json_object" | "tools" | "text" } = {},
): Promise<{
  outcome: Awaited<ReturnType<typeof runResearchSession>>;
  mock: MockLlm;
  validated: string[];
  streamed: LlmExchange[];
}> {
  mock = await startMockLlm(
    routeByMarker(
      (Object.keys(STEP_MARKERS) as (keyof typeof STEP_MARKERS)[]).map((step) => ({
        marker: STEP_MARKERS[step],
        steps: routes[step] ?? [],
      })),
    ),
  );
  const llm = createLlmClient(
    {
      baseURL: mock.baseURL,
      apiKeyEnv: "X_KEY",
      model: "mock-model",
      temperature: 0.2,
      maxTokens: 4000,
      timeoutMs: 600_000, // the local mock answers at once: no timeout on a loaded machine either
      maxRetries: 0,
      ...client,
    },
    {},
  ) as LlmClient;
  const validated: string[] = [];
  const streamed: LlmExchange[] = [];
  const outcome = await runResearchSession({
    llm,
    trace: TRACE,
    activeMechanisms: [
      { name: "tabu-search", description: "tabu on recent configs", hooks: ["filter", "observe"] },
    ],
    apiText: API_TEXT,
    validate: async (source) => {
      validated.push(source);
      return fakeValidate(source);
    },
    maxRepairs: 3,
    policy: { allowedCapabilities: ["tabu", "bandit", "space"] },
    onExchange: (e) => streamed.push(e),
    ...extra,
  });
  return { outcome, mock, validated, streamed };
}

const purposes = (exchanges: readonly LlmExchange[]) => exchanges.map((e) => e.purpose);

describe("Level 2 research session", () => {
  test("a good mechanism validates first time, after four calls that carry the trace, the candidates and the API", async () => {
    const { outcome, mock, validated, streamed } = await session(defaultRoutes());
    expect(outcome.status).toBe("validated");
    if (outcome.status !== "validated") return;
    expect(outcome.name).toBe("repeat-guard");
    expect(outcome.source).toBe(GOOD_SOURCE);
    expect(outcome.attempts).toBe(1);
    expect(validated).toEqual([GOOD_SOURCE]);
    expect(outcome.design.spec.name).toBe("repeat-guard");
    expect(outcome.design.critique.selected).toBe("repeat-guard");
    expect(purposes(outcome.exchanges)).toEqual([
      "level2.explore",
      "level2.critique",
      "level2.specify",
      "level2.generate",
    ]);
    expect(streamed).toEqual(outcome.exchanges);

    const [explore, critique, specify, generate] = mock.requests;
    expect(explore?.body?.response_format?.json_schema?.name).toBe("level2_explore");
    expect(explore?.body?.response_format?.json_schema?.strict).toBe(true);
    const exploreText = promptText(explore!);
    expect(exploreText).toContain("#13 WARMUP_RATIO=0.1 -> 2.4400 (Δ +0.0300) discarded");
    expect(exploreText).toContain("- WARMUP_RATIO: 2, 0, 0, 0.0250");
    expect(exploreText).toContain("- tabu-search [filter, observe]: tabu on recent configs");
    expect(exploreText).toContain("Δ < −k·σ = −2 × 0.0040 = −0.0080");
    expect(promptText(critique!)).toContain('"name": "ucb-param-picker"');
    expect(critique?.body?.response_format?.json_schema?.name).toBe("level2_critique");
    expect(promptText(specify!)).toContain("Why selected: Cheap, directly addresses the wasted repeat.");
    expect(generate?.body?.response_format).toBeUndefined();
    const generateText = promptText(generate!);
    expect(generateText).toContain(API_TEXT.trim());
    expect(generateText).toContain('"initialState": "{\\"streak\\": 0, \\"maxStreak\\": 3}"');
    expect(generateText).toContain('import type { ... } from "bilevel/mechanism-api"');
  });

  test("every round carries the run's facts and search space, so none has to guess them", async () => {
    const { mock } = await session(
      defaultRoutes({
        generate: [{ content: fenced(BROKEN_SOURCE) }],
        repair: [{ content: fenced(GOOD_SOURCE) }],
      }),
    );
    const rounds = mock.requests.map(promptText);
    expect(rounds).toHaveLength(5);
    const facts = [
      // ranges, log scales, choices
      "- MATRIX_LR: float [0.001, 0.2] log, default 0.04",
      '- WINDOW_PATTERN: choice of ["L","SL","SSSL"], default SSSL',
      // budget: iterations left, when the mechanism starts
      "after iteration 14 of 30 (numbered from 1): 16 iteration(s) left",
      // the noise estimate and the acceptance threshold, and what deltas are measured against
      "σ = 0.0040: the standard deviation of val_bpb over 3 baseline run(s)",
      "Δ < −k·σ = −2 × 0.0040 = −0.0080",
      "The first incumbent is the start config's baseline run on the run seed (val_bpb 2.4300)",
      // the history window, changes per proposal, filter rejections, limits, judgement
      "ctx.history: the last 12 search trials",
      "at most 2 parameter(s) per proposal",
      "when all 4 proposals of an iteration are rejected, it has no trial",
      "1000 ms, 1000 capability calls, 50 log lines",
      "Checked every 5 iterations: once active for 12 iterations",
    ];
    for (const [i, text] of rounds.entries()) {
      for (const fact of facts) expect([i, text.includes(fact)]).toEqual([i, true]);
    }
  });

  test("each JSON round shows a literal example reply, in every structured-output mode", async () => {
    for (const structuredOutput of ["json_schema", "json_object", "tools", "text"] as const) {
      // In tools mode the reply is a call of the function the request names (level2_<step>).
      const reply = (step: string, value: unknown): MockStep =>
        structuredOutput === "tools"
          ? { content: null, toolCall: { name: `level2_${step}`, arguments: JSON.stringify(value) } }
          : json(value);
      const { outcome, mock: m } = await session(
        defaultRoutes({
          explore: [reply("explore", EXPLORE_EXAMPLE)],
          critique: [reply("critique", CRITIQUE_EXAMPLE)],
          specify: [reply("specify", SPECIFY_EXAMPLE)],
          generate: [{ content: fenced(CODE_EXAMPLE) }],
        }),
        {},
        { structuredOutput },
      );
      // The examples pass their round's schema and checks: taken as replies, they need no repair.
      expect([structuredOutput, outcome.status]).toEqual([structuredOutput, "validated"]);
      expect(m.requests).toHaveLength(4);
      const [explore, critique, specify, generate] = m.requests.map(
        (r) => r.body?.messages?.[0]?.content ?? "",
      );
      expect(explore).toContain(JSON.stringify(EXPLORE_EXAMPLE, null, 1));
      expect(critique).toContain(JSON.stringify(CRITIQUE_EXAMPLE, null, 1));
      expect(specify).toContain(JSON.stringify(SPECIFY_EXAMPLE, null, 1));
      expect(generate).toContain(CODE_EXAMPLE.trimEnd());
      await m.close();
      mock = null;
    }
  });

  test("TypeScript that does not compile is repaired, with line:column and the offending line fed back", async () => {
    const { outcome, mock, validated } = await session(
      defaultRoutes({
        generate: [{ content: fenced(BROKEN_SOURCE) }],
        repair: [{ content: fenced(GOOD_SOURCE) }],
      }),
    );
    expect(outcome.status).toBe("validated");
    if (outcome.status !== "validated") return;
    expect(outcome.attempts).toBe(2);
    expect(validated).toEqual([BROKEN_SOURCE, GOOD_SOURCE]);
    expect(purposes(outcome.exchanges).at(-1)).toBe("level2.repair");
    const repair = mock.requests.at(-1)!;
    const messages = repair.body?.messages ?? [];
    expect(messages[0]?.content).toContain(STEP_MARKERS.repair);
    expect(messages[0]?.content).toContain(API_TEXT.trim());
    expect(messages.map((m) => m.role)).toEqual(["system", "user"]);
    const line = BROKEN_SOURCE.split("\n").findIndex((l) => l.includes("historyy")) + 1;
    const column = (BROKEN_SOURCE.split("\n")[line - 1] ?? "").indexOf("historyy") + 1;
    const feedback = messages[1]?.content ?? "";
    // The spec and the facts, the failing file itself, then its errors.
    expect(feedback).toContain('"name": "repeat-guard"');
    expect(feedback).toContain("16 iteration(s) left");
    expect(feedback).toContain(`The file that failed:\n\`\`\`ts\n${BROKEN_SOURCE.trimEnd()}\n\`\`\``);
    expect(feedback).toContain(
      `[compile/type-error] at line ${line}:${column}: Property 'historyy' does not exist`,
    );
    expect(feedback).toContain(`${line} |     const repeats = ctx.historyy`);
  });

  test("a mechanism that never validates is rejected after maxRepairs, with the reason", async () => {
    const looping = GOOD_SOURCE.replace("ctx.state.streak = 0;\n    return", "for (;;) {}\n    return");
    const { outcome, mock, validated } = await session(
      defaultRoutes({
        generate: [{ content: fenced(BROKEN_SOURCE) }],
        repair: [{ content: fenced(looping) }, { content: fenced(looping) }],
      }),
      { maxRepairs: 2 },
    );
    expect(outcome.status).toBe("rejected");
    if (outcome.status !== "rejected") return;
    expect(validated).toHaveLength(3);
    expect(outcome.attempts).toBe(3);
    expect(outcome.reason).toBe(
      "failed validation 3 time(s) (2 repair(s) allowed); last error filter/timeout: filter did not return within 1000 ms",
    );
    expect(outcome.source).toBe(looping);
    expect(outcome.lastReport?.error?.code).toBe("timeout");
    expect(purposes(outcome.exchanges)).toEqual([
      "level2.explore",
      "level2.critique",
      "level2.specify",
      "level2.generate",
      "level2.repair",
      "level2.repair",
    ]);
    expect(mock.requests).toHaveLength(6);
    expect(promptText(mock.requests[5]!)).toContain("[filter/timeout]: filter did not return within 1000 ms");
  });

  test("maxRepairs 0 rejects on the first failure without a repair call", async () => {
    const { outcome, mock } = await session(
      defaultRoutes({ generate: [{ content: fenced(BROKEN_SOURCE) }] }),
      {
        maxRepairs: 0,
      },
    );
    expect(outcome.status).toBe("rejected");
    if (outcome.status === "rejected")
      expect(outcome.reason).toMatch(/last error compile\/type-error at 17:\d+/);
    expect(mock.requests).toHaveLength(4);
  });

  test("an LLM error mid-session stops it with the step, the error and every exchange so far", async () => {
    const { outcome, mock, validated } = await session(defaultRoutes({ critique: [{ status: 500 }] }));
    expect(outcome.status).toBe("llm-error");
    if (outcome.status !== "llm-error") return;
    expect(outcome.step).toBe("critique");
    expect(outcome.error.code).toBe("http");
    expect(outcome.design.candidates?.map((c) => c.name)).toEqual(["repeat-guard", "ucb-param-picker"]);
    expect(outcome.design.spec).toBeUndefined();
    expect(purposes(outcome.exchanges)).toEqual(["level2.explore", "level2.critique"]);
    expect(outcome.exchanges[1]?.error).toMatch(/^http: 500/);
    expect(mock.requests).toHaveLength(2);
    expect(validated).toHaveLength(0);
  });

  test("an LLM error during a repair keeps the failing source and report", async () => {
    const { outcome } = await session(
      defaultRoutes({ generate: [{ content: fenced(BROKEN_SOURCE) }], repair: [{ status: 503 }] }),
    );
    expect(outcome.status).toBe("llm-error");
    if (outcome.status !== "llm-error") return;
    expect(outcome.step).toBe("repair");
    expect(outcome.source).toBe(BROKEN_SOURCE);
    expect(outcome.lastReport?.error?.code).toBe("type-error");
    expect(outcome.design.spec?.name).toBe("repeat-guard");
  });

  test("garbage from the LLM: explore never returns JSON -> llm-error invalid-json after the bounded repairs", async () => {
    const garbage: MockStep = { content: "I think you should try Bayesian optimisation!" };
    const { outcome, mock } = await session(defaultRoutes({ explore: [garbage, garbage, garbage] }), {
      maxJsonRepairs: 2,
    });
    expect(outcome.status).toBe("llm-error");
    if (outcome.status === "llm-error") expect(outcome.error.code).toBe("invalid-json");
    expect(mock.requests).toHaveLength(3);
  });

  test("semantic problems are fed back: a taken name, an unknown selection, a disallowed capability", async () => {
    const taken = {
      candidates: [{ ...EXPLORE_REPLY.candidates[0]!, name: "tabu-search" }, EXPLORE_REPLY.candidates[1]!],
    };
    const { outcome, mock } = await session(
      defaultRoutes({
        explore: [json(taken), json(EXPLORE_REPLY)],
        critique: [json({ ...CRITIQUE_REPLY, selected: "something-else" }), json(CRITIQUE_REPLY)],
        specify: [json({ ...SPEC_REPLY, capabilities: ["tabu"] }), json(SPEC_REPLY)],
      }),
      { policy: { allowedCapabilities: ["bandit"] } },
    );
    expect(outcome.status).toBe("validated");
    const texts = mock.requests.map((r) => r.body?.messages?.at(-1)?.content ?? "");
    expect(texts[1]).toContain("tabu-search: this name is already used in the run");
    // The candidates' names are in the critique's schema itself, and so is the bandit-only
    // policy: an unknown selection and "tabu" fail the enums.
    expect(texts[3]).toContain(
      '/selected: must be equal to one of the allowed values (["repeat-guard","ucb-param-picker"])',
    );
    expect(texts[5]).toContain("/capabilities/0: must be equal to one of the allowed values");
  });

  test("a spec whose state has no init, or whose initialState is not JSON, is sent back", async () => {
    const { outcome, mock } = await session(
      defaultRoutes({
        specify: [
          json({ ...SPEC_REPLY, hooks: ["filter", "observe"], initialState: "streak=0" }),
          json({ ...SPEC_REPLY, hooks: ["observe"], behaviour: [SPEC_REPLY.behaviour[1]] }),
          json(SPEC_REPLY),
        ],
      }),
    );
    expect(outcome.status).toBe("validated");
    const feedback = mock.requests.slice(3, 5).map((r) => r.body?.messages?.at(-1)?.content ?? "");
    expect(feedback[0]).toContain("initialState must be the JSON text of an object");
    expect(feedback[0]).toContain("must implement init");
    expect(feedback[1]).toContain("hooks must include at least one of guide, suggest, filter");
  });

  test("a generate reply without code is asked again before validation", async () => {
    const { outcome, validated, mock } = await session(
      defaultRoutes({
        generate: [{ content: "Sorry, here is a description instead." }, { content: fenced(GOOD_SOURCE) }],
      }),
    );
    // No fence: the prose itself is taken as code only if it has a default export; it has not.
    expect(outcome.status).toBe("validated");
    expect(validated).toEqual([GOOD_SOURCE]);
    expect(promptText(mock.requests[4]!)).toContain("no `export default`");
  });

  test("a validated manifest with a capability the policy does not grant is repaired, not accepted", async () => {
    const greedy = GOOD_SOURCE.replace("capabilities: []", 'capabilities: ["tabu"]');
    const { outcome, mock } = await session(
      defaultRoutes({ generate: [{ content: fenced(greedy) }], repair: [{ content: fenced(GOOD_SOURCE) }] }),
      { policy: { allowedCapabilities: ["bandit"] } },
    );
    expect(outcome.status).toBe("validated");
    expect(promptText(mock.requests.at(-1)!)).toContain(
      "capability tabu is not allowed by this run's policy",
    );
  });

  test("a validator that throws is a validator-error, not a rejection of the mechanism", async () => {
    const { outcome } = await session(defaultRoutes(), {
      validate: async (): Promise<ValidationReport> => {
        throw new Error("sandbox child died");
      },
    });
    expect(outcome.status).toBe("validator-error");
    if (outcome.status === "validator-error") {
      expect(outcome.message).toBe("sandbox child died");
      expect(outcome.exchanges).toHaveLength(4);
    }
  });
});

describe("schemas", () => {
  test("every Level 2 schema satisfies OpenAI's strict mode, with and without capabilities", () => {
    for (const allowed of [["tabu", "bandit", "space"] as const, [] as const]) {
      expect(strictSchemaProblems(exploreSchema(allowed))).toEqual([]);
      expect(strictSchemaProblems(specifySchema(allowed))).toEqual([]);
    }
    expect(strictSchemaProblems(CRITIQUE_SCHEMA)).toEqual([]);
    expect(strictSchemaProblems(critiqueSchema(["a-b", "c-d"]))).toEqual([]);
  });

  test("the critique's schema enumerates the candidates: the selection and each assessment's name", () => {
    const schema = critiqueSchema(["repeat-guard", "ucb-param-picker"]);
    const names = { type: "string", enum: ["repeat-guard", "ucb-param-picker"] };
    expect(schema.properties.selected).toEqual(names);
    expect(schema.properties.assessments.items.properties.name).toEqual(names);
  });
});

describe("extractCode", () => {
  test("fences, several blocks, no fence, unclosed fence, nothing", () => {
    expect(extractCode("```ts\nconst a = 1;\n```")).toBe("const a = 1;\n");
    expect(extractCode("intro\n```typescript\nlet x = 2;\n```\nouttro")).toBe("let x = 2;\n");
    expect(
      extractCode("```json\n{}\n```\n```ts\nexport default {};\nconst y = 3;\n```\n```ts\nz;\n```"),
    ).toBe("export default {};\nconst y = 3;\n");
    expect(extractCode("export default {};")).toBe("export default {};\n");
    expect(extractCode("```ts\nexport default {};")).toBe("export default {};\n");
    expect(extractCode("   ")).toBe("");
  });
});
