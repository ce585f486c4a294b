// Structured LLM requests for the loop's deciders: `ChatJson` over the run's LLM client, with every
// exchange stored as soon as it completes, and the base class of LLM-backed deciders.
import type { RunStore } from "../store.ts";
import type { LlmClient, LlmErrorCode, LlmExchange } from "./client.ts";

/**
 * One structured LLM request: the reply must match `schema` and pass `check`; invalid replies are
 * retried with the errors fed back, at most `maxRepairs` times. Every exchange is stored by the
 * implementation. Never throws for remote faults.
 */
export type ChatJson = <T>(request: {
  readonly purpose: string;
  readonly iteration: number;
  readonly system: string;
  readonly user: string;
  readonly schema: object;
  readonly schemaName: string;
  readonly check?: (value: T) => string[];
  readonly maxRepairs: number;
}) => Promise<{ ok: true; value: T } | { ok: false; reason: string; fault: ChatFault }>;

/**
 * Why a structured request failed: the call itself (the endpoint, the network, the key, the budget:
 * no reply to judge) or the reply (it came, but was not usable after its repairs).
 */
export type ChatFault = "call" | "reply";

/** The fault class of an LLM error code. */
export function faultOf(code: LlmErrorCode): ChatFault {
  return code === "http" ||
    code === "timeout" ||
    code === "connection" ||
    code === "bad-response" ||
    code === "aborted" ||
    code === "budget"
    ? "call"
    : "reply";
}

/** Store one LLM exchange (called as soon as it completes, so a killed run keeps it). */
export function storeExchange(store: RunStore, iteration: number, e: LlmExchange): void {
  store.addExchange({
    iteration,
    purpose: e.purpose,
    model: e.model,
    messages: e.messages.map((m) => ({ role: m.role, content: m.content })),
    reply: e.reply,
    error: e.error,
    promptTokens: e.promptTokens,
    completionTokens: e.completionTokens,
    latencyMs: e.latencyMs,
    errorCode: e.errorCode,
    finishReason: e.finishReason,
    reasoning: e.reasoning,
    reasoningTokens: e.reasoningTokens,
    mode: e.mode,
  });
}

/** `ChatJson` over the run's LLM client; every exchange lands in the store. */
export class ChatJsonAdapter {
  private readonly llm: LlmClient;
  private readonly store: RunStore;

  constructor(llm: LlmClient, store: RunStore) {
    this.llm = llm;
    this.store = store;
  }

  readonly chat: ChatJson = async (request) => {
    const result = await this.llm.chatJson({
      purpose: request.purpose,
      messages: [
        { role: "system", content: request.system },
        { role: "user", content: request.user },
      ],
      schema: request.schema,
      schemaName: request.schemaName,
      maxRepairs: request.maxRepairs,
      ...(request.check ? { check: request.check } : {}),
      onExchange: (e) => storeExchange(this.store, request.iteration, e),
    });
    return result.ok
      ? { ok: true, value: result.value }
      : {
          ok: false,
          reason: `LLM ${result.error.code}: ${result.error.message}`,
          fault: faultOf(result.error.code),
        };
  };
}

/** A decider that asks the LLM, repairing invalid replies at most `maxRepairs` times. */
export abstract class LlmBacked {
  protected readonly chat: ChatJson;
  protected readonly maxRepairs: number;

  constructor(chat: ChatJson, maxRepairs: number) {
    this.chat = chat;
    this.maxRepairs = maxRepairs;
  }
}
