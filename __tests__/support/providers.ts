// Local stand-ins for the LLM providers of docs/llm-providers.md: each answers as that provider
// documents it answers — which structured-output modes it takes and how it refuses the others,
// its status codes and error bodies (401, unknown model, a refused parameter), its quirks (DeepSeek's
// blank JSON replies, reasoning fields, a server that ignores the model name) — and otherwise
// replies with what a `Brain` decides. Used by the provider-table tests and the run tests.
import { PREFLIGHT_MARKER } from "../../runtime/llm/preflight.ts";
import {
  type MockStep,
  modelList,
  promptText,
  type RecordedRequest,
  systemPrompt,
} from "./mock-llm-server.ts";

/** What the "model" answers: the JSON value for a request (the preflight's, a proposal, ...). */
export type Brain = (request: RecordedRequest) => unknown;

/** Proposals that walk MATRIX_LR by iteration, a steady Level 1.5, and {"ok": true} for a probe. */
export const defaultBrain: Brain = (request) => {
  const system = systemPrompt(request);
  if (system.includes(PREFLIGHT_MARKER)) return { ok: true };
  if (system.includes("(Level 1.5)")) {
    return { strategy: "balanced", freeze: [], unfreeze: [], guidance: "steady", rationale: "steady" };
  }
  const user = request.body?.messages?.find((m) => m.role === "user")?.content ?? "";
  const it = Number(/Iteration (\d+)\./.exec(user)?.[1] ?? 1);
  return {
    changes: [{ param: "MATRIX_LR", value: Number((0.02 + 0.003 * it).toFixed(3)) }],
    rationale: `step ${it}`,
  };
};

export type Mode = "json_schema" | "json_object" | "tools" | "text";

/** The mode a request asks in, as a server sees it. */
export function requestMode(request: RecordedRequest): Mode {
  if (request.body?.tools) return "tools";
  const type = request.body?.response_format?.type;
  return type === "json_schema" || type === "json_object" ? type : "text";
}

export interface ProviderSpec {
  readonly name: string;
  /** The model the server serves (others are unknown, unless it ignores model names). */
  readonly model: string;
  /** The key it accepts; null: it ignores keys (local servers without --api-key). */
  readonly key: string | null;
  /** The settings docs/llm-providers.md gives for it. */
  readonly llm: Readonly<Record<string, unknown>>;
  /** The mode `auto` settles on there. */
  readonly autoMode: Mode;
  /** Every mode a full `llm check` finds working there. */
  readonly workingModes: readonly Mode[];
  /** A refusal by this provider of a mode it does not take (null: it takes it). */
  readonly refuse: (mode: Mode, request: RecordedRequest) => MockStep | null;
  /** Its 401 (its documented body). */
  readonly unauthorized: MockStep;
  /** Its answer for a model it does not serve; null: it ignores the model name. */
  readonly unknownModel: ((model: string) => MockStep) | null;
  /** Refusals of parameters (e.g. temperature on OpenAI's reasoning models). */
  readonly refuseParams?: (request: RecordedRequest) => MockStep | null;
  /** GET /models: whether it checks the key there (OpenRouter lists models to anyone). */
  readonly modelsNeedKey: boolean;
  /** Reasoning models: whether the reasoning text comes back (and in which field), whether usage counts it. */
  readonly reasoning?: {
    readonly field: "reasoning_content" | "reasoning" | null;
    readonly tokens: boolean;
  };
  /** DeepSeek: every n-th JSON-mode reply is blank (its docs say the content may be only spaces). */
  readonly blankEvery?: number;
}

function openAiError(status: number, message: string, extra: object = {}): MockStep {
  return {
    status,
    body: { error: { message, type: "invalid_request_error", param: null, code: null, ...extra } },
  };
}

/** The reply carrying `value` in the request's mode (text mode: wrapped in prose, as models do). */
function reply(spec: ProviderSpec, request: RecordedRequest, value: unknown): MockStep {
  const json = JSON.stringify(value);
  const mode = requestMode(request);
  const field = spec.reasoning?.field ?? null;
  const extras = spec.reasoning
    ? {
        ...(field ? { reasoning: "Let me think about the learning rate first.", reasoningField: field } : {}),
        usage: {
          prompt_tokens: 100,
          completion_tokens: 60,
          ...(spec.reasoning.tokens ? { completion_tokens_details: { reasoning_tokens: 40 } } : {}),
        },
      }
    : { usage: { prompt_tokens: 100, completion_tokens: 20 } };
  if (mode === "tools") {
    const name = request.body?.tools?.[0]?.function.name ?? "answer";
    return { content: null, toolCall: { name, arguments: json }, ...extras };
  }
  return { content: mode === "text" ? `Here is my answer:\n${json}\n` : json, ...extras };
}

