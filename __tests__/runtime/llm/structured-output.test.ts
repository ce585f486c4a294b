// Structured-output modes over a real local server: what each mode sends, where each reads its
// JSON back, `auto` falling back on an "unsupported" 400 (and only then), reasoning replies, and
// replies of every wrong shape.
import { afterEach, describe, expect, test } from "@jest/globals";
import { createLlmClient, type LlmConfig, type OpenAiLlmClient } from "../../../runtime/llm/client.ts";
import { formatAjvErrors, parseJsonObjectReply, validatorFor } from "../../../runtime/llm/schema.ts";
import {
  isFormatUnsupported,
  isUnknownModel,
  modeChain,
  type StructuredMode,
  splitThinking,
} from "../../../runtime/llm/structured-output.ts";
import {
  type MockLlm,
  type MockScript,
  promptText,
  startMockLlm,
  systemPrompt,
} from "../../support/mock-llm-server.ts";

const BASE: LlmConfig = {
  baseURL: null,
  apiKeyEnv: "TEST_LLM_KEY",
  model: "mock-model",
  temperature: 0.3,
  maxTokens: 500,
  timeoutMs: 600_000,
  maxRetries: 0,
  retryBaseMs: 1,
};

const SCHEMA = {
  type: "object",
  additionalProperties: false,
  required: ["answer"],
  properties: { answer: { type: "string", enum: ["yes", "no"] } },
} as const;

const DEEPSEEK_400 = {
  status: 400,
  body: {
    error: {
      message: "This response_format type is unavailable now",
      type: "invalid_request_error",
      param: null,
      code: "invalid_request_error",
    },
  },
} as const;

let mock: MockLlm | null = null;
afterEach(async () => {
  await mock?.close();
  mock = null;
});

async function setup(
  script: MockScript,
  overrides: Partial<LlmConfig> = {},
): Promise<{ llm: OpenAiLlmClient; mock: MockLlm }> {
  mock = await startMockLlm(script);
  const llm = createLlmClient({ ...BASE, baseURL: mock.baseURL, ...overrides }, {});
  if (!llm) throw new Error("expected a client");
  return { llm, mock };
}

const ask = (llm: OpenAiLlmClient, maxRepairs = 0, mode?: StructuredMode) =>
  llm.chatJson<{ answer: string }>({
    purpose: "test",
    messages: [
      { role: "system", content: "You answer." },
      { role: "user", content: "Well?" },
    ],
    schema: SCHEMA,
    schemaName: "answer",
    maxRepairs,
    ...(mode ? { mode } : {}),
  });

