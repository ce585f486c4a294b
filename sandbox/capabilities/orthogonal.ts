// Standard orthogonal arrays built from linear codes over GF(2) and GF(3):
// L4/L8/L16 (2 levels; 3/7/15 columns) and L9/L27 (3 levels; 4/13 columns). Every pair of
// columns shows every pair of levels equally often. Levels are 0..levels-1.
import { CapabilityFault } from "./fault.ts";

const TWO_LEVEL = [2, 3, 4] as const; // L4, L8, L16 = 2^k runs, 2^k - 1 columns
const THREE_LEVEL = [2, 3] as const; // L9, L27 = 3^k runs, (3^k - 1) / 2 columns

/** Rows of the smallest array with at least `factors` columns, truncated to `factors` columns. */
export function orthogonalArrayRows(factors: number, levels: 2 | 3): number[][] {
  if (factors < 1) throw new CapabilityFault("an orthogonal array needs at least one parameter");
  if (levels === 2) {
    const k = TWO_LEVEL.find((k) => 2 ** k - 1 >= factors);
    if (k === undefined)
      throw new CapabilityFault(`at most 15 parameters fit a 2-level array (L16), got ${factors}`);
    const runs = 2 ** k;
    const rows: number[][] = [];
    for (let r = 0; r < runs; r++) {
      const row: number[] = [];
      for (let mask = 1; mask <= factors; mask++) row.push(popcount(r & mask) % 2);
      rows.push(row);
    }
    return rows;
  }
  const k = THREE_LEVEL.find((k) => (3 ** k - 1) / 2 >= factors);
  if (k === undefined)
    throw new CapabilityFault(`at most 13 parameters fit a 3-level array (L27), got ${factors}`);
  const columns = projectivePoints(k).slice(0, factors);
  const rows: number[][] = [];
  for (let r = 0; r < 3 ** k; r++) {
    const digits = base3(r, k);
    rows.push(columns.map((col) => col.reduce((sum, c, i) => sum + c * digits[i]!, 0) % 3));
  }
  return rows;
}

function popcount(x: number): number {
  let n = 0;
  for (let v = x; v > 0; v >>= 1) n += v & 1;
  return n;
}

function base3(x: number, k: number): number[] {
  const digits: number[] = [];
  for (let i = 0, v = x; i < k; i++, v = Math.floor(v / 3)) digits.push(v % 3);
  return digits.reverse();
}

/** Non-zero vectors of GF(3)^k whose first non-zero coordinate is 1: one per projective point. */
function projectivePoints(k: number): number[][] {
  const points: number[][] = [];
  for (let x = 1; x < 3 ** k; x++) {
    const digits = base3(x, k);
    if (digits.find((d) => d !== 0) === 1) points.push(digits);
  }
  return points;
}