/** A provider's server as a mock script: auth, model, parameters, modes, quirks, then the brain. */
export function providerScript(spec: ProviderSpec, brain: Brain = defaultBrain) {
  let jsonReplies = 0;
  return (request: RecordedRequest): MockStep => {
    if (spec.key !== null && request.headers.authorization !== `Bearer ${spec.key}`) return spec.unauthorized;
    if (spec.unknownModel && request.body?.model !== spec.model)
      return spec.unknownModel(String(request.body?.model));
    const refusedParam = spec.refuseParams?.(request);
    if (refusedParam) return refusedParam;
    const mode = requestMode(request);
    const refused = spec.refuse(mode, request);
    if (refused) return refused;
    if (spec.blankEvery && mode === "json_object" && ++jsonReplies % spec.blankEvery === 0) {
      return { content: "   ", usage: { prompt_tokens: 100, completion_tokens: 1 } };
    }
    return reply(spec, request, brain(request));
  };
}

/** GET /models as the provider answers it. */
export function providerModels(spec: ProviderSpec) {
  return (request: RecordedRequest): MockStep => {
    if (spec.modelsNeedKey && spec.key !== null && request.headers.authorization !== `Bearer ${spec.key}`) {
      return spec.unauthorized;
    }
    return modelList(
      spec.model === "ignored-by-server" ? ["models/qwen2.5-7b-instruct-q4_k_m.gguf"] : [spec.model],
    );
  };
}

const mentionsJson = (request: RecordedRequest) => /json/i.test(promptText(request));

// ---- the rows of docs/llm-providers.md

const OPENAI_401 = openAiError(
  401,
  "Incorrect API key provided: sk-wrong. You can find your API key at https://platform.openai.com/account/api-keys.",
  {
    code: "invalid_api_key",
  },
);
const openAiUnknownModel = (model: string) =>
  openAiError(404, `The model \`${model}\` does not exist or you do not have access to it.`, {
    code: "model_not_found",
  });
const openAiJsonWord = (mode: Mode, request: RecordedRequest) =>
  mode === "json_object" && !mentionsJson(request)
    ? openAiError(
        400,
        "'messages' must contain the word 'json' in some form, to use 'response_format' of type 'json_object'.",
        {
          param: "messages",
        },
      )
    : null;

export const OPENAI: ProviderSpec = {
  name: "OpenAI (chat models)",
  model: "gpt-4o-mini",
  key: "sk-test-openai-0123456789",
  llm: { baseURL: "https://api.openai.com/v1", model: "gpt-4o-mini" },
  autoMode: "json_schema",
  workingModes: ["json_schema", "json_object", "tools", "text"],
  refuse: openAiJsonWord,
  unauthorized: OPENAI_401,
  unknownModel: openAiUnknownModel,
  modelsNeedKey: true,
};

export const OPENAI_REASONING: ProviderSpec = {
  ...OPENAI,
  name: "OpenAI (reasoning models: o-series, gpt-5)",
  model: "o4-mini",
  llm: {
    baseURL: "https://api.openai.com/v1",
    model: "o4-mini",
    temperature: null,
    maxTokensField: "max_completion_tokens",
  },
  refuseParams: (request) => {
    if (request.body?.temperature !== undefined) {
      return openAiError(400, "Unsupported parameter: 'temperature' is not supported with this model.", {
        param: "temperature",
        code: "unsupported_parameter",
      });
    }
    if (request.body?.max_tokens !== undefined) {
      return openAiError(
        400,
        "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.",
        {
          param: "max_tokens",
          code: "unsupported_parameter",
        },
      );
    }
    return null;
  },
  // OpenAI counts reasoning tokens but does not return the reasoning text in chat completions.
  reasoning: { field: null, tokens: true },
};

const deepseekError = (status: number, message: string, type = "invalid_request_error"): MockStep => ({
  status,
  body: { error: { message, type, param: null, code: "invalid_request_error" } },
});

export const DEEPSEEK_CHAT: ProviderSpec = {
  name: "DeepSeek (deepseek-chat)",
  model: "deepseek-chat",
  key: "sk-test-deepseek-0123456789",
  llm: { baseURL: "https://api.deepseek.com/v1", model: "deepseek-chat", apiKeyEnv: "DEEPSEEK_API_KEY" },
  autoMode: "json_object",
  workingModes: ["json_object", "tools", "text"],
  refuse: (mode, request) => {
    if (mode === "json_schema") return deepseekError(400, "This response_format type is unavailable now");
    if (mode === "json_object" && !mentionsJson(request)) {
      return deepseekError(
        400,
        "Prompt must contain the word 'json' in some form to use 'response_format' of type 'json_object'.",
      );
    }
    return null;
  },
  unauthorized: deepseekError(
    401,
    "Authentication Fails, Your api key: ****6789 is invalid",
    "authentication_error",
  ),
  unknownModel: () => deepseekError(400, "Model Not Exist"),
  modelsNeedKey: true,
  blankEvery: 3,
};