describe("what each mode sends and reads", () => {
  test("json_object: response_format json_object; the schema and the word JSON in the system prompt", async () => {
    const { llm, mock } = await setup([{ content: '{"answer":"yes"}' }], { structuredOutput: "json_object" });
    const r = await ask(llm);
    expect(r).toMatchObject({ ok: true, value: { answer: "yes" } });
    const body = mock.requests[0]?.body;
    expect(body?.response_format).toEqual({ type: "json_object" });
    expect(systemPrompt(mock.requests[0]!)).toContain("You answer.\n\nReply with one JSON object");
    expect(systemPrompt(mock.requests[0]!)).toContain(JSON.stringify(SCHEMA));
    expect(r.exchanges[0]?.mode).toBe("json_object");
    // The stored conversation is the one sent, instruction included.
    expect(r.exchanges[0]?.messages[0]?.content).toContain("JSON Schema");
  });

  test("tools: one function whose parameters are the schema, forced by tool_choice; read from the call", async () => {
    const { llm, mock } = await setup(
      [{ content: null, toolCall: { name: "answer", arguments: '{"answer":"no"}' } }],
      {
        structuredOutput: "tools",
      },
    );
    const r = await ask(llm);
    expect(r).toMatchObject({ ok: true, value: { answer: "no" } });
    const body = mock.requests[0]?.body;
    expect(body?.response_format).toBeUndefined();
    expect(body?.tools?.[0]?.function).toEqual({
      name: "answer",
      description: "Submit the answer.",
      parameters: SCHEMA,
    });
    expect(body?.tool_choice).toEqual({ type: "function", function: { name: "answer" } });
    expect(r.exchanges[0]?.reply).toBe('{"answer":"no"}');
  });

  test("tools: a server that ignores tool_choice and answers in text is read from the content", async () => {
    const { llm } = await setup([{ content: 'Here: {"answer":"yes"}' }], { structuredOutput: "tools" });
    expect(await ask(llm)).toMatchObject({ ok: true, value: { answer: "yes" } });
  });

  test("text: no response_format; the schema in the prompt; the JSON found in prose or a fence", async () => {
    const { llm, mock } = await setup(
      [
        { content: 'Sure. The answer is {"answer": "no"} as requested.' },
        { content: 'Thinking {not json} first.\n```json\n{"answer":"yes"}\n```' },
      ],
      { structuredOutput: "text" },
    );
    expect(await ask(llm)).toMatchObject({ ok: true, value: { answer: "no" } });
    expect(await ask(llm)).toMatchObject({ ok: true, value: { answer: "yes" } });
    expect(mock.requests[0]?.body?.response_format).toBeUndefined();
    expect(promptText(mock.requests[0]!)).toContain("No prose and no code fence");
  });

  test("every mode validates with ajv: an off-schema reply is repaired whatever the mode", async () => {
    for (const mode of ["json_schema", "json_object", "tools", "text"] as const) {
      const wrong = '{"answer":"maybe"}';
      const right = '{"answer":"yes"}';
      const step = (a: string) =>
        mode === "tools" ? { content: null, toolCall: { name: "answer", arguments: a } } : { content: a };
      const { llm, mock: m } = await setup([step(wrong), step(right)], { structuredOutput: mode });
      const r = await ask(llm, 1);
      expect(r).toMatchObject({ ok: true, value: { answer: "yes" } });
      expect(r.exchanges[0]?.errorCode).toBe("schema");
      expect(m.requests[1]?.body?.messages?.at(-1)?.content).toContain(
        '/answer: must be equal to one of the allowed values (["yes","no"])',
      );
      await m.close();
      mock = null;
    }
  });

  test("temperature null is not sent at all", async () => {
    const { llm, mock } = await setup([{ content: '{"answer":"yes"}' }], { temperature: null });
    await ask(llm);
    expect(mock.requests[0]?.body).not.toHaveProperty("temperature");
    expect(mock.requests[0]?.raw).not.toContain("temperature");
  });
});

