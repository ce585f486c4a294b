// What tests look for in output meant for a terminal, written independently of the neutraliser.

/** A code point a terminal acts on: C0 but tab and newline, DEL, C1, LS/PS, bidi marks and controls. */
export function isTerminalControl(code: number): boolean {
  if (code === 0x09 || code === 0x0a) return false;
  return (
    code < 0x20 ||
    (code >= 0x7f && code <= 0x9f) ||
    [0x061c, 0x200e, 0x200f, 0x2028, 0x2029].includes(code) ||
    (code >= 0x202a && code <= 0x202e) ||
    (code >= 0x2066 && code <= 0x2069)
  );
}

/**
 * The first control character in `text` (a newline too when `singleLine`), shown with what
 * surrounds it, or null when there is none.
 */
export function firstControl(text: string, singleLine = false): string | null {
  let index = 0;
  for (const ch of text) {
    const code = ch.codePointAt(0) ?? 0;
    if (isTerminalControl(code) || (singleLine && code === 0x0a)) {
      const around = JSON.stringify(text.slice(Math.max(0, index - 60), index + 20));
      return `U+${code.toString(16).padStart(4, "0")} in ${around}`;
    }
    index += ch.length;
  }
  return null;
}
