// Minimal source-map (v3) lookup: generated (line, column) → original (line, column), 1-based.
// Enough to point a runtime error in the compiled JS back at the mechanism's TypeScript.

const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

function decodeVlq(segment: string): number[] {
  const out: number[] = [];
  let value = 0;
  let shift = 0;
  for (const ch of segment) {
    const digit = B64.indexOf(ch);
    if (digit < 0) return [];
    value += (digit & 31) << shift;
    if (digit & 32) {
      shift += 5;
    } else {
      out.push(value & 1 ? -(value >>> 1) : value >>> 1);
      value = 0;
      shift = 0;
    }
  }
  return out;
}

/** The original position of the last mapping at or before (line, column) on that generated line. */
export function originalPosition(
  mappings: string,
  line: number,
  column: number,
): { line: number; column: number } | null {
  const lines = mappings.split(";");
  let srcLine = 0;
  let srcCol = 0;
  let found: { line: number; column: number } | null = null;
  for (let l = 0; l < lines.length && l < line; l++) {
    let genCol = 0;
    for (const seg of (lines[l] ?? "").split(",")) {
      if (seg === "") continue;
      const f = decodeVlq(seg);
      if (f.length < 4) {
        genCol += f[0] ?? 0;
        continue;
      }
      genCol += f[0]!;
      srcLine += f[2]!;
      srcCol += f[3]!;
      if (l === line - 1 && genCol <= column - 1) found = { line: srcLine + 1, column: srcCol + 1 };
    }
  }
  return found;
}
