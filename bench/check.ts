// `npm run bench:check`: wall time of `./bilevel mechanism check` as a user runs it (the launcher, a
// fresh process each time): one example file per call (median of 5, and the spread) and 20 files in
// one call, next to the goals (≤ 0.8 s per call, 20 files ≤ 3 s) and a bare `node -e 0`. The first
// call runs with an empty cache folder (BILEVEL_CACHE): it builds the compiler's snapshot and fills
// Node's compile cache, and is reported apart. BENCH_CHECK_BASELINE=DIR also times another
// checkout's launcher on the same files, interleaved (the machine may be shared: compare ratios);
// it must check several files in one call too.
// A benchmark, not a test: it prints figures, with the CPU and the load average.
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import path from "node:path";

const ROOT = path.resolve(import.meta.dirname, "..");
const EXAMPLES = path.join(ROOT, "examples", "mechanisms");
const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const FILES = 20;
const BASELINE = process.env.BENCH_CHECK_BASELINE;

/** Seconds one command takes (its own Node first on PATH, as the launcher wants it); throws if it fails. */
function timed(command: string, args: readonly string[], cache?: string): number {
  const t = performance.now();
  const env = {
    ...process.env,
    PATH: `${path.dirname(process.execPath)}${path.delimiter}${process.env.PATH}`,
    ...(cache === undefined ? {} : { BILEVEL_CACHE: cache }),
  };
  const r = spawnSync(command, args, { encoding: "utf8", cwd: ROOT, env });
  const seconds = (performance.now() - t) / 1000;
  if (r.status !== 0)
    throw new Error(`${command} ${args.join(" ")}: exit ${r.status}\n${r.stdout}${r.stderr}`);
  return seconds;
}

const median = (xs: readonly number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const fmt = (s: number) => `${s.toFixed(2)} s`;
/** Median, then the spread: "0.41 s (0.39–0.47)". */
const spread = (xs: readonly number[]) =>
  `${fmt(median(xs))} (${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)})`;

/** 20 distinct files (the examples, copied under new names): a repair loop's or a CI's workload. */
function workload(dir: string): { one: string; many: string[] } {
  const examples = readdirSync(EXAMPLES)
    .filter((f) => f.endsWith(".ts"))
    .map((f) => path.join(EXAMPLES, f));
  const many = Array.from({ length: FILES }, (_, i) => {
    const file = path.join(dir, `m${i}.ts`);
    copyFileSync(examples[i % examples.length]!, file);
    return file;
  });
  return { one: examples[0]!, many };
}

interface Figures {
  readonly first: number;
  readonly single: readonly number[];
  readonly twenty: readonly number[];
}

/**
 * The figures of each launcher, interleaved: first call (with an empty cache folder, which it then
 * keeps), each single call, each time for the 20 files in one call.
 */
function measure(launchers: readonly string[], one: string, many: readonly string[], dir: string): Figures[] {
  const caches = launchers.map((_, j) => path.join(dir, `cache-${j}`));
  const check = (j: number, files: readonly string[]) =>
    timed(launchers[j]!, ["mechanism", "check", ...files], caches[j]);
  const first = launchers.map((_, j) => check(j, [one]));
  const single: number[][] = launchers.map(() => []);
  const twenty: number[][] = launchers.map(() => []);
  for (let i = 0; i < RUNS; i++) {
    for (const j of launchers.keys()) single[j]!.push(check(j, [one]));
  }
  for (let i = 0; i < Math.max(1, Math.ceil(RUNS / 2)); i++) {
    for (const j of launchers.keys()) twenty[j]!.push(check(j, many));
  }
  return launchers.map((_, j) => ({ first: first[j]!, single: single[j]!, twenty: twenty[j]! }));
}

function main(): void {
  const dir = mkdtempSync(path.join(tmpdir(), "bilevel-bench-check-"));
  const { one, many } = workload(dir);
  const loadBefore = loadavg()[0]!.toFixed(2);
  const node = median(Array.from({ length: RUNS }, () => timed(process.execPath, ["-e", "0"])));
  const launchers = [path.join(ROOT, "bilevel"), ...(BASELINE ? [path.join(BASELINE, "bilevel")] : [])];
  const [mine, base] = measure(launchers, one, many, dir);
  rmSync(dir, { recursive: true, force: true });
  const vs = (b: string | undefined) => (b === undefined ? "" : `   baseline ${b}`);
  const twentyRuns = mine!.twenty.length;
  const rows: [string, string][] = [
    ["node -e 0 (median)", fmt(node)],
    [
      "mechanism check, 1 file, first call (empty cache)",
      `${fmt(mine!.first)}${vs(base && fmt(base.first))}`,
    ],
    [
      `mechanism check, 1 file, median (min–max) of ${RUNS}`,
      `${spread(mine!.single)}  goal ≤ 0.8 s${vs(base && spread(base.single))}`,
    ],
    [
      `mechanism check, ${FILES} files in one call, median (min–max) of ${twentyRuns}`,
      `${spread(mine!.twenty)}  goal ≤ 3 s${vs(base && spread(base.twenty))}`,
    ],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  process.stdout.write(
    `bilevel mechanism check benchmark (Node ${process.version}, ${cpus()[0]?.model ?? "unknown CPU"} × ${cpus().length}; load average ${loadBefore} at the start, ${loadavg()[0]!.toFixed(2)} at the end)\n`,
  );
  for (const [k, v] of rows) process.stdout.write(`  ${k.padEnd(width)}  ${v}\n`);
  if (BASELINE) process.stdout.write(`  baseline: ${BASELINE}\n`);
}

main();
