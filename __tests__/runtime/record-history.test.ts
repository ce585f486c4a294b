// What `status`, the report page and the JSON export say about a run's course, through the real CLI
// and real stores: when it started and how each session ended, the iterations spent without a
// trial (not redone on resume), a failed Level 2 session, LLM retry waits and the time no process
// ran the run as their own lines of "where the time went", the trial in flight of a live run, and
// a run killed during its first baseline.
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { RunStore } from "../../runtime/store.ts";
import { cliArgv, cliAsync } from "../support/cli.ts";
import {
  isPreflight,
  type MockLlm,
  promptText,
  type RecordedRequest,
  startMockLlm,
} from "../support/mock-llm-server.ts";
import { DEEPSEEK_CHAT, providerModels, providerScript } from "../support/providers.ts";
import { waitFor } from "../support/wait.ts";

const tmp = mkdtempSync(path.join(tmpdir(), "bilevel-record-"));
const KEY = DEEPSEEK_CHAT.key ?? "";
const env: NodeJS.ProcessEnv = { ...process.env, DEEPSEEK_API_KEY: KEY };
const STAMP = /\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC/;

function config(name: string, extra: Record<string, unknown>): string {
  const file = path.join(tmp, `${name}.json`);
  writeFileSync(
    file,
    JSON.stringify({
      name,
      iterations: 4,
      trainer: { kind: "synthetic", delayMs: 0, noise: 0.002 },
      acceptance: { baselineRepeats: 2 },
      level15: { every: 2, minActive: 6 },
      level2: { everyCycles: 0 },
      ...extra,
    }),
  );
  return file;
}

