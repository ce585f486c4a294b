// The LLM at the command line, as a user meets it (subprocesses against local servers that answer
// as DeepSeek documents): `run` refuses an endpoint that cannot serve it before any baseline,
// naming the problem; a run whose LLM fails persistently exits 1, `status` says why, and it
// resumes; `status` shows token totals per level; `llm check` reports and exits 0 only if a run
// would work.

import { mkdtempSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { RunStore } from "../../runtime/store.ts";
import { cliAsync } from "../support/cli.ts";
import {
  type MockLlm,
  type RecordedRequest,
  startMockLlm,
  systemPrompt,
} from "../support/mock-llm-server.ts";
import { DEEPSEEK_CHAT, providerModels, providerScript } from "../support/providers.ts";

const tmp = mkdtempSync(path.join(tmpdir(), "bilevel-cli-llm-"));
const KEY = DEEPSEEK_CHAT.key ?? "";
const env = (key: string | null = KEY): NodeJS.ProcessEnv => {
  const { DEEPSEEK_API_KEY: _unset, ...rest } = process.env;
  return key === null ? rest : { ...rest, DEEPSEEK_API_KEY: key };
};

function config(name: string, llm: Record<string, unknown>, extra: Record<string, unknown> = {}): string {
  const file = path.join(tmp, `${name}.json`);
  writeFileSync(
    file,
    JSON.stringify({
      name,
      iterations: 6,
      trainer: { kind: "synthetic", delayMs: 0, noise: 0.002 },
      llm: { ...DEEPSEEK_CHAT.llm, maxRetries: 0, retryBaseMs: 1, ...llm },
      acceptance: { baselineRepeats: 2 },
      level15: { every: 3, minActive: 6 },
      level2: { everyCycles: 0 },
      ...extra,
    }),
  );
  return file;
}

async function closedPort(): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `http://127.0.0.1:${port}/v1`;
}

let deepseek: MockLlm;
beforeAll(async () => {
  deepseek = await startMockLlm(providerScript(DEEPSEEK_CHAT), { models: providerModels(DEEPSEEK_CHAT) });
});
afterAll(async () => {
  await deepseek.close();
});

describe("run refuses an endpoint that cannot serve it, before any baseline, naming the problem", () => {
  test.each([
    [
      "a closed port",
      async () => ({ baseURL: await closedPort() }),
      KEY,
      /cannot reach the LLM endpoint: cannot reach http:\/\/127\.0\.0\.1:\d+\/v1: ECONNREFUSED/,
    ],
    [
      "a rejected key",
      async () => ({ baseURL: deepseek.baseURL }),
      "sk-wrong",
      /refused the API key \(401 Authentication Fails, Your api key: \*\*\*\*6789 is invalid\)/,
    ],
    [
      "an unset key",
      async () => ({ baseURL: deepseek.baseURL }),
      null,
      /refused the API key \(401 .*\); DEEPSEEK_API_KEY is not set/,
    ],
    [
      "an unknown model",
      async () => ({ baseURL: deepseek.baseURL, model: "deepseek-chatt" }),
      KEY,
      /model "deepseek-chatt" not found at http.*\(400 Model Not Exist\); it lists: deepseek-chat/,
    ],
  ])(
    "%s: exit 1, the problem named, no run folder",
    async (name, llm, key, message) => {
      const out = path.join(tmp, `refused-${name.replaceAll(" ", "-")}`);
      const r = await cliAsync(
        ["run", "--config", config(`refused-${name.length}`, await llm()), "--out", out],
        { env: env(key) },
      );
      expect(r.stderr).toMatch(message);
      expect(r.stderr).toContain("the LLM endpoint cannot serve this run");
      expect(r.stderr).toContain("nothing was run");
      expect(r.status).toBe(1);
      expect(RunStore.exists(out)).toBe(false);
    },
    60_000,
  );
});

