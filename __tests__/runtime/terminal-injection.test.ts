// Terminal control injection, end to end: a mechanism (its file name, reject reasons, thrown
// messages, ctx.log lines, guide texts, suggestion rationales) and a scripted LLM (proposal and
// Level 1.5 rationales, a generated mechanism's thrown message) carry every control character,
// escape sequences and a forged "— KEPT" line. The CLI runs as a subprocess (pipes, no TTY):
// `run`, `status`, `mechanism check` and `mechanism test` print it all visibly, never raw, on
// stdout and stderr; the JSON exports and the store keep the original text. [slow: ~15 s]
import { type SpawnOptions, spawn } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { STEP_MARKERS } from "../../runtime/level2/prompts.ts";
import { cliArgv } from "../support/cli.ts";
import {
  type MockLlm,
  type MockStep,
  preflightReply,
  type RecordedRequest,
  startMockLlm,
  systemPrompt,
} from "../support/mock-llm-server.ts";
import { firstControl } from "../support/terminal.ts";
import { CRITIQUE_REPLY, EXPLORE_REPLY, fenced, GOOD_SOURCE, SPEC_REPLY } from "./level2/fixtures.ts";

const C0 = Array.from({ length: 0x20 }, (_, c) => String.fromCharCode(c)).join("");
const DEL_C1 = Array.from({ length: 0x21 }, (_, i) => String.fromCharCode(0x7f + i)).join("");
const BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069";
const FORGED = "\n[L1 ] #6 val_bpb 0.0001 — KEPT; best so far 0.0001\n";
/** Every C0 and C1 control, clear screen, a window title, an OSC 52 clipboard write, bidi, a forged line. */
const HOSTILE = `${C0}${DEL_C1}\u001b[2J\u001b[H\u001b]0;pwned\u0007\u001b]52;c;cHduZWQ=\u0007${BIDI}${FORGED}`;
/** How the OSC 52 write looks once neutralised. */
const SHOWN = "\\x1b]52;c;cHduZWQ=\\x07";

/** The forged trial line at the start of a line, with or without the display's tag. */
const FORGED_LINE = /^\s*(\[L1 \] )?#6 val_bpb 0\.0001/m;