/** The page's text, tags dropped (what a reader sees, near enough). */
async function pageText(dir: string): Promise<string> {
  const out = path.join(dir, "page.html");
  const r = await cliAsync(["report", dir, "--out", out]);
  expect(r.status).toBe(0);
  return readFileSync(out, "utf8")
    .replace(/<script[\s\S]*?<\/script>|<style[\s\S]*?<\/style>|<svg[\s\S]*?<\/svg>/g, "")
    .replace(/<[^>]+>/g, " ")
    .replace(/&amp;/g, "&")
    .replace(/&#39;/g, "'")
    .replace(/&quot;/g, '"')
    .replace(/\s+/g, " ");
}

/** A duration as the page writes it ("850 ms", "12.3 s"), in milliseconds. */
function ms(text: string, label: string): number {
  const m = new RegExp(`${label} (\\d+(?:\\.\\d+)?) (ms|s)\\b`).exec(text);
  if (!m) throw new Error(`no "${label}" duration on the page`);
  return Number(m[1]) * (m[2] === "s" ? 1000 : 1);
}

let server: MockLlm;
/** The key is refused after the preflight passed (revoked mid-run), until the test fixes it. */
let keyRefused = false;
let rateLimitOnce = false;
beforeEach(() => {
  keyRefused = false;
  rateLimitOnce = false;
});
beforeAll(async () => {
  const healthy = providerScript(DEEPSEEK_CHAT);
  server = await startMockLlm(
    (request: RecordedRequest) => {
      const text = promptText(request);
      const proposal = text.includes("You tune the hyperparameters");
      if (keyRefused && !isPreflight(request))
        return {
          status: 401,
          body: { error: { message: "Authentication Fails", type: "authentication_error" } },
        };
      if (proposal && rateLimitOnce) {
        rateLimitOnce = false;
        return {
          status: 429,
          headers: { "retry-after": "1" },
          body: { error: { message: "Rate limit reached" } },
        };
      }
      // Every Level 2 research request is refused: the session fails.
      if (text.includes("[level2:"))
        return {
          status: 400,
          body: { error: { message: "context too long", type: "invalid_request_error" } },
        };
      return healthy(request);
    },
    { models: providerModels(DEEPSEEK_CHAT) },
  );
});
afterAll(async () => {
  await server.close();
});

test("iterations spent on a failing LLM, the failed session and the resume are in status, page and export", async () => {
  const dir = path.join(tmp, "mid401");
  const llm = { ...DEEPSEEK_CHAT.llm, baseURL: server.baseURL, maxRetries: 0, maxConsecutiveFailures: 3 };
  keyRefused = true;
  const failed = await cliAsync(["run", "--config", config("mid401", { llm }), "--out", dir], { env });
  expect(failed.status).toBe(1);

  const during = (await cliAsync(["status", dir])).stdout;
  expect(during).toContain("status failed, online");
  expect(during).toMatch(new RegExp(`started ${STAMP.source}, last activity ${STAMP.source}`));
  expect(during).toMatch(new RegExp(`\\n {2}failed at ${STAMP.source}\\n`));
  expect(during).toContain(
    "iterations 2/4, 2 without a trial: LLM failed (401) ×2 (iterations 1, 2; not redone on resume)",
  );

  // Proposals and Level 1.5 after iteration 2 failed: 3 in a row.
  // Resumed a second later with the server fixed: the spent iterations stay spent.
  await new Promise((resolve) => setTimeout(resolve, 1200));
  keyRefused = false;
  expect((await cliAsync(["run", "--resume", dir], { env })).status).toBe(0);
  const after = (await cliAsync(["status", dir])).stdout;
  expect(after).toContain("status finished, online");
  expect(after).toMatch(new RegExp(`\\n {2}finished at ${STAMP.source}\\n`));
  expect(after).toContain("iterations 4/4, 2 without a trial: LLM failed (401) ×2 (iterations 1, 2");
  expect(after).toMatch(/sessions 2 \(resumed 1×; no process ran it for \d+(\.\d)? s between them\):/);
  expect(after).toMatch(
    new RegExp(`1\\. ${STAMP.source} to ${STAMP.source}: failed \\(the LLM failed 3 times in a row`),
  );
  expect(after).toMatch(new RegExp(`2\\. ${STAMP.source} to ${STAMP.source}: finished \\(run finished`));

  const page = await pageText(dir);
  expect(page).toMatch(new RegExp(`Page written ${STAMP.source}\\. Run started ${STAMP.source}`));
  expect(page).toMatch(new RegExp(`Finished at ${STAMP.source}\\.`));
  expect(page).toContain("Iterations without a trial (2)");
  expect(page).toMatch(/1 LLM failed \(401\) no proposal: the LLM call failed \(LLM http: 401/);
  expect(page).toContain("a resume does not redo them");
  // The second between the failure and the resume is downtime, not wall time or overhead.
  expect(ms(page, "no process running")).toBeGreaterThanOrEqual(1000);
  expect(ms(page, "overhead")).toBeLessThan(ms(page, "no process running"));

  const json = JSON.parse((await cliAsync(["export", dir, "--format", "json"])).stdout) as {
    report: { history: { noTrial: { iteration: number; cause: string }[]; sessions: { end: string }[] } };
  };
  expect(json.report.history.noTrial).toEqual([
    expect.objectContaining({ iteration: 1, cause: "LLM failed (401)" }),
    expect.objectContaining({ iteration: 2, cause: "LLM failed (401)" }),
  ]);
  expect(json.report.history.sessions.map((s) => s.end)).toEqual(["failed", "finished"]);
}, 120_000);

test("a failed Level 2 session is in status and on the page; a Retry-After wait is not overhead", async () => {
  const dir = path.join(tmp, "level2");
  const llm = { ...DEEPSEEK_CHAT.llm, baseURL: server.baseURL, maxRetries: 1, retryBaseMs: 1 };
  rateLimitOnce = true;
  const file = config("level2", { llm, level15: { every: 1, minActive: 6 }, level2: { everyCycles: 2 } });
  expect((await cliAsync(["run", "--config", file, "--out", dir], { env })).status).toBe(0);

  const status = (await cliAsync(["status", dir])).stdout;
  expect(status).toMatch(
    new RegExp(
      `Level 2 session after iteration 2: failed at ${STAMP.source}: Level 2 produced no mechanism: research session stopped: LLM http`,
    ),
  );
  const page = await pageText(dir);
  expect(page).toContain("Level 2 research sessions (");
  expect(page).toMatch(
    /No mechanism was loaded, generated or picked in this run \([12] Level 2 research session\(s\): see Run history \)/,
  );
  expect(page).toMatch(
    /2 failed \d{4}-\d\d-\d\d [\d:]+ UTC Level 2 produced no mechanism: research session stopped/,
  );
  // The server asked for a second's wait before the retry.
  expect(ms(page, "LLM retry waits")).toBeGreaterThanOrEqual(900);
  expect(ms(page, "overhead")).toBeLessThan(ms(page, "LLM retry waits"));
}, 120_000);

test("a live run: status and page show it running and the trial in flight; killed, the page keeps its time", async () => {
  const dir = path.join(tmp, "live");
  const file = config("live", {
    iterations: 2,
    // Trial #1 still in flight when it is killed, on a loaded machine too; its log grows every 2 s.
    trainer: { kind: "synthetic", delayMs: 20_000, noise: 0.002 },
    acceptance: { baselineRepeats: 1 },
  });
  const child = spawn(process.execPath, cliArgv("run", "--config", file, "--out", dir, "--offline"), {
    stdio: ["ignore", "ignore", "ignore"],
  });
  const exited = new Promise((resolve) => child.on("exit", resolve));
  const running = () => {
    try {
      const store = RunStore.open(dir, { readOnly: true });
      try {
        return store.jobs().some((j) => j.state === "running");
      } finally {
        store.close();
      }
    } catch {
      return false; // not created yet
    }
  };
  await waitFor(running, { intervalMs: 50 });
  // Let the baseline train a while: its log grows.
  await new Promise((resolve) => setTimeout(resolve, 1500));

  const status = (await cliAsync(["status", dir])).stdout;
  expect(status).toContain("status running, offline");
  expect(status).toMatch(new RegExp(`running since ${STAMP.source}`));
  expect(status).toMatch(
    new RegExp(
      `in flight: trial #1 \\(iteration 0, baseline: baseline run 1 \\(seed 1\\)\\) since ${STAMP.source}`,
    ),
  );
  const live = await pageText(dir);
  expect(live).toMatch(new RegExp(`running when this page was written at ${STAMP.source}`));
  expect(live).toMatch(/In flight: trial #1 \(iteration 0, baseline/);

  child.kill("SIGKILL");
  await exited;
  const killed = (await cliAsync(["status", dir])).stdout;
  expect(killed).toContain("status interrupted, offline");
  expect(killed).toMatch(new RegExp(`interrupted: killed; its last record is from ${STAMP.source}`));
  expect(killed).toContain("cut off when the run was stopped: trial #1 (iteration 0, baseline");
  const page = await pageText(dir);
  expect(page).toContain("Interrupted: killed after its last record");
  expect(page).toContain("killed (no record of its end)");
  // It trained for over a second before the kill: the wall time says so, and it was training.
  expect(ms(page, "wall")).toBeGreaterThanOrEqual(1000);
  expect(ms(page, "training")).toBeGreaterThanOrEqual(1000);
}, 120_000);