describe("auto: falling back on an 'unsupported' 400", () => {
  test("DeepSeek's 400 moves the call (and the client) from json_schema to json_object", async () => {
    const { llm, mock } = await setup([
      DEEPSEEK_400,
      { content: '{"answer":"yes"}' },
      { content: '{"answer":"no"}' },
    ]);
    const changes: string[] = [];
    llm.onModeChange((mode, reason) => changes.push(`${mode}: ${reason}`));
    const r = await ask(llm);
    expect(r).toMatchObject({ ok: true, value: { answer: "yes" } });
    expect(r.exchanges.map((e) => [e.mode, e.errorCode])).toEqual([
      ["json_schema", "http"],
      ["json_object", null],
    ]);
    expect(changes).toEqual(["json_object: 400 This response_format type is unavailable now"]);
    expect(llm.structuredMode).toBe("json_object");
    // The next call starts where the last one ended up: no second 400.
    expect(await ask(llm)).toMatchObject({ ok: true, value: { answer: "no" } });
    expect(mock.requests.map((q) => q.body?.response_format?.type)).toEqual([
      "json_schema",
      "json_object",
      "json_object",
    ]);
  });

  test("each unsupported mode in turn, down to text", async () => {
    const refuse = (what: string) => ({
      status: 400,
      body: { error: { message: `${what} is not supported`, param: null } },
    });
    const { llm } = await setup([
      refuse("response_format json_schema"),
      refuse("response_format json_object"),
      {
        status: 400,
        body: {
          error: { code: 400, message: "tools param requires --jinja flag", type: "invalid_request_error" },
        },
      },
      { content: '{"answer":"yes"}' },
    ]);
    const r = await ask(llm);
    expect(r.ok).toBe(true);
    expect(r.exchanges.map((e) => e.mode)).toEqual(["json_schema", "json_object", "tools", "text"]);
    expect(llm.structuredMode).toBe("text");
  });

  test("other 400s do not fall back: a bad model, a bad parameter", async () => {
    const { llm, mock } = await setup([
      { status: 400, body: { error: { message: "Model Not Exist", type: "invalid_request_error" } } },
      {
        status: 400,
        body: {
          error: {
            message: "Unsupported parameter: 'temperature' is not supported with this model.",
            param: "temperature",
            code: "unsupported_parameter",
          },
        },
      },
    ]);
    expect((await ask(llm)).ok).toBe(false);
    expect((await ask(llm)).ok).toBe(false);
    expect(mock.requests).toHaveLength(2);
    expect(llm.structuredMode).toBe("json_schema");
  });

  test("a fixed mode never falls back; a forced mode (the preflight's) neither", async () => {
    const { llm, mock } = await setup([DEEPSEEK_400, DEEPSEEK_400], { structuredOutput: "json_schema" });
    const r = await ask(llm);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error).toMatchObject({ code: "http", status: 400 });
    const auto = createLlmClient({ ...BASE, baseURL: mock.baseURL }, {})!;
    expect((await ask(auto, 0, "json_schema")).ok).toBe(false);
    expect(auto.structuredMode).toBe("json_schema");
    expect(mock.requests).toHaveLength(2);
  });

  test("the fallback order and the chain a setting allows", () => {
    expect(modeChain("auto")).toEqual(["json_schema", "json_object", "tools", "text"]);
    expect(modeChain("auto", "tools")).toEqual(["tools", "text"]);
    expect(modeChain("json_object")).toEqual(["json_object"]);
  });

  test("which errors mean 'this format is unsupported', and which 'this model does not exist'", () => {
    const http = (status: number, message: string, extra: object = {}) => ({
      code: "http" as const,
      status,
      message,
      ...extra,
    });
    expect(isFormatUnsupported(http(400, "This response_format type is unavailable now"))).toBe(true);
    expect(isFormatUnsupported(http(422, "response_format.type `json_schema` is unavailable now"))).toBe(
      true,
    );
    expect(
      isFormatUnsupported(
        http(
          400,
          "Invalid parameter: 'response_format' of type 'json_schema' is not supported with this model.",
        ),
      ),
    ).toBe(true);
    expect(isFormatUnsupported(http(400, "tools param requires --jinja flag"))).toBe(true);
    expect(
      isFormatUnsupported(http(404, "No endpoints found that can handle the requested parameters.")),
    ).toBe(true);
    expect(isFormatUnsupported(http(400, "bad", { param: "response_format" }))).toBe(true);
    expect(isFormatUnsupported(http(400, "Model Not Exist"))).toBe(false);
    expect(isFormatUnsupported(http(500, "response_format unavailable"))).toBe(false);
    expect(isFormatUnsupported({ code: "schema", message: "response_format invalid" })).toBe(false);
    expect(isUnknownModel(http(400, "Model Not Exist"))).toBe(true);
    expect(isUnknownModel(http(404, "The model `x` does not exist."))).toBe(true);
    expect(isUnknownModel(http(404, 'model "x" not found, try pulling it first'))).toBe(true);
    expect(isUnknownModel(http(400, "x is not a valid model ID"))).toBe(true);
    expect(isUnknownModel(http(404, "whatever", { providerCode: "model_not_found" }))).toBe(true);
    expect(isUnknownModel(http(404, "Not Found"))).toBe(false);
    expect(isUnknownModel(http(401, "model not found"))).toBe(false);
  });
});

describe("reasoning models", () => {
  test("reasoning_content (or reasoning) is stored, not parsed; reasoning tokens are counted", async () => {
    const usage = {
      prompt_tokens: 40,
      completion_tokens: 300,
      completion_tokens_details: { reasoning_tokens: 280 },
    };
    const { llm } = await setup([
      { content: '{"answer":"yes"}', reasoning: 'I think {"answer":"no"}... no, yes.', usage },
      { content: '{"answer":"no"}', reasoning: "brief", reasoningField: "reasoning" },
    ]);
    const r1 = await ask(llm);
    expect(r1).toMatchObject({ ok: true, value: { answer: "yes" } });
    expect(r1.exchanges[0]).toMatchObject({
      reasoning: 'I think {"answer":"no"}... no, yes.',
      reasoningTokens: 280,
      completionTokens: 300,
    });
    const r2 = await ask(llm);
    expect(r2).toMatchObject({ ok: true, value: { answer: "no" } });
    expect(r2.exchanges[0]?.reasoning).toBe("brief");
  });

  test("a <think> block in the content is split off (a server without a reasoning parser)", async () => {
    const { llm } = await setup([{ content: '<think>\n{"answer":"no"} hmm\n</think>\n\n{"answer":"yes"}' }]);
    const r = await ask(llm);
    expect(r).toMatchObject({ ok: true, value: { answer: "yes" } });
    expect(r.exchanges[0]?.reasoning).toBe('{"answer":"no"} hmm');
    expect(splitThinking("<think>cut off")).toEqual({ content: "", reasoning: "cut off" });
    expect(splitThinking("plain")).toEqual({ content: "plain", reasoning: null });
  });

  test("only reasoning, no answer (the limit hit while thinking) is empty, then repaired", async () => {
    const { llm } = await setup([
      { content: "", reasoning: "long thoughts" },
      { content: '{"answer":"yes"}', reasoning: "short" },
    ]);
    const r = await ask(llm, 1);
    expect(r.ok).toBe(true);
    expect(r.exchanges.map((e) => e.errorCode)).toEqual(["empty", null]);
  });
});

