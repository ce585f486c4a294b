// Text that did not come from the project (mechanism names, reject reasons, thrown messages,
// ctx.log lines, guide texts, LLM replies) is neutralised before it reaches a terminal: a
// mechanism must not clear the screen, set the title, write the clipboard (OSC 52) or start a
// forged line. Stored values (SQLite, JSON, TSV) keep the original; only what is printed changes.

/** Printed fields and lines are bounded to this many characters unless told otherwise. */
export const DEFAULT_MAX_LENGTH = 500;
/** Marks where a bounded text was cut. */
export const ELLIPSIS = "…";

/**
 * Whether a terminal may act on this code point: C0 (tab aside), DEL, C1, the line/paragraph
 * separators, and the bidi marks, embeddings, overrides and isolates that can reorder text
 * into a forgery.
 */
export function unsafeCharacter(code: number): boolean {
  return (
    (code < 0x20 && code !== 0x09) ||
    (code >= 0x7f && code <= 0x9f) ||
    code === 0x061c ||
    code === 0x200e ||
    code === 0x200f ||
    code === 0x2028 ||
    code === 0x2029 ||
    (code >= 0x202a && code <= 0x202e) ||
    (code >= 0x2066 && code <= 0x2069)
  );
}

/** Whether `text` holds anything safeText would show visibly (its length aside). */
export function hasUnsafeText(text: string): boolean {
  for (let i = 0; i < text.length; i++) if (unsafeCharacter(text.charCodeAt(i))) return true;
  return false;
}

/** What JSON.stringify leaves raw although a terminal acts on it (it escapes C0 itself). */
const JSON_UNSAFE = /[\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

const hex = (code: number, width: number) => code.toString(16).padStart(width, "0");

/** The visible form of one unsafe character: `\n`, `\r`, `\x1b`, `\x9b`, `\u202e`. */
function visible(ch: string): string {
  if (ch === "\n") return "\\n";
  if (ch === "\r") return "\\r";
  const code = ch.codePointAt(0) ?? 0;
  return code <= 0x9f ? `\\x${hex(code, 2)}` : `\\u${hex(code, 4)}`;
}

export interface SafeTextOptions {
  /** Most characters (code points) printed, the ellipsis included; default DEFAULT_MAX_LENGTH. */
  readonly maxLength?: number;
}

/**
 * One printable line: control characters and escape sequences shown visibly (ESC as `\x1b`, so
 * a sequence prints as text), embedded newlines as `\n` (no forged line can start), bidi
 * controls as `\uXXXX`, bounded to maxLength with an ellipsis. Tabs stay.
 */
export function safeText(text: string, options: SafeTextOptions = {}): string {
  const max = Math.max(1, Math.floor(options.maxLength ?? DEFAULT_MAX_LENGTH));
  if (text.length <= max && !hasUnsafeText(text)) return text;
  const pieces: string[] = [];
  let length = 0;
  let fits = 0; // pieces that fit in max - 1 characters, leaving room for the ellipsis
  for (const ch of text) {
    const escaped = unsafeCharacter(ch.codePointAt(0) ?? 0);
    const piece = escaped ? visible(ch) : ch;
    const n = escaped ? piece.length : 1;
    // Stop once the text is known to overflow; an escape is never split.
    if (length + n > max) return pieces.slice(0, fits).join("") + ELLIPSIS;
    pieces.push(piece);
    length += n;
    if (length <= max - 1) fits = pieces.length;
  }
  return pieces.join("");
}

/**
 * JSON for stdout: JSON.stringify escapes C0 itself; DEL, C1 and bidi controls become \uXXXX too.
 * They can only occur inside strings there, so the JSON parses back to exactly the same value.
 */
export function jsonForTerminal(value: unknown): string {
  return JSON.stringify(value, null, 2).replace(JSON_UNSAFE, (ch) => `\\u${hex(ch.charCodeAt(0), 4)}`);
}

/** A data file (TSV) shown on a terminal: each line neutralised, tabs kept, none cut; as is when piped. */
export function dataForStream(text: string, tty: boolean): string {
  if (!tty) return text;
  return text
    .split("\n")
    .map((line) => safeText(line, { maxLength: Number.POSITIVE_INFINITY }))
    .join("\n");
}

/**
 * Whether the project may style a stream (colours, progress bars, cursor moves): a TTY, NO_COLOR
 * unset or empty (https://no-color.org), and not TERM=dumb.
 */
export function canStyle(
  stream: { readonly isTTY?: boolean },
  env: Readonly<Record<string, string | undefined>> = process.env,
): boolean {
  return Boolean(stream.isTTY) && (env.NO_COLOR ?? "") === "" && env.TERM !== "dumb";
}
