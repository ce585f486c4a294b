// Measures each example mechanism against no mechanism on the same seeds with the regression
// harness, and prints the Markdown table used in examples/mechanisms/README.md.
//   node --no-node-snapshot bench/mechanism-table.ts [--seeds N] [--iterations N]

import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { testConfig } from "../__tests__/support/run-config.ts";
import { DEFAULT_SETTINGS, type HarnessSummary, runHarness } from "../runtime/harness.ts";
import { loadDefaultParams, Sandbox } from "../sandbox/index.ts";

const { values } = parseArgs({
  options: { seeds: { type: "string", default: "10" }, iterations: { type: "string", default: "30" } },
});
const seedCount = Number(values.seeds);
const iterations = Number(values.iterations);
if (!Number.isInteger(seedCount) || seedCount < 1 || !Number.isInteger(iterations) || iterations < 1) {
  process.stderr.write("usage: bench/mechanism-table.ts [--seeds N] [--iterations N] (positive integers)\n");
  process.exit(2);
}

const dir = path.resolve(import.meta.dirname, "../examples/mechanisms");
const settings = {
  ...DEFAULT_SETTINGS,
  seeds: Array.from({ length: seedCount }, (_, i) => i + 1),
  iterations,
};
const params = loadDefaultParams();
const BASE = testConfig({});
const sandbox = await Sandbox.start();
try {
  const control = (await runHarness(sandbox, null, params, settings, BASE)).summary;
  const rows: string[] = [];
  const line = (name: string, s: HarnessSummary) => {
    const bests = s.seeds.map((x) => x.best);
    const sorted = [...bests].sort((a, b) => a - b);
    const median = ((sorted[(sorted.length - 1) >> 1] ?? 0) + (sorted[sorted.length >> 1] ?? 0)) / 2;
    const diff = s.totals.meanBest - control.totals.meanBest;
    const better = s.seeds.filter((x, i) => x.best < (control.seeds[i]?.best ?? 0)).length;
    const per = (n: number) => (n / s.seeds.length).toFixed(1);
    rows.push(
      `| ${name} | ${s.totals.meanBest.toFixed(4)} | ${median.toFixed(4)} | ${s.mechanism ? `${diff >= 0 ? "+" : ""}${diff.toFixed(4)}` : "—"} | ${s.mechanism ? `${better}/${s.seeds.length}` : "—"} | ${per(s.totals.suggested)} | ${per(s.totals.rejected)} | ${per(s.totals.guided)} | ${s.totals.faults} |`,
    );
  };
  line("(no mechanism)", control);
  for (const file of readdirSync(dir)
    .filter((f) => f.endsWith(".ts"))
    .sort()) {
    const compiled = await sandbox.compile(readFileSync(path.join(dir, file), "utf8"), file);
    if (!compiled.ok) throw new Error(`${file} does not compile: ${compiled.errors[0]?.message}`);
    const source = readFileSync(path.join(dir, file), "utf8");
    const mechanism = { fileName: file, source, compiled: compiled.mechanism };
    line(
      compiled.mechanism.manifest.name,
      (await runHarness(sandbox, mechanism, params, settings, BASE)).summary,
    );
  }
  process.stdout.write(
    [
      `${seedCount} seeds × ${iterations} iterations, noise σ ${settings.noiseSigma}; lower val_bpb is better.`,
      "",
      "| mechanism | mean best | median best | Δ mean vs none | seeds better than none | suggested/seed | rejected/seed | guided/seed | faults |",
      "|---|---|---|---|---|---|---|---|---|",
      ...rows,
      "",
    ].join("\n"),
  );
} finally {
  await sandbox.close();
}
