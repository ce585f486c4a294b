// SIGKILL while the LLM proposer is waiting for a reply (inside the proposal phase), resume,
// and compare with an uninterrupted run against the same scripted LLM server. [slow: ~20 s]
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { RunStore } from "../../runtime/store.ts";
import { cliArgv } from "../support/cli.ts";
import {
  type MockLlm,
  preflightReply,
  type RecordedRequest,
  startMockLlm,
} from "../support/mock-llm-server.ts";
import { waitFor } from "../support/wait.ts";

const tmp = mkdtempSync(path.join(tmpdir(), "bilevel-resume-online-"));
const SLOW_ITERATION = 3;
let mock: MockLlm;
/** While true, the reply to iteration 3's proposal request is held (for longer than the test may run). */
let holdSlowReply = false;

const iterationOf = (r: RecordedRequest) =>
  Number(/Iteration (\d+)\./.exec(r.body?.messages?.find((m) => m.role === "user")?.content ?? "")?.[1] ?? 0);

beforeAll(async () => {
  // Proposals depend only on the iteration, so a redone proposal phase asks the same question
  // and gets the same answer; in the run that is killed, iteration 3's reply never comes, so the
  // kill lands while the proposer waits for it however slow the machine is.
  mock = await startMockLlm((request) => {
    const preflight = preflightReply(request);
    if (preflight) return preflight;
    if (request.body?.response_format?.json_schema?.name === "strategy") {
      return {
        content: JSON.stringify({
          strategy: "balanced",
          freeze: [],
          unfreeze: [],
          guidance: "",
          rationale: "steady",
        }),
      };
    }
    const it = iterationOf(request);
    return {
      content: JSON.stringify({
        changes: [{ param: "MATRIX_LR", value: Number((0.015 + 0.01 * it).toFixed(3)) }],
        rationale: `step ${it}`,
      }),
      ...(it === SLOW_ITERATION && holdSlowReply ? { delayMs: 600_000 } : {}),
    };
  });
  writeFileSync(
    path.join(tmp, "run.json"),
    JSON.stringify({
      name: "resume-online",
      seed: 2,
      iterations: 5,
      trainer: { kind: "synthetic", delayMs: 0, noise: 0.002 },
      // No LLM timeout within the test: the held reply ends only by the kill.
      llm: { baseURL: mock.baseURL, model: "scripted", maxRetries: 0, timeoutMs: 600_000 },
      acceptance: { baselineRepeats: 2 },
      level15: { every: 2, minActive: 6 },
      level2: { everyCycles: 0 },
    }),
  );
});
afterAll(async () => {
  await mock.close();
});

function start(args: string[]): ChildProcess {
  return spawn(process.execPath, cliArgv(...args), {
    stdio: ["ignore", "ignore", process.env.DEBUG_RESUME ? "inherit" : "ignore"],
    env: { ...process.env, OPENAI_API_KEY: "test-key" },
  });
}

const exit = (child: ChildProcess) => new Promise<number | null>((resolve) => child.on("exit", resolve));

function records(dir: string) {
  const store = RunStore.open(dir, { readOnly: true });
  const out = {
    trials: store
      .trials()
      .map((t) => ({ iteration: t.iteration, kind: t.kind, config: t.config, valBpb: t.valBpb })),
    proposals: store
      .proposals()
      .map((p) => ({ iteration: p.iteration, changes: p.changes, status: p.status })),
    ledger: store
      .ledger()
      .map((l) => ({ iteration: l.iteration, hook: l.hook, outcome: l.outcome, trial: l.trialId })),
    exchanges: store
      .exchanges()
      .filter((e) => e.purpose !== "preflight")
      .map((e) => e.iteration),
    // Each start and each resume checks the endpoint first: its exchanges are stored too.
    preflights: store.exchanges().filter((e) => e.purpose === "preflight").length,
  };
  store.close();
  return out;
}

test("[slow] killed while waiting for the LLM's proposal, resumed: same trials, proposals and ledger", async () => {
  const reference = path.join(tmp, "reference");
  expect(await exit(start(["run", "--config", path.join(tmp, "run.json"), "--out", reference]))).toBe(0);

  const dir = path.join(tmp, "killed");
  const seen = mock.requests.length;
  holdSlowReply = true;
  const child = start(["run", "--config", path.join(tmp, "run.json"), "--out", dir]);
  let exited = false;
  const ended = exit(child).then((code) => {
    exited = true;
    return code;
  });
  // The event itself: the request for iteration 3 has arrived (its reply is held).
  await waitFor(() => exited || mock.requests.slice(seen).some((r) => iterationOf(r) === SLOW_ITERATION), {
    intervalMs: 5,
  });
  expect(exited).toBe(false);
  child.kill("SIGKILL");
  await ended;
  holdSlowReply = false;
  const partial = records(dir);
  expect(partial.trials.filter((t) => t.kind === "search").map((t) => t.iteration)).toEqual([1, 2]);
  expect(partial.proposals.some((p) => p.iteration === SLOW_ITERATION)).toBe(false);

  expect(await exit(start(["run", "--resume", dir]))).toBe(0);
  const resumed = records(dir);
  const expected = records(reference);
  expect({ ...resumed, exchanges: null, preflights: null }).toEqual({
    ...expected,
    exchanges: null,
    preflights: null,
  });
  // The killed call never completed, so it left no exchange behind: the stored exchanges match too.
  expect(resumed.exchanges).toEqual(expected.exchanges);
  expect([expected.preflights, resumed.preflights]).toEqual([1, 2]);
}, 90_000);
