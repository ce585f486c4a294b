// The report pages in a real headless browser (Debian's chromium driven by playwright-core; no
// browser download): from disk and from `serve`, no console errors, one point per trial, the
// activated mechanism in the inventory, hostile stored text inert, live updates arriving, Ctrl-C
// stopping serve, the time to open a 1000-trial page, and screenshots to look at.
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { type Browser, chromium, type Page } from "playwright-core";
import { RunStore } from "../../runtime/store.ts";
import { cliArgv } from "../support/cli.ts";
import { appendFixtureTrial, buildFixtureRun } from "../support/report-fixture.ts";
import { waitFor } from "../support/wait.ts";

/** Debian's chromium (the launcher installs it for `bilevel test`), or BILEVEL_CHROMIUM. */
function findChromium(): string | null {
  const candidates = [process.env.BILEVEL_CHROMIUM, "/usr/bin/chromium", "/usr/bin/chromium-browser"];
  for (const c of candidates) if (c && existsSync(c)) return c;
  const which = spawnSync("sh", ["-c", "command -v chromium || command -v chromium-browser"], {
    encoding: "utf8",
  });
  const found = which.stdout.trim();
  return found !== "" && existsSync(found) ? found : null;
}

const CHROMIUM = findChromium();
if (CHROMIUM === null) {
  process.stderr.write(
    "report-browser.test.ts: SKIPPED — no chromium found (looked at $BILEVEL_CHROMIUM, /usr/bin/chromium, " +
      "/usr/bin/chromium-browser, PATH); install it with: apt-get install chromium (./bilevel test does)\n",
  );
}
const browserTest = CHROMIUM === null ? test.skip : test;

const SCREENSHOT = "/tmp/bilevel-report-screenshot.png";
const temp = mkdtempSync(path.join(tmpdir(), "bilevel-report-browser-"));
const cli = (...args: string[]) => spawnSync(process.execPath, cliArgv(...args), { encoding: "utf8" });
const POINTS = "g.trials_marks path";

/** A page that records console errors and uncaught exceptions. */
async function watchedPage(browser: Browser): Promise<{ page: Page; errors: string[] }> {
  const page = await browser.newPage({ viewport: { width: 1366, height: 900 } });
  const errors: string[] = [];
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(m.text());
  });
  page.on("pageerror", (e) => errors.push(e.message));
  return { page, errors };
}

/**
 * Wait until a page-side expression is true. (page.waitForFunction evaluates strings with eval,
 * which the page's CSP forbids, as it should; page.evaluate goes through the debugger protocol.)
 */