/** A TypeScript string literal of pure ASCII (no control or bidi character in the source). */
const literal = (s: string) =>
  JSON.stringify(s).replace(/[^\x20-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
const hostile = (prefix: string) => literal(`${prefix} ${HOSTILE}`);

// Rejects on odd iterations, suggests on iteration 2, throws on its second observe (after the
// dry run, which observes once): every kind of foreign text reaches the loop.
const MECHANISM = `import type { Mechanism } from "bilevel/mechanism-api";

type State = { observed: number };

export default {
  manifest: {
    name: "hostile-text",
    version: 1,
    description: ${hostile("description")},
    hooks: ["init", "guide", "suggest", "filter", "observe"],
    capabilities: [],
  },
  init() {
    return { observed: 0 };
  },
  guide(ctx) {
    ctx.log(${hostile("log")});
    return ${hostile("guide")};
  },
  suggest(ctx) {
    if (ctx.iteration !== 2) return undefined;
    return { changes: [{ param: "MATRIX_LR", value: 0.03 }], rationale: ${hostile("suggest")} };
  },
  filter(proposal, ctx) {
    ctx.log(${hostile("log")});
    return ctx.iteration % 2 === 1 ? { verdict: "reject", reason: ${hostile("reason")} } : { verdict: "accept" };
  },
  observe(trial, ctx) {
    ctx.state.observed += 1;
    if (ctx.state.observed >= 2) throw new Error(${hostile("thrown")});
  },
} satisfies Mechanism<State>;
`;
/** The same mechanism, failing its dry run: `mechanism check` prints the thrown message. */
const THROWING = MECHANISM.replace("ctx.log(", `throw new Error(${hostile("thrown")});\n    ctx.log(`);
/** What the scripted LLM generates at Level 2: valid code whose init throws. */
const GENERATED = GOOD_SOURCE.replace(
  "return { streak: 0, maxStreak: 3 };",
  `throw new Error(${hostile("generated")});`,
);

const tmp = mkdtempSync(path.join(tmpdir(), "bilevel-terminal-"));
// A file mechanism's name is its file name: control characters and the forged line go there too.
const mechanismFile = path.join(tmp, `hostile-\u001b]0;title\u0007-\u009b2J-\u202e${FORGED}.ts`);
const throwingFile = path.join(tmp, "throwing.ts");
let mock: MockLlm;
/** The online run every test looks at (made once, in beforeAll). */
let run: Result;

function script(request: RecordedRequest): MockStep {
  const preflight = preflightReply(request);
  if (preflight) return preflight;
  const system = systemPrompt(request);
  if (system.includes(STEP_MARKERS.explore)) return { content: JSON.stringify(EXPLORE_REPLY) };
  if (system.includes(STEP_MARKERS.critique)) return { content: JSON.stringify(CRITIQUE_REPLY) };
  if (system.includes(STEP_MARKERS.specify)) return { content: JSON.stringify(SPEC_REPLY) };
  if (system.includes(STEP_MARKERS.generate) || system.includes(STEP_MARKERS.repair))
    return { content: fenced(GENERATED) };
  if (request.body?.response_format?.json_schema?.name === "strategy") {
    const strategy = { strategy: "balanced", freeze: [], unfreeze: [] };
    return {
      content: JSON.stringify({
        ...strategy,
        guidance: `guidance ${HOSTILE}`,
        rationale: `strategist ${HOSTILE}`,
      }),
    };
  }
  return {
    content: JSON.stringify({
      changes: [{ param: "EMBEDDING_LR", value: 0.5 }],
      rationale: `proposer ${HOSTILE}`,
    }),
  };
}

beforeAll(async () => {
  writeFileSync(mechanismFile, MECHANISM);
  writeFileSync(throwingFile, THROWING);
  mock = await startMockLlm(script);
  writeFileSync(
    path.join(tmp, "run.json"),
    JSON.stringify({
      name: "hostile",
      seed: 3,
      iterations: 4,
      trainer: { kind: "synthetic", delayMs: 0, noise: 0 },
      llm: { baseURL: mock.baseURL, model: "scripted", maxRetries: 0, timeoutMs: 10_000 },
      acceptance: { baselineRepeats: 2 },
      level15: { every: 2, minActive: 6 },
      level2: { everyCycles: 2, maxRepairs: 0, retireWindow: 0 },
      mechanisms: [mechanismFile],
    }),
  );
  run = await cli("run", "--config", "run.json", "--out", "run");
}, 120_000);
afterAll(async () => {
  await mock.close();
});

interface Result {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** The CLI as a subprocess on pipes; asynchronous, so the mock LLM in this process can answer. */
function cli(...args: string[]): Promise<Result> {
  const options: SpawnOptions = {
    cwd: tmp,
    env: { ...process.env, OPENAI_API_KEY: "test-key" },
    stdio: ["ignore", "pipe", "pipe"],
  };
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, cliArgv(...args), options);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout?.on("data", (b: Buffer) => out.push(b));
    child.stderr?.on("data", (b: Buffer) => err.push(b));
    child.on("error", reject);
    child.on("close", (status) => {
      // fatal: a lone byte 0x80..0x9F (an 8-bit C1 control) would not decode.
      const decode = (b: Buffer[]) => new TextDecoder("utf-8", { fatal: true }).decode(Buffer.concat(b));
      resolve({ status, stdout: decode(out), stderr: decode(err) });
    });
  });
}

/** Neither stream holds a control character or starts a forged line; returns both joined. */
function expectSafe(r: Result): string {
  for (const text of [r.stdout, r.stderr]) {
    expect(firstControl(text)).toBeNull();
    expect(text).not.toMatch(FORGED_LINE);
  }
  return `${r.stdout}\n${r.stderr}`;
}