describe("garbage in replies", () => {
  test.each([
    [
      "tool arguments that are not JSON",
      { content: null, toolCall: { name: "answer", arguments: "{answer: yes" } },
      "invalid-json",
    ],
    ["tool_calls missing in tools mode, no content", { content: null }, "empty"],
    ["a JSON array instead of an object", { content: '[{"answer":"yes"}]' }, "schema"],
    ["a bare string", { content: '"yes"' }, "schema"],
    ["deeply nested junk", { content: `${"[".repeat(2000)}${"]".repeat(2000)}` }, "schema"],
    ["an unclosed object", { content: '{"answer":"yes"' }, "invalid-json"],
  ])("%s is a recorded fault, not a throw", async (_name, step, code) => {
    const { llm } = await setup([step], { structuredOutput: "tools" });
    const r = await ask(llm);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error.code).toBe(code);
  });

  test("usage, finish_reason and reasoning of the wrong types are ignored, not trusted", async () => {
    const body = {
      choices: [
        {
          message: { role: "assistant", content: '{"answer":"yes"}', reasoning_content: 42, refusal: "" },
          finish_reason: 7,
        },
      ],
      usage: { prompt_tokens: "10", completion_tokens: null, completion_tokens_details: "x" },
    };
    const { llm } = await setup([{ rawBody: JSON.stringify(body) }]);
    const r = await ask(llm);
    expect(r).toMatchObject({ ok: true, value: { answer: "yes" } });
    expect(r.exchanges[0]).toMatchObject({
      promptTokens: null,
      completionTokens: null,
      reasoningTokens: null,
      reasoning: null,
      finishReason: null,
    });
  });

  test("parseJsonObjectReply: first parsable object wins; junk stays an error", () => {
    expect(parseJsonObjectReply('a {"b": "}"} c {"d":1}')).toEqual({ ok: true, value: { b: "}" } });
    expect(parseJsonObjectReply('{bad} {"ok":true}')).toEqual({ ok: true, value: { ok: true } });
    expect(parseJsonObjectReply('{"esc":"\\"}"}')).toEqual({ ok: true, value: { esc: '"}' } });
    expect(parseJsonObjectReply("no braces").ok).toBe(false);
    expect(parseJsonObjectReply("{{{{").ok).toBe(false);
    expect(parseJsonObjectReply("").ok).toBe(false);
  });
});

describe("repair feedback of an anyOf schema", () => {
  const schema = {
    type: "object",
    additionalProperties: false,
    required: ["change"],
    properties: {
      change: {
        anyOf: [
          {
            type: "object",
            additionalProperties: false,
            required: ["param", "value"],
            properties: {
              param: { type: "string", enum: ["LR"] },
              value: { type: "number", minimum: 0, maximum: 1 },
            },
          },
          {
            type: "object",
            additionalProperties: false,
            required: ["param", "value"],
            properties: {
              param: { type: "string", enum: ["DEPTH"] },
              value: { type: "integer", minimum: 1, maximum: 12 },
            },
          },
        ],
      },
    },
  };
  const errors = (value: unknown) => {
    const validate = validatorFor(schema);
    validate(value);
    return formatAjvErrors(validate.errors);
  };

  test("an unknown name: one merged enum error listing every allowed name", () => {
    expect(errors({ change: { param: "WIDTH", value: 3 } })).toEqual([
      '/change/param: must be equal to one of the allowed values (["LR","DEPTH"])',
    ]);
  });

  test("a known name with a bad value: that branch's error only", () => {
    expect(errors({ change: { param: "DEPTH", value: 40 } })).toEqual(["/change/value: must be <= 12"]);
    expect(errors({ change: { param: "LR", value: 2 } })).toEqual(["/change/value: must be <= 1"]);
  });
});
