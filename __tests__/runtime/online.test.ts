// A full bilevel run against a real local OpenAI-compatible server (scripted replies) and the
// real sandbox: the LLM proposes, a refused call (HTTP 400) is recorded as a failed LLM call and
// the run goes on, an HTTP 500 is waited out (the call made again), Level 1.5 asks the LLM, Level 2 generates a mechanism that is validated, activated
// and shown by the ledger to have fired and changed proposals. Secrets stay out of the store.
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { STEP_MARKERS } from "../../runtime/level2/prompts.ts";
import { RunStore } from "../../runtime/store.ts";
import { executeRun } from "../../runtime/wiring.ts";
import {
  type MockStep,
  preflightReply,
  type RecordedRequest,
  startMockLlm,
  systemPrompt,
} from "../support/mock-llm-server.ts";
import { testConfig } from "../support/run-config.ts";
import { CRITIQUE_REPLY, EXPLORE_REPLY, fenced, GOOD_SOURCE, SPEC_REPLY } from "./level2/fixtures.ts";

const SECRET = "sk-test-0123456789abcdef0123456789";
/** The LLM timeout: the local mock answers at once, so a loaded machine must not turn that into a timeout. */
const NEVER_MS = 600_000;

/** The run's LLM section: the scripted server, no retries, an outage waited out briefly. */
function scriptedLlm(baseURL: string) {
  return { baseURL, model: "scripted", maxRetries: 0, timeoutMs: NEVER_MS, maxRetryWaitMs: 20 };
}

function script() {
  let proposals = 0;
  const level2: Record<string, MockStep[]> = {
    [STEP_MARKERS.explore]: [{ content: JSON.stringify(EXPLORE_REPLY) }],
    [STEP_MARKERS.critique]: [{ content: JSON.stringify(CRITIQUE_REPLY) }],
    [STEP_MARKERS.specify]: [{ content: JSON.stringify(SPEC_REPLY) }],
    [STEP_MARKERS.generate]: [{ content: fenced(GOOD_SOURCE) }],
  };
  return (request: RecordedRequest): MockStep => {
    const preflight = preflightReply(request);
    if (preflight) return preflight;
    const system = systemPrompt(request);
    for (const [marker, steps] of Object.entries(level2)) {
      if (system.includes(marker)) return steps.shift() ?? { status: 400, body: "script exhausted" };
    }
    if (request.body?.response_format?.json_schema?.name === "strategy") {
      return {
        content: JSON.stringify({
          strategy: "exploit",
          freeze: ["DEPTH"],
          unfreeze: [],
          guidance: "refine the learning rates",
          rationale: "DEPTH is expensive to explore",
        }),
      };
    }
    proposals++;
    if (proposals === 1) return { status: 400, body: { error: { message: "context too long" } } };
    if (proposals === 2) return { status: 500, body: { error: { message: "upstream overloaded" } } };
    // Always the same (worse) change: once discarded, the generated repeat-guard rejects repeats of it.
    return {
      content: JSON.stringify({
        changes: [{ param: "WARMUP_RATIO", value: 0.4 }],
        rationale: "try a long warmup",
      }),
      usage: { prompt_tokens: 100, completion_tokens: 20 },
    };
  };
}

