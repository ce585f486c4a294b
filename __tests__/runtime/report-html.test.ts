// `bilevel report` and `serve` without a browser: the page's content, its escaping of stored text,
// the study page from StudyData, the CLI on a real synthetic run and on a study folder, and serve's
// HTTP surface (loopback name check, Server-Sent Events announcing a new revision).
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import { CSS, SCRIPT } from "../../runtime/report/assets.ts";
import { esc, page } from "../../runtime/report/html.ts";
import { timeSplit } from "../../runtime/report/run-data.ts";
import { serveReport } from "../../runtime/report/serve.ts";
import { openReportSource, renderDocument } from "../../runtime/report/source.ts";
import { meanBand, studyBody } from "../../runtime/report/study-page.ts";
import { RunStore } from "../../runtime/store.ts";
import { cliArgv } from "../support/cli.ts";
import {
  appendFixtureTrial,
  buildFixtureRun,
  buildFixtureStudyFolder,
  fixtureStudy,
  GENERATED_ID,
} from "../support/report-fixture.ts";

const temp = (name: string) => mkdtempSync(path.join(tmpdir(), `bilevel-report-${name}-`));

/** The <path>s inside the SVG mark group Vega named `name` (a layer's name + "_marks"). */
function marks(html: string, name: string): number {
  const start = html.indexOf(`role-mark ${name}_marks"`);
  if (start < 0) return 0;
  const end = html.indexOf("</g>", start);
  return (html.slice(start, end).match(/<path /g) ?? []).length;
}

/** Line series Vega drew for the layer `name` (one mark group per series). */
const series = (html: string, name: string) => html.split(`role-mark ${name}_marks"`).length - 1;

/** Every <script opening tag in the page: only the page's own may exist. */
const scriptTags = (html: string) => (html.match(/<script/gi) ?? []).length;

async function runPage(iterations: number): Promise<string> {
  const dir = temp("run");
  buildFixtureRun(dir, { iterations });
  const source = openReportSource(dir);
  try {
    return await renderDocument(source);
  } finally {
    source.close();
  }
}

test("a run's page: one point per trial, the markers, the inventory, sessions, LLM use and time", async () => {
  const html = await runPage(24);
  expect(marks(html, "trials")).toBe(3 + 24);
  // Level 1.5 every 4 iterations (6), the quarantine, two activations and a retirement.
  expect(marks(html, "markers")).toBe(6 + 4);
  expect(html).toContain(`id="mech-${GENERATED_ID}"`);
  for (const step of ["explore", "critique", "specify", "generate", "repair"])
    expect(html).toContain(`<b>${step}</b>`);
  expect(html).toContain("level2.generate");
  expect(html).toContain("✓ activated at iteration 4");
  expect(html).toMatch(/Where the time went/);
  expect(html).toMatch(/data-outcome="failed"/);
});

test("stored text is escaped everywhere: names, rationales, reasons, code and replies never become markup", async () => {
  const html = await runPage(8);
  expect(scriptTags(html)).toBe(1);
  expect(html).not.toMatch(/<img/i);
  expect(html).not.toContain('onerror="window');
  expect(html).toContain("&lt;script&gt;window.__pwned = 1&lt;/script&gt;");
  expect(html).toContain("evil&lt;script&gt;window.__pwned=3&lt;/script&gt;&quot;&#39;");
  // The script that is there carries the page's nonce, which the CSP requires.
  const nonce = /<script nonce="([^"]+)">/.exec(html)?.[1];
  expect(html).toContain(`script-src &#39;nonce-${nonce}&#39;`);
});