describe("a run whose every LLM call fails persistently", () => {
  let broken = true;
  let server: MockLlm;
  const dir = path.join(tmp, "persistent");
  beforeAll(async () => {
    const healthy = providerScript(DEEPSEEK_CHAT);
    // The preflight passes; then every proposal is refused the same way, until the server is fixed.
    server = await startMockLlm(
      (request: RecordedRequest) =>
        broken && systemPrompt(request).includes("You tune the hyperparameters")
          ? { status: 422, body: { error: { message: "Invalid Parameters", type: "invalid_request_error" } } }
          : healthy(request),
      { models: providerModels(DEEPSEEK_CHAT) },
    );
  });
  afterAll(async () => {
    await server.close();
  });

  test("exits 1 naming the error; status says why; the run resumes once the cause is fixed", async () => {
    const file = config("persistent", { baseURL: server.baseURL, maxConsecutiveFailures: 3 });
    const r = await cliAsync(["run", "--config", file, "--out", dir], {
      env: { ...env(), BILEVEL_LAUNCHER: "/opt/tools/bilevel" },
    });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(
      "bilevel: the LLM failed 3 times in a row with the same kind of fault (http 422; the same error each time: http 422: 422 Invalid Parameters)",
    );
    // The path the tool was invoked as, like the lines around it.
    expect(r.stderr).toContain(`the run can be resumed: /opt/tools/bilevel run --resume ${dir}`);
    expect(r.stderr).toContain(`look again with: /opt/tools/bilevel status ${dir}`);

    const status = await cliAsync(["status", dir]);
    expect(status.status).toBe(0);
    expect(status.stdout).toContain("status failed, online");
    expect(status.stdout).toContain(
      "why: the LLM failed 3 times in a row with the same kind of fault (http 422",
    );
    expect(status.stdout).toContain("iterations 2/6");
    const json = JSON.parse((await cliAsync(["status", dir, "--json"])).stdout) as {
      status: string;
      statusReason: string;
    };
    expect(json).toMatchObject({
      status: "failed",
      statusReason: expect.stringContaining("3 times in a row"),
    });

    broken = false;
    const resumed = await cliAsync(["run", "--resume", dir], { env: env() });
    expect(resumed.status).toBe(0);
    const after = await cliAsync(["status", dir]);
    expect(after.stdout).toContain("status finished, online");
    expect(after.stdout).toContain("iterations 6/6");
    expect(after.stdout).not.toContain("why:");
    // Token totals per level.
    expect(after.stdout).toMatch(
      /\n {2}LLM: structured output json_object; \d+ request\(s\) \(\d+ with a fault\), \d+ tokens/,
    );
    expect(after.stdout).toMatch(
      /\n {4}Level 1: \d+ request\(s\) \(\d+ with a fault\), \d+ tokens \(prompt \d+, completion \d+\)/,
    );
    expect(after.stdout).toMatch(/\n {4}Level 1\.5: 2 request\(s\), \d+ tokens/);
    const store = RunStore.open(dir, { readOnly: true });
    expect(
      store
        .proposals()
        .filter((p) => p.status === "trained")
        .map((p) => p.iteration),
    ).toEqual([3, 4, 5, 6]);
    store.close();
  }, 120_000);
});