export const DEEPSEEK_REASONER: ProviderSpec = {
  ...DEEPSEEK_CHAT,
  name: "DeepSeek (deepseek-reasoner)",
  model: "deepseek-reasoner",
  llm: {
    baseURL: "https://api.deepseek.com/v1",
    model: "deepseek-reasoner",
    apiKeyEnv: "DEEPSEEK_API_KEY",
    temperature: null,
    maxTokens: 8000,
  },
  workingModes: ["json_object", "text"],
  refuse: (mode, request) => {
    if (mode === "tools") return deepseekError(400, "deepseek-reasoner does not support Function Calling");
    return DEEPSEEK_CHAT.refuse(mode, request);
  },
  reasoning: { field: "reasoning_content", tokens: true },
};

export const VLLM: ProviderSpec = {
  name: "vLLM (vllm serve --api-key)",
  model: "Qwen/Qwen2.5-7B-Instruct",
  key: "token-abc123",
  llm: { baseURL: "http://127.0.0.1:8000/v1", model: "Qwen/Qwen2.5-7B-Instruct", apiKeyEnv: "VLLM_API_KEY" },
  autoMode: "json_schema",
  workingModes: ["json_schema", "json_object", "tools", "text"],
  refuse: () => null,
  unauthorized: { status: 401, body: { error: "Unauthorized" } },
  unknownModel: (model) => ({
    status: 404,
    body: {
      object: "error",
      message: `The model \`${model}\` does not exist.`,
      type: "NotFoundError",
      param: null,
      code: 404,
    },
  }),
  modelsNeedKey: true,
  reasoning: { field: "reasoning_content", tokens: false },
};

export const OLLAMA: ProviderSpec = {
  name: "Ollama (/v1)",
  model: "qwen3:8b",
  key: null,
  llm: { baseURL: "http://127.0.0.1:11434/v1", model: "qwen3:8b" },
  autoMode: "json_schema",
  workingModes: ["json_schema", "json_object", "tools", "text"],
  refuse: () => null,
  unauthorized: { status: 401, body: { error: "unauthorized" } },
  unknownModel: (model) => ({
    status: 404,
    body: {
      error: {
        message: `model "${model}" not found, try pulling it first`,
        type: "api_error",
        param: null,
        code: null,
      },
    },
  }),
  modelsNeedKey: false,
  reasoning: { field: "reasoning", tokens: false },
};

export const LLAMA_CPP: ProviderSpec = {
  name: "llama.cpp server (llama-server --api-key)",
  model: "ignored-by-server",
  key: "llama-key-0123",
  llm: { baseURL: "http://127.0.0.1:8080/v1", model: "local", apiKeyEnv: "LLAMA_API_KEY" },
  autoMode: "json_schema",
  workingModes: ["json_schema", "json_object", "text"],
  refuse: (mode) =>
    mode === "tools"
      ? {
          status: 400,
          body: {
            error: { code: 400, message: "tools param requires --jinja flag", type: "invalid_request_error" },
          },
        }
      : null,
  unauthorized: {
    status: 401,
    body: { error: { code: 401, message: "Invalid API Key", type: "authentication_error" } },
  },
  unknownModel: null,
  modelsNeedKey: true,
  reasoning: { field: "reasoning_content", tokens: false },
};

export const OPENROUTER: ProviderSpec = {
  name: "OpenRouter",
  model: "openai/gpt-4o-mini",
  key: "sk-or-v1-test0123456789",
  llm: {
    baseURL: "https://openrouter.ai/api/v1",
    model: "openai/gpt-4o-mini",
    apiKeyEnv: "OPENROUTER_API_KEY",
  },
  autoMode: "json_schema",
  workingModes: ["json_schema", "json_object", "tools", "text"],
  refuse: () => null,
  unauthorized: { status: 401, body: { error: { code: 401, message: "No auth credentials found" } } },
  unknownModel: (model) => ({
    status: 400,
    body: { error: { code: 400, message: `${model} is not a valid model ID` } },
  }),
  // Its model list is public: a wrong key shows only on the chat request.
  modelsNeedKey: false,
  reasoning: { field: "reasoning", tokens: true },
};

export const PROVIDERS: readonly ProviderSpec[] = [
  OPENAI,
  OPENAI_REASONING,
  DEEPSEEK_CHAT,
  DEEPSEEK_REASONER,
  VLLM,
  OLLAMA,
  LLAMA_CPP,
  OPENROUTER,
];
