// The schemas sent to the LLM enumerate what can be enumerated: a proposal's parameter names are
// the active parameters (each with its choices or range), Level 1.5's names are the search
// space's. A model that follows the schema cannot name an unknown parameter; one that does not is
// told exactly what is allowed. Every schema passes OpenAI's strict mode.
import { afterEach, expect, test } from "@jest/globals";
import type { ParamSpec } from "../../../mechanism-api/index.d.ts";
import { LlmProposer } from "../../../runtime/level1/llm-proposer.ts";
import { proposalSchema } from "../../../runtime/level1/proposer.ts";
import { LlmStrategist } from "../../../runtime/level15/strategists.ts";
import { strategySchema } from "../../../runtime/level15/strategy.ts";
import { type ChatJson, faultOf } from "../../../runtime/llm/chat-json.ts";
import { createLlmClient, strictSchemaProblems } from "../../../runtime/llm/client.ts";
import { validatorFor } from "../../../runtime/llm/schema.ts";
import { type MockLlm, startMockLlm } from "../../support/mock-llm-server.ts";

const PARAMS: ParamSpec[] = [
  { name: "LR", kind: "float", min: 0.001, max: 1, log: true, default: 0.04, description: "lr" },
  { name: "DEPTH", kind: "int", min: 1, max: 24, default: 2, description: "layers" },
  { name: "HEAD_DIM", kind: "choice", choices: [32, 64, 128], default: 64, description: "head" },
  { name: "WINDOW", kind: "choice", choices: ["L", "SL"], default: "L", description: "window" },
];

let mock: MockLlm | null = null;
afterEach(async () => {
  await mock?.close();
  mock = null;
});

test("a proposal's changes enumerate the active parameters, each with its range or choices", () => {
  const schema = proposalSchema(3, PARAMS.slice(1));
  expect(strictSchemaProblems(schema)).toEqual([]);
  expect(schema.properties.changes.items).toEqual({
    anyOf: [
      {
        type: "object",
        additionalProperties: false,
        required: ["param", "value"],
        properties: {
          param: { type: "string", enum: ["DEPTH"] },
          value: { type: "integer", minimum: 1, maximum: 24 },
        },
      },
      {
        type: "object",
        additionalProperties: false,
        required: ["param", "value"],
        properties: {
          param: { type: "string", enum: ["HEAD_DIM"] },
          value: { type: "number", enum: [32, 64, 128] },
        },
      },
      {
        type: "object",
        additionalProperties: false,
        required: ["param", "value"],
        properties: {
          param: { type: "string", enum: ["WINDOW"] },
          value: { type: "string", enum: ["L", "SL"] },
        },
      },
    ],
  });
  const validate = validatorFor(schema);
  const ok = (changes: unknown) => validate({ changes, rationale: "r" });
  expect(
    ok([
      { param: "DEPTH", value: 4 },
      { param: "WINDOW", value: "SL" },
    ]),
  ).toBe(true);
  expect(ok([{ param: "LR", value: 0.01 }])).toBe(false); // not active
  expect(ok([{ param: "DEPTH", value: 4.5 }])).toBe(false);
  expect(ok([{ param: "HEAD_DIM", value: 48 }])).toBe(false);
  expect(ok([{ param: "WINDOW", value: 64 }])).toBe(false);
  // With no parameter list the schema is the old, open one (kept for callers without a space).
  expect(strictSchemaProblems(proposalSchema(2))).toEqual([]);
  expect(validatorFor(proposalSchema(2))({ changes: [{ param: "ANY", value: "x" }], rationale: "" })).toBe(
    true,
  );
});

test("Level 1.5's freeze and unfreeze enumerate the parameter names", () => {
  const schema = strategySchema(["LR", "DEPTH"]);
  expect(strictSchemaProblems(schema)).toEqual([]);
  expect(schema.properties.freeze.items).toEqual({ type: "string", enum: ["LR", "DEPTH"] });
  const validate = validatorFor(schema);
  const reply = { strategy: "explore", freeze: ["LR"], unfreeze: [], guidance: "", rationale: "" };
  expect(validate(reply)).toBe(true);
  expect(validate({ ...reply, freeze: ["WIDTH"] })).toBe(false);
});