describe("a provider outage mid-run (503 for a while, as DeepSeek answers when overloaded)", () => {
  let failing = 0;
  let server: MockLlm;
  const busy = { status: 503, body: { error: { message: "Server overloaded", type: "server_error" } } };
  beforeAll(async () => {
    const healthy = providerScript(DEEPSEEK_CHAT);
    server = await startMockLlm(
      (request: RecordedRequest) => {
        if (!systemPrompt(request).includes("You tune the hyperparameters") || failing <= 0)
          return healthy(request);
        failing--;
        return busy;
      },
      { models: providerModels(DEEPSEEK_CHAT) },
    );
  });
  afterAll(async () => {
    await server.close();
  });

  test("is waited out: every iteration still trains, exit 0, the outage's start and end in the record", async () => {
    failing = 3;
    const dir = path.join(tmp, "outage");
    const file = config("outage", { baseURL: server.baseURL, maxRetryWaitMs: 50 });
    const r = await cliAsync(["run", "--config", file, "--out", dir], { env: env() });
    expect(r.stderr).toMatch(
      /the LLM has been failing for [\d.]+ m?s \(http 503: 503 Server overloaded\); calling again in 1\.0 s/,
    );
    expect(r.stderr).toContain(
      "the LLM is failing (http 503: 503 Server overloaded); calling again in 1.0 s",
    );
    expect(r.status).toBe(0);
    expect(failing).toBe(0);
    const store = RunStore.open(dir, { readOnly: true });
    expect(store.events().filter((e) => e.kind === "no-trial")).toEqual([]);
    expect(store.proposals().filter((p) => p.status === "trained")).toHaveLength(6);
    const kinds = store.events().map((e) => e.kind);
    expect(kinds.filter((k) => k === "llm-outage" || k === "llm-outage-over")).toEqual([
      "llm-outage",
      "llm-outage-over",
    ]);
    expect(store.events().find((e) => e.kind === "llm-outage-over")?.message).toContain("(3 calls failed)");
    store.close();
  }, 120_000);

  test("longer than llm.maxOutageMs: the run stops (exit 1, resumable), saying it waited", async () => {
    failing = 1000;
    const dir = path.join(tmp, "outage-long");
    const file = config("outage-long", { baseURL: server.baseURL, maxRetryWaitMs: 50, maxOutageMs: 1500 });
    const r = await cliAsync(["run", "--config", file, "--out", dir], { env: env() });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(
      /the LLM failed 3 times in a row with the same kind of fault \(http 503; the same error each time: http 503: 503 Server overloaded\), after [\d.]+ s of failures/,
    );
    expect(r.stderr).toContain("(llm.maxOutageMs)");
    failing = 0;
  }, 120_000);
});

describe("llm check", () => {
  test("DeepSeek: every mode tried, json_object chosen, exit 0", async () => {
    const r = await cliAsync(["llm", "check", "--config", config("check", { baseURL: deepseek.baseURL })], {
      env: env(),
    });
    expect(r.status).toBe(0);
    expect(r.stdout).toContain(
      `LLM endpoint ${deepseek.baseURL}, model deepseek-chat, structured output auto`,
    );
    expect(r.stdout).toMatch(/\n {2}ok +reachable +http.* \(\d+ ms\)\n/);
    expect(r.stdout).toMatch(/\n {2}ok +authenticated +the chat endpoint accepted the key\n/);
    expect(r.stdout).toMatch(/\n {2}ok +model +deepseek-chat is listed\n/);
    expect(r.stdout).toMatch(
      /\n {2}failed +mode json_schema +unsupported \(400 This response_format type is unavailable now\)/,
    );
    expect(r.stdout).toMatch(/\n {2}ok +mode json_object +works \(the run uses it\)/);
    expect(r.stdout).toMatch(/\n {2}ok +mode tools +works/);
    expect(r.stdout).toContain("a run would work: structured output json_object");
  });

  test("--json is the report as JSON", async () => {
    const r = await cliAsync(
      ["llm", "check", "--json", "--config", config("check-json", { baseURL: deepseek.baseURL })],
      {
        env: env(),
      },
    );
    const report = JSON.parse(r.stdout) as {
      ok: boolean;
      mode: string;
      setting: string;
      exchanges?: unknown;
    };
    expect(report).toMatchObject({ ok: true, mode: "json_object", setting: "auto" });
    expect(report.exchanges).toBeUndefined();
  });

  test("a closed port, or no endpoint at all: exit 1, said why; a bad config: exit 2", async () => {
    const closed = await cliAsync(
      ["llm", "check", "--config", config("check-closed", { baseURL: await closedPort() })],
      {
        env: env(),
      },
    );
    expect(closed.status).toBe(1);
    expect(closed.stdout).toMatch(/a run would NOT work: cannot reach the LLM endpoint: cannot reach http/);
    const { OPENAI_BASE_URL: _unset, ...noBase } = env();
    const none = await cliAsync(["llm", "check", "--config", config("check-none", { baseURL: null })], {
      env: noBase,
    });
    expect(none.status).toBe(1);
    expect(none.stdout).toContain("no LLM endpoint");
    const bad = await cliAsync(
      ["llm", "check", "--config", config("check-bad", { structuredOutput: "xml" })],
      { env: env() },
    );
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(
      /llm\.structuredOutput: must be one of \["auto","json_schema","json_object","tools","text"\]/,
    );
  });
});