test("[slow] run, status, mechanism check and mechanism test print mechanism and LLM text neutralised", async () => {
  expect(run.status).toBe(0);
  const live = expectSafe(run);
  // The foreign text was printed, visibly: the mechanism's name, reason, thrown message,
  // and the LLM's Level 1.5 rationale and its generated mechanism's thrown message.
  expect(live).toContain("[L2 ] hostile-\\x1b]0;title\\x07-\\x9b2J-\\u202e\\n[L1 ] #6 val_bpb 0.0001");
  for (const prefix of ["reason", "thrown", "strategist", "generated"])
    expect(live).toContain(`${prefix} \\x00\\x01\\x02`);
  expect(live).toContain(SHOWN);
  expect(mock.requests.some((r) => systemPrompt(r).includes(STEP_MARKERS.generate))).toBe(true);

  const status = await cli("status", "run");
  expect(status.status).toBe(0);
  const report = expectSafe(status);
  expect(report).toContain("thrown \\x00\\x01");
  expect(report).toContain("generated \\x00\\x01");

  const check = await cli("mechanism", "check", mechanismFile);
  expect(check.status).toBe(0);
  expect(expectSafe(check)).toContain("hostile-\\x1b]0;title\\x07");
  const rejected = await cli("mechanism", "check", throwingFile);
  expect(rejected.status).toBe(1);
  expect(expectSafe(rejected)).toContain(`thrown \\x00\\x01\\x02\\x03\\x04\\x05\\x06\\x07\\x08\t\\n`);

  const harness = await cli("mechanism", "test", mechanismFile, "--seeds", "1", "--iterations", "6");
  expect(harness.status).toBe(1); // the thrown observe is a fault
  const tested = expectSafe(harness);
  expect(tested).toContain("guide: guide \\x00\\x01");
  expect(tested).toContain("observe/thrown: Error: thrown \\x00\\x01");
}, 120_000);

test("a start mechanism that fails validation is quarantined; the event line quotes its message neutralised", async () => {
  const file = path.join(tmp, "throwing.json");
  const config = { iterations: 1, trainer: { kind: "synthetic", delayMs: 0, noise: 0 } };
  writeFileSync(
    file,
    JSON.stringify({ ...config, acceptance: { mode: "strict" }, mechanisms: [throwingFile] }),
  );
  const r = await cli("run", "--config", file, "--out", "throwing-run", "--offline");
  expect(r.status).toBe(0);
  expect(expectSafe(r)).toMatch(
    /throwing\.ts\) quarantined: failed validation on the live trace[^:]*: .*thrown \\x00\\x01/,
  );
}, 60_000);

test("stored values keep the original text: JSON exports (terminal-safe escapes) and results.tsv", async () => {
  const status = await cli("status", "run", "--json");
  expectSafe(status);
  const report = JSON.parse(status.stdout) as { mechanisms: { name: string; reason: string | null }[] };
  const quarantined = report.mechanisms.find((m) => m.name.startsWith("hostile-"));
  expect(quarantined?.name).toBe(path.basename(mechanismFile, ".ts"));
  expect(quarantined?.reason).toContain(`thrown ${HOSTILE}`);

  const json = await cli("export", "run", "--format", "json");
  expectSafe(json);
  const dump = JSON.parse(json.stdout) as { ledger: { data: unknown }[]; llmExchanges: unknown[] };
  const ledger = JSON.stringify(dump.ledger);
  expect(ledger).toContain(JSON.stringify(`log ${HOSTILE}`).slice(1, -1));
  expect(ledger).toContain(JSON.stringify(`reason ${HOSTILE}`).slice(1, -1));
  expect(JSON.stringify(dump.llmExchanges)).toContain("strategist");

  // TSV is data: tabs and newlines in a field are replaced so the columns hold; piped, the rest
  // is kept (on a terminal, `export` neutralises it: dataForStream, unit-tested).
  const tsv = await cli("export", "run");
  const lines = tsv.stdout.trimEnd().split("\n");
  expect(lines[0]).toBe("commit\tval_bpb\tmemory_gb\tstatus\tdescription");
  for (const line of lines) expect(line.split("\t")).toHaveLength(5);
  expect(tsv.stdout).toContain("[suggested by m1-hostile-\u001b]0;title\u0007");
}, 60_000);