test("esc writes control and bidi characters visibly and the five specials as entities", () => {
  expect(esc("a\u202eb\u001b[2J\nc\t")).toBe("a\\u202eb\\u001b[2J\nc\t");
  expect(esc(`<a href="x">'&'</a>`)).toBe("&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
  expect(esc(null)).toBe("");
});

test("the time split: sessions are wall time, the gap between them downtime, retry waits their own share", () => {
  const at = (s: number) => Date.UTC(2026, 0, 1, 0, 0, s);
  const history = {
    sessions: [
      { startMs: at(0), endMs: at(10), end: "stopped" as const, reason: null },
      { startMs: at(1000), endMs: at(1030), end: "finished" as const, reason: null },
    ],
    downtimeMs: 990_000,
    unfinishedTrials: [],
  };
  const exchange = (s: number, latencyMs: number, error: string | null) => ({
    iteration: 2,
    purpose: "propose",
    latencyMs,
    createdAt: new Date(at(s)).toISOString(),
    error,
  });
  // A 429 at 1002 s, its retry starting 5 s later (Retry-After), then one that succeeds.
  const exchanges = [exchange(1002, 1000, "http: 429"), exchange(1008, 1000, null)];
  expect(timeSplit(history, [{ durationMs: 8000 }], exchanges)).toEqual({
    wallMs: 40_000,
    trainingMs: 8000,
    llmMs: 2000,
    retryWaitMs: 5000,
    overheadMs: 25_000,
    downtimeMs: 990_000,
    sessions: 2,
  });
});

test("a study's page: thin run curves, thick group means with bands, the table's verdicts never overclaim", async () => {
  const data = fixtureStudy("/studies/x");
  const html = page({ title: "study", body: await studyBody(data), css: CSS, script: SCRIPT });
  expect(series(html, "runs")).toBe(9);
  expect(series(html, "means")).toBe(3);
  expect(html).toContain("better than A");
  // C vs R: CI [-0.01, 0.07] crosses zero.
  expect(html).toContain("no difference shown vs R (CI crosses 0)");
  expect(html).not.toContain("better than R");
  expect(scriptTags(html)).toBe(1);
  expect(html).not.toMatch(/<img/i);
});

test("meanBand averages the running minima still going at each iteration, with a t interval", () => {
  const band = meanBand([
    [
      { iteration: 0, best: 2 },
      { iteration: 2, best: 1 },
    ],
    [
      { iteration: 0, best: 4 },
      { iteration: 1, best: 3 },
    ],
  ]);
  expect(band.map((b) => [b.iteration, b.n, b.mean])).toEqual([
    [0, 2, 3],
    [1, 2, 2.5],
    [2, 1, 1],
  ]);
  // sd of {2, 4} is √2: the half-width is t(1) · √2 / √2.
  expect(band[0]?.high).toBeCloseTo(3 + 12.706, 6);
  expect(band[2]?.low).toBe(1);
});

test("bilevel report on a real synthetic run (library mechanisms, Level 1.5) and on a study folder", () => {
  const dir = temp("cli");
  const config = path.join(dir, "config.json");
  writeFileSync(
    config,
    JSON.stringify({
      trainer: { kind: "synthetic", delayMs: 0, noise: 0.002 },
      budgetSeconds: 1,
      iterations: 12,
      level15: { every: 4 },
      level2: { everyCycles: 1 },
    }),
  );
  const run = path.join(dir, "run");
  const cli = (...args: string[]) => spawnSync(process.execPath, cliArgv(...args), { encoding: "utf8" });
  expect(cli("run", "--config", config, "--out", run).status).toBe(0);
  const out = path.join(dir, "page.html");
  const report = cli("report", run, "--out", out);
  expect(report.status).toBe(0);
  expect(report.stdout.trim()).toBe(out);
  const html = readFileSync(out, "utf8");
  const store = RunStore.open(run, { readOnly: true });
  expect(marks(html, "trials")).toBe(store.trials().length);
  store.close();
  expect(html).toMatch(/orthogonal-doe/);
  expect(html).not.toMatch(/(src|href)="(https?:)?\/\//); // nothing loaded from anywhere

  const study = path.join(dir, "study");
  buildFixtureStudyFolder(study);
  expect(cli("report", study).status).toBe(0);
  const studyHtml = readFileSync(path.join(study, "report.html"), "utf8");
  expect(series(studyHtml, "runs")).toBe(4);
  expect(studyHtml).toContain("Level 1 + 1.5");

  const empty = cli("report", temp("empty"));
  expect(empty.status).toBe(2);
  expect(empty.stderr).toMatch(/neither a run folder \(no run\.db\) nor a study folder \(no study\.json\)/);
});

function get(
  port: number,
  pathname: string,
  host = `127.0.0.1:${port}`,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, path: pathname, headers: { host } }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => {
        body += chunk;
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on("error", reject);
    req.end();
  });
}

test("serve answers its own loopback name only, and announces a new revision when the run records a trial", async () => {
  const dir = temp("serve");
  buildFixtureRun(dir, { iterations: 6, running: true });
  const source = openReportSource(dir);
  const server = await serveReport(source, { port: 0, pollMs: 50 });
  try {
    expect((await get(server.port, "/", "evil.example:80")).status).toBe(403);
    const home = await get(server.port, "/");
    expect(home.status).toBe(200);
    expect(home.body).toContain('data-live-events="/events"');
    const revisions: string[] = [];
    const events = request({ host: "127.0.0.1", port: server.port, path: "/events" }, (res) => {
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => {
        for (const m of chunk.matchAll(/event: revision\ndata: (.*)\n/g)) revisions.push(m[1] as string);
      });
    });
    events.end();
    while (revisions.length < 1) await new Promise((r) => setTimeout(r, 20));
    appendFixtureTrial(dir, 7);
    while (revisions.length < 2) await new Promise((r) => setTimeout(r, 20));
    expect(revisions[1]).not.toBe(revisions[0]);
    expect(marks((await get(server.port, "/content")).body, "trials")).toBe(3 + 7);
    events.destroy();
  } finally {
    await server.close();
    source.close();
  }
});

test("a study folder's revision changes when one of its runs records a trial", async () => {
  const dir = temp("study-rev");
  buildFixtureStudyFolder(dir);
  const source = openReportSource(dir);
  expect(source.kind).toBe("study");
  const before = source.revision();
  expect(source.revision()).toBe(before);
  appendFixtureTrial(path.join(dir, "B-2"), 11);
  expect(source.revision()).not.toBe(before);
  expect(series((await source.content()).body, "runs")).toBe(4);
  source.close();
});