test("online run with a scripted LLM: failed calls recorded, an outage waited out, Level 1.5 by the LLM, a generated mechanism fires", async () => {
  const mock = await startMockLlm(script());
  const dir = mkdtempSync(path.join(tmpdir(), "bilevel-online-"));
  try {
    const config = testConfig({
      name: "online",
      iterations: 6,
      trainer: { kind: "synthetic", delayMs: 0, noise: 0.002 },
      llm: scriptedLlm(mock.baseURL),
      acceptance: { baselineRepeats: 2 },
      level15: { every: 2, minActive: 6 },
      level2: { everyCycles: 1, retireWindow: 0 },
      policy: { maxActiveMechanisms: 1 },
    });
    const summary = await executeRun({
      dir,
      config,
      offline: false,
      env: { OPENAI_API_KEY: SECRET },
      observer: {},
    });
    expect(summary.stopped).toBe(false);

    const store = RunStore.open(dir);
    expect(store.getMeta("mode")).toBe("online");
    // The 400 is a failed LLM call of iteration 1 (not an invalid proposal): it trained nothing.
    const failed = store.proposals().filter((p) => p.status === "llm-failed");
    expect(failed).toEqual([expect.objectContaining({ iteration: 1 })]);
    expect(failed[0]?.reason).toBe("LLM http: 400 context too long");
    expect(store.proposals().filter((p) => p.status === "invalid")).toEqual([]);
    expect(store.events().find((e) => e.kind === "llm-call-failed")?.message).toBe(
      "no proposal: the LLM call failed (LLM http: 400 context too long)",
    );
    expect(store.trials().some((t) => t.kind === "search" && t.iteration === 1)).toBe(false);
    // The 500 of iteration 2 was waited out: the call was made again and iteration 2 trained.
    expect(store.events().map((e) => e.kind)).toEqual(
      expect.arrayContaining(["llm-outage", "llm-outage-over"]),
    );
    expect(store.trials().some((t) => t.kind === "search" && t.iteration === 2)).toBe(true);
    expect(store.trials().filter((t) => t.kind === "search").length).toBeGreaterThanOrEqual(3);

    // Level 1.5 by the LLM: DEPTH frozen.
    const llmConfigs = store.searchConfigs().filter((c) => c.source === "llm");
    expect(llmConfigs.length).toBeGreaterThan(0);
    expect(llmConfigs[0]?.config.frozen).toContain("DEPTH");

    // Level 2 generated repeat-guard; it is active and its source, JS and hashes are stored.
    const generated = store.mechanisms().find((m) => m.origin === "generated");
    expect(generated).toMatchObject({ name: "repeat-guard", status: "active" });
    expect(generated?.js).toMatch(/streak/);
    expect(generated?.sourceHash).toMatch(/^[0-9a-f]{64}$/);
    // ... and the ledger shows it rejected a repeated proposal, which sent the proposer back.
    const rejections = store
      .ledger()
      .filter((l) => l.mechanismId === generated?.id && l.outcome === "rejected");
    expect(rejections.length).toBeGreaterThan(0);
    expect(
      store.proposals().some((p) => p.status === "rejected" && p.reason?.startsWith("repeat-guard")),
    ).toBe(true);

    // Every exchange is stored, the four Level 2 calls included; the key is in none of them.
    const exchanges = store.exchanges();
    for (const purpose of ["propose", "level15"])
      expect(exchanges.some((e) => e.purpose === purpose)).toBe(true);
    expect(exchanges.filter((e) => e.purpose.startsWith("level2")).length).toBeGreaterThanOrEqual(4);
    // The research session saw this run's facts: its budget, the measured noise under the acceptance
    // rule (k = 1), and the parameter Level 1.5 froze just before.
    const sent = exchanges.find((e) => e.purpose === "level2.explore")?.messages ?? [];
    const explore = (sent as readonly { readonly content: string }[]).map((m) => m.content).join("\n");
    const sigma = (JSON.parse(store.getMeta("noise") ?? "{}") as { sigma: number }).sigma.toFixed(4);
    expect(explore).toContain(
      "this session runs after iteration 2 of 6 (numbered from 1): 4 iteration(s) left",
    );
    expect(explore).toContain(`Δ < −k·σ = −1 × ${sigma} = −${sigma}`);
    expect(explore).toMatch(/- DEPTH: int \[[^\]]+\], default \d+[^\n]*FROZEN by Level 1.5/);
    store.close();
    const db = readFileSync(path.join(dir, "run.db"));
    expect(db.includes(Buffer.from(SECRET))).toBe(false);
    expect(mock.requests.every((r) => !r.raw.includes(SECRET))).toBe(true);
  } finally {
    await mock.close();
  }
});

test("policy allowCodeGeneration=false: online, but Level 2 only uses the built-in library", async () => {
  const mock = await startMockLlm(script());
  const dir = mkdtempSync(path.join(tmpdir(), "bilevel-online-nogen-"));
  try {
    const config = testConfig({
      name: "online-nogen",
      iterations: 2,
      trainer: { kind: "synthetic", delayMs: 0, noise: 0.002 },
      llm: scriptedLlm(mock.baseURL),
      acceptance: { baselineRepeats: 2 },
      level15: { every: 2, minActive: 6 },
      level2: { everyCycles: 1 },
      policy: { allowCodeGeneration: false },
    });
    await executeRun({ dir, config, offline: false, env: { OPENAI_API_KEY: SECRET }, observer: {} });
    const store = RunStore.open(dir, { readOnly: true });
    expect(store.exchanges().some((e) => e.purpose.startsWith("level2"))).toBe(false);
    expect(store.mechanisms().map((m) => m.origin)).toEqual(["library"]);
    store.close();
  } finally {
    await mock.close();
  }
});