async function untilTrue(page: Page, expression: string): Promise<void> {
  let ok = false;
  while (!ok) {
    ok = (await page.evaluate(expression)) === true;
    if (!ok) await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function trialCount(dir: string): number {
  const store = RunStore.open(dir, { readOnly: true });
  try {
    return store.trials().length;
  } finally {
    store.close();
  }
}

/** `bilevel serve DIR --port 0`, resolved with its URL once it listens. */
async function startServe(dir: string): Promise<{ child: ChildProcess; url: string; output: () => string }> {
  const child = spawn(process.execPath, cliArgv("serve", dir, "--port", "0"), {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout?.on("data", (b: Buffer) => {
    out += b.toString();
  });
  child.stderr?.on("data", (b: Buffer) => {
    out += b.toString();
  });
  await waitFor(() => /at http:\/\/127\.0\.0\.1:\d+\//.test(out) || child.exitCode !== null);
  const url = /at (http:\/\/127\.0\.0\.1:\d+\/)/.exec(out)?.[1];
  if (!url) throw new Error(`serve did not start: ${out}`);
  return { child, url, output: () => out };
}

let browser: Browser;
beforeAll(async () => {
  if (CHROMIUM !== null) browser = await chromium.launch({ executablePath: CHROMIUM });
});
afterAll(async () => {
  await browser?.close();
});

browserTest(
  "from disk: no console errors, a point per trial, the activated mechanism listed, stored text inert",
  async () => {
    const dir = path.join(temp, "fixture");
    buildFixtureRun(dir, { iterations: 40 });
    expect(cli("report", dir).status).toBe(0);
    const { page, errors } = await watchedPage(browser);
    await page.goto(`file://${path.join(dir, "report.html")}`);
    expect(await page.locator(POINTS).count()).toBe(trialCount(dir));
    const row = page.locator("table.inventory tbody tr", { hasText: "bandit-sweep" });
    await expect(row.textContent()).resolves.toMatch(/active.*activated at iteration 4/s);
    // (Page-side code is given as strings: the project's TypeScript has no DOM types.)
    expect(await page.evaluate("typeof window.__pwned")).toBe("undefined");
    // A point leads to its row in the trials table; a mechanism's source opens in one click.
    await page.locator(POINTS).nth(10).click();
    await page.locator("tr.flash").first().waitFor();
    await page.locator("#src-m1-bandit-sweep > summary").click();
    expect(await page.locator("#src-m1-bandit-sweep pre").isVisible()).toBe(true);
    await page.screenshot({ path: path.join(temp, "fixture-full.png"), fullPage: true });
    expect(errors).toEqual([]);
    await page.close();
  },
);

browserTest(
  "from serve: the page updates live when the run records a trial; Ctrl-C stops serve",
  async () => {
    const dir = path.join(temp, "live");
    buildFixtureRun(dir, { iterations: 10, running: true });
    const serve = await startServe(dir);
    try {
      const { page, errors } = await watchedPage(browser);
      await page.goto(serve.url);
      await page.locator("#live").filter({ hasText: "live" }).waitFor();
      expect(await page.locator(POINTS).count()).toBe(13);
      const mechanismSource = page.locator("#src-m1-bandit-sweep");
      await mechanismSource.locator("summary").click();
      appendFixtureTrial(dir, 11);
      await untilTrue(page, "document.body.dataset.updates !== undefined");
      await untilTrue(page, `document.querySelectorAll("${POINTS}").length === 14`);
      expect(await page.locator("#t-14").count()).toBe(1);
      // What the reader had open stays open across an update.
      expect(await mechanismSource.getAttribute("open")).not.toBeNull();
      expect(errors).toEqual([]);
      await page.close();
    } finally {
      serve.child.kill("SIGINT");
    }
    const code = await new Promise<number | null>((resolve) => serve.child.once("exit", (c) => resolve(c)));
    expect(code).toBe(0);
    expect(serve.output()).toMatch(/stopped serving/);
  },
);

browserTest("a real synthetic run served: a point per trial, the screenshot", async () => {
  const dir = path.join(temp, "synthetic");
  const config = path.join(temp, "synthetic.json");
  writeFileSync(
    config,
    JSON.stringify({
      trainer: { kind: "synthetic", delayMs: 0, noise: 0.002 },
      budgetSeconds: 1,
      iterations: 30,
      level15: { every: 4 },
      level2: { everyCycles: 1 },
      policy: { maxActiveMechanisms: 2 },
    }),
  );
  expect(cli("run", "--config", config, "--out", dir).status).toBe(0);
  const serve = await startServe(dir);
  try {
    const { page, errors } = await watchedPage(browser);
    await page.goto(serve.url);
    expect(await page.locator(POINTS).count()).toBe(trialCount(dir));
    await page.screenshot({ path: path.join(temp, "synthetic.png") });
    await page.screenshot({ path: SCREENSHOT });
    await page.screenshot({ path: path.join(temp, "synthetic-full.png"), fullPage: true });
    expect(errors).toEqual([]);
    await page.close();
  } finally {
    serve.child.kill("SIGINT");
  }
  process.stderr.write(`report screenshots: ${temp} and ${SCREENSHOT}\n`);
});

browserTest(
  "a page of 1000 trials: a point each, and how long it takes to open (printed, not asserted)",
  async () => {
    const dir = path.join(temp, "big");
    buildFixtureRun(dir, { iterations: 1000 });
    expect(cli("report", dir).status).toBe(0);
    const { page, errors } = await watchedPage(browser);
    await page.goto(`file://${path.join(dir, "report.html")}`);
    const timing = await page.evaluate<{ load: number; dom: number; paint: number | null }>(`(() => {
      const nav = performance.getEntriesByType("navigation")[0];
      const paint = performance.getEntriesByName("first-contentful-paint")[0];
      return { load: nav.loadEventEnd, dom: nav.domContentLoadedEventEnd, paint: paint ? paint.startTime : null };
    })()`);
    process.stderr.write(
      `1000-trial page: DOMContentLoaded ${timing.dom.toFixed(0)} ms, load ${timing.load.toFixed(0)} ms, ` +
        `first contentful paint ${timing.paint === null ? "n/a" : `${timing.paint.toFixed(0)} ms`}\n`,
    );
    expect(await page.locator(POINTS).count()).toBe(1003);
    expect(errors).toEqual([]);
    await page.close();
  },
);
