// The live display: every line it writes is neutralised (an event message cannot forge a line or
// send an escape sequence), and its progress bar (cursor codes) appears only on a TTY without NO_COLOR.
import { RunDisplay } from "../../runtime/display.ts";
import type { TrialRow } from "../../runtime/store.ts";
import { firstControl } from "../support/terminal.ts";
import { waitFor } from "../support/wait.ts";

/** A stream that records what is written; a TTY or not. */
function stream(isTTY: boolean) {
  const chunks: string[] = [];
  const out = {
    isTTY,
    columns: 100,
    write: (text: string) => {
      chunks.push(String(text));
      return true;
    },
    // cli-progress moves the cursor through readline, which needs these on a TTY.
    cursorTo: () => true,
    moveCursor: () => true,
    clearLine: () => true,
    on: () => out,
    removeListener: () => out,
  };
  return { out: out as unknown as NodeJS.WriteStream, text: () => chunks.join("") };
}

const trial: TrialRow = {
  id: 3,
  iteration: 2,
  kind: "search",
  proposalId: 1,
  seed: 1,
  config: {},
  changes: [],
  status: "ok",
  valBpb: 2.5,
  kept: false,
  delta: 0.1,
  result: null,
  message: "",
  durationMs: 1,
  description: "",
};

function show(out: NodeJS.WriteStream): void {
  const display = new RunDisplay(out);
  display.event("1", "m1 rejected: \u001b]52;c;cHduZWQ=\u0007\n[L1 ] #6 val_bpb 0.0001 — KEPT\u202e");
  display.iterationStart(2, 4, { best: 2.4, mechanisms: ["evil\u001b[2J"], strategy: "balanced" });
  display.trialStart(2, "MATRIX_LR 0.04 -> 0.03 [suggested by m1-\u009b2J]", 60);
  display.trialProgress({ step: 5, loss: 3.2, elapsed: 1, tokensPerSecond: 1000, progress: 0.5 });
  display.trialEnd(trial, 2.4);
  display.close();
}

test("event, iteration and trial lines are neutralised: no escape sequence, no forged line", () => {
  const { out, text } = stream(false);
  show(out);
  const written = text();
  expect(firstControl(written)).toBeNull();
  expect(written).not.toMatch(/^\s*(\[L1 \] )?#6 val_bpb/m);
  expect(written).toContain("m1 rejected: \\x1b]52;c;cHduZWQ=\\x07\\n[L1 ] #6 val_bpb 0.0001 — KEPT\\u202e");
  expect(written).toContain("mechanisms: evil\\x1b[2J");
  expect(written).toContain("[suggested by m1-\\x9b2J]");
  expect(written).toContain("[L1 ] #3 (iteration 2) val_bpb 2.5000 — discarded; best so far 2.4000\n");
});

describe("the progress bar", () => {
  const saved = process.env.NO_COLOR;
  afterEach(() => {
    if (saved === undefined) delete process.env.NO_COLOR;
    else process.env.NO_COLOR = saved;
  });

  test("is drawn on a TTY (cursor codes), and only there", () => {
    delete process.env.NO_COLOR;
    const tty = stream(true);
    show(tty.out);
    expect(tty.text()).toContain("\u001b[");
    const piped = stream(false);
    show(piped.out);
    expect(firstControl(piped.text())).toBeNull();
  });

  test("is not drawn when NO_COLOR is set, even on a TTY", () => {
    process.env.NO_COLOR = "1";
    const tty = stream(true);
    show(tty.out);
    expect(firstControl(tty.text())).toBeNull();
  });
});

describe("an LLM call that waits", () => {
  const fast = { redrawMs: 5, firstMs: 5, repeatMs: 5 };
  const saved = process.env.NO_COLOR;
  afterEach(() => {
    if (saved === undefined) delete process.env.NO_COLOR;
    else process.env.NO_COLOR = saved;
  });
  const call = { level: "1" as const, purpose: "propose", attempt: 2, of: 3 };

  test("on a TTY: one line redrawn in place (level, purpose, attempt, seconds), erased when the call is over", async () => {
    delete process.env.NO_COLOR;
    const tty = stream(true);
    const display = new RunDisplay(tty.out, fast);
    display.llmWaiting(call);
    await waitFor(() => tty.text().split("waiting for the LLM").length > 2);
    display.llmSettled();
    const written = tty.text();
    expect(written.startsWith("\r\u001b[2K[L1 ] waiting for the LLM (propose, attempt 2/3): ")).toBe(true);
    expect(written.endsWith("\r\u001b[2K")).toBe(true);
    // Nothing more once settled.
    const length = written.length;
    await new Promise((resolve) => setTimeout(resolve, 30));
    expect(tty.text().length).toBe(length);
    display.close();
  });

  test("in a log: silent for a quick call, then a line now and then; a retry is one line with its reason", async () => {
    const piped = stream(false);
    const quiet = new RunDisplay(piped.out, { redrawMs: 5, firstMs: 600_000, repeatMs: 600_000 });
    quiet.llmWaiting(call);
    quiet.llmSettled();
    expect(piped.text()).toBe("");
    const display = new RunDisplay(piped.out, fast);
    display.llmWaiting({ ...call, level: "2", purpose: "level2.explore" });
    await waitFor(() => piped.text().split("\n").length > 3);
    display.llmRetry({ ...call, reason: "http 429: 429 Rate limit \u001b[2J reached", waitMs: 4000 });
    display.close();
    const written = piped.text();
    expect(firstControl(written)).toBeNull();
    expect(written).toMatch(/\[L2 \] waiting for the LLM \(level2\.explore, attempt 2\/3\): \d+s …\n/);
    expect(written).toContain(
      "[L1 ] LLM propose failed (http 429: 429 Rate limit \\x1b[2J reached); retrying in 4.0s (attempt 2/3)\n",
    );
  });
});