/** A ChatJson over a real client and a local server with `replies`. */
async function chatJson(replies: string[]): Promise<{ chat: ChatJson; mock: MockLlm }> {
  mock = await startMockLlm(replies.map((content) => ({ content })));
  const llm = createLlmClient(
    {
      baseURL: mock.baseURL,
      apiKeyEnv: "K",
      model: "m",
      temperature: 0,
      maxTokens: 100,
      timeoutMs: 600_000,
      maxRetries: 0,
    },
    {},
  )!;
  const chat: ChatJson = async (request) => {
    const r = await llm.chatJson({
      purpose: request.purpose,
      messages: [
        { role: "system", content: request.system },
        { role: "user", content: request.user },
      ],
      schema: request.schema,
      schemaName: request.schemaName,
      maxRepairs: request.maxRepairs,
      ...(request.check ? { check: request.check } : {}),
    });
    return r.ok
      ? { ok: true, value: r.value }
      : { ok: false, reason: r.error.message, fault: faultOf(r.error.code) };
  };
  return { chat, mock };
}

test("the proposer sends the enumerated schema; an unknown name is sent back with the allowed names", async () => {
  const { chat, mock } = await chatJson([
    JSON.stringify({ changes: [{ param: "WIDTH", value: 3 }], rationale: "wider" }),
    JSON.stringify({ changes: [{ param: "DEPTH", value: 40 }], rationale: "deeper" }),
    JSON.stringify({ changes: [{ param: "DEPTH", value: 4 }], rationale: "deeper" }),
  ]);
  const proposer = new LlmProposer(chat, 2);
  const result = await proposer.propose({
    iteration: 1,
    params: PARAMS,
    search: { strategy: "balanced", active: ["DEPTH", "HEAD_DIM"], frozen: ["LR", "WINDOW"], guidance: "" },
    incumbent: { config: { LR: 0.04, DEPTH: 2, HEAD_DIM: 64, WINDOW: "L" }, valBpb: 2 },
    best: null,
    history: [],
    crashLessons: [],
    guidance: [],
    rejected: [],
    maxChanges: 2,
    seed: 1,
    attempt: 0,
  });
  expect(result).toEqual({ ok: true, changes: [{ param: "DEPTH", value: 4 }], rationale: "deeper" });
  const sent = mock.requests[0]?.body?.response_format?.json_schema?.schema as {
    properties: { changes: { items: { anyOf: { properties: { param: unknown } }[] } } };
  };
  expect(sent.properties.changes.items.anyOf.map((b) => b.properties.param)).toEqual([
    { type: "string", enum: ["DEPTH"] },
    { type: "string", enum: ["HEAD_DIM"] },
  ]);
  const feedback = (i: number) => mock.requests[i]?.body?.messages?.at(-1)?.content ?? "";
  expect(feedback(1)).toContain(
    '/changes/0/param: must be equal to one of the allowed values (["DEPTH","HEAD_DIM"])',
  );
  expect(feedback(2)).toContain("/changes/0/value: must be <= 24");
  expect(feedback(2)).not.toContain("HEAD_DIM");
});

test("the strategist sends the parameter names as an enum", async () => {
  const { chat, mock } = await chatJson([
    JSON.stringify({ strategy: "exploit", freeze: ["DEPTH"], unfreeze: [], guidance: "g", rationale: "r" }),
  ]);
  const result = await new LlmStrategist(chat, 0).decide({
    iteration: 3,
    current: { strategy: "balanced", active: ["LR", "DEPTH"], frozen: [], guidance: "" },
    params: PARAMS,
    trials: [],
    keptThisCycle: 0,
  });
  expect(result.ok).toBe(true);
  const sent = mock.requests[0]?.body?.response_format?.json_schema?.schema as {
    properties: { freeze: { items: unknown } };
  };
  expect(sent.properties.freeze.items).toEqual({
    type: "string",
    enum: ["LR", "DEPTH", "HEAD_DIM", "WINDOW"],
  });
});
