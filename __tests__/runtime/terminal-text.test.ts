// The terminal neutraliser: every C0/C1 control, escape sequences (CSI, OSC 52, title), embedded
// newlines, bidi controls and long text are shown visibly and bounded; JSON keeps its value.
import {
  canStyle,
  DEFAULT_MAX_LENGTH,
  dataForStream,
  ELLIPSIS,
  hasUnsafeText,
  jsonForTerminal,
  safeText,
} from "../../runtime/terminal-text.ts";
import { firstControl } from "../support/terminal.ts";

const BIDI = [0x202a, 0x202b, 0x202c, 0x202d, 0x202e, 0x2066, 0x2067, 0x2068, 0x2069];
const hex2 = (c: number) => c.toString(16).padStart(2, "0");

/** Cases named by their hex code. */
const named = (codes: readonly number[]) => codes.map((c) => [c.toString(16).padStart(2, "0"), c] as const);

test.each(
  named(Array.from({ length: 0x20 }, (_, c) => c).filter((c) => c !== 0x09 && c !== 0x0a && c !== 0x0d)),
)("C0 control 0x%s is shown as \\xNN", (_, c) => {
  expect(safeText(`a${String.fromCharCode(c)}b`)).toBe(`a\\x${hex2(c)}b`);
});

test.each(named(Array.from({ length: 0x21 }, (_, i) => 0x7f + i)))(
  "DEL/C1 control 0x%s is shown as \\xNN",
  (_, c) => {
    expect(safeText(`a${String.fromCharCode(c)}b`)).toBe(`a\\x${hex2(c)}b`);
  },
);

test.each(named(BIDI))("bidi control U+%s is shown as \\uXXXX", (_, c) => {
  expect(safeText(`a${String.fromCharCode(c)}b`)).toBe(`a\\u${c.toString(16)}b`);
});

test("newline and carriage return are shown as \\n and \\r: no forged line can start; tab stays", () => {
  const forged = "rejected\n[L1 ] #6 val_bpb 0.0001 — KEPT; best so far 0.0001\r\nok";
  const out = safeText(forged);
  expect(out).toBe("rejected\\n[L1 ] #6 val_bpb 0.0001 — KEPT; best so far 0.0001\\r\\nok");
  expect(out).not.toContain("\n");
  expect(safeText("a\tb")).toBe("a\tb");
  expect(safeText("\r")).toBe("\\r");
});

test("escape sequences print as text: CSI clear screen, OSC title, OSC 52 clipboard, 8-bit CSI", () => {
  expect(safeText("\u001b[2J\u001b[H")).toBe("\\x1b[2J\\x1b[H");
  expect(safeText("\u001b]0;pwned\u0007")).toBe("\\x1b]0;pwned\\x07");
  expect(safeText("\u001b]52;c;cHduZWQ=\u001b\\")).toBe("\\x1b]52;c;cHduZWQ=\\x1b\\");
  expect(safeText("\u009b31m red")).toBe("\\x9b31m red");
});

test("every code point 0..0xFFFF: the output holds no control at all", () => {
  const all = Array.from({ length: 0x10000 }, (_, c) => c)
    .filter((c) => c < 0xd800 || c > 0xdfff)
    .map((c) => String.fromCharCode(c))
    .join("");
  const out = safeText(all, { maxLength: Number.POSITIVE_INFINITY });
  expect(firstControl(out, true)).toBeNull();
  expect(hasUnsafeText(out)).toBe(false);
  expect(hasUnsafeText(all)).toBe(true);
});

test("plain text, unicode and astral characters pass unchanged", () => {
  const text = "val_bpb 2.4100 ± σ 0.0040 — KEPT · 🚀 naïve";
  expect(safeText(text)).toBe(text);
  expect(hasUnsafeText(text)).toBe(false);
});

test("long text is bounded with an ellipsis; escapes and surrogate pairs are never split", () => {
  const long = "x".repeat(10_000);
  const out = safeText(long);
  expect([...out]).toHaveLength(DEFAULT_MAX_LENGTH);
  expect(out.endsWith(ELLIPSIS)).toBe(true);
  expect(safeText("abcdef", { maxLength: 4 })).toBe(`abc${ELLIPSIS}`);
  expect(safeText("abcd", { maxLength: 4 })).toBe("abcd");
  // "ab" + "\x1b" (4 characters) would need 6: the escape is dropped whole, not cut.
  expect(safeText("ab\u001bcdef", { maxLength: 6 })).toBe(`ab${ELLIPSIS}`);
  expect(safeText("🚀🚀🚀🚀", { maxLength: 3 })).toBe(`🚀🚀${ELLIPSIS}`);
  expect(safeText("\u001b".repeat(1000), { maxLength: 10 })).toBe(`\\x1b\\x1b${ELLIPSIS}`);
});

test("jsonForTerminal escapes what JSON.stringify leaves raw and parses back to the same value", () => {
  const value = {
    reason: `${Array.from({ length: 0xa0 }, (_, c) => String.fromCharCode(c)).join("")}${BIDI.map((c) => String.fromCharCode(c)).join("")}\u2028\u2029`,
    nested: ["\u009b2J", { k: "\u202eevil" }],
  };
  const json = jsonForTerminal(value);
  expect(firstControl(json)).toBeNull();
  expect(JSON.parse(json)).toEqual(value);
});

test("dataForStream keeps tabs and lines, neutralises the rest on a terminal, and leaves piped data alone", () => {
  const tsv = "commit\tdescription\ntrial-1\tm1-\u001b]0;x\u0007\u202e\n";
  expect(dataForStream(tsv, false)).toBe(tsv);
  expect(dataForStream(tsv, true)).toBe("commit\tdescription\ntrial-1\tm1-\\x1b]0;x\\x07\\u202e\n");
});

test("canStyle: only a TTY without NO_COLOR (or an empty one) and not TERM=dumb", () => {
  expect(canStyle({ isTTY: true }, {})).toBe(true);
  expect(canStyle({ isTTY: true }, { NO_COLOR: "" })).toBe(true);
  expect(canStyle({ isTTY: true }, { NO_COLOR: "1" })).toBe(false);
  expect(canStyle({ isTTY: true }, { TERM: "dumb" })).toBe(false);
  expect(canStyle({ isTTY: false }, {})).toBe(false);
  expect(canStyle({}, {})).toBe(false);
});
