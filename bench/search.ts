// npm run bench:search — does the outer loop help the search? On the committed surrogate of the
// CPU trainer (data/surrogate/cpu.jsonl), offline proposer, SEEDS seeds × ITERATIONS iterations per
// group: A (Level 1), B (+1.5), D (+2: the library researcher), D with each example mechanism
// active from the start (and no further Level 2), R (Level 1 restarting from the best every K),
// and random search (uniform over the whole space, same seeds and baseline). Prints the
// improvement statistics of each group against A and against random search. A benchmark, not a test.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { DEFAULT_RUN_CONFIG, resolveRunConfig, sandboxPolicy } from "../runtime/config.ts";
import { OfflineProposer } from "../runtime/level1/offline-proposer.ts";
import { LibraryResearcher, listLibrary } from "../runtime/level2/library.ts";
import { RuleStrategist } from "../runtime/level15/strategists.ts";
import { BilevelLoop } from "../runtime/loop.ts";
import { fromUnit } from "../runtime/param-scale.ts";
import { REPO_ROOT } from "../runtime/paths.ts";
import { createRng } from "../runtime/rng.ts";
import { RunStore } from "../runtime/store.ts";
import { runCurve } from "../runtime/study/results.ts";
import { builtinGroups, SEED_STRIDE } from "../runtime/study/spec.ts";
import { type Comparison, compare, summarize } from "../runtime/study/stats.ts";
import { formatTable } from "../runtime/study/table.ts";
import { DEFAULT_SURROGATE_FILE } from "../runtime/surrogate/data.ts";
import { type SurrogateTrainer, surrogateTrainer } from "../runtime/surrogate/trainer.ts";
import { Sandbox, syntheticTrace } from "../sandbox/index.ts";

const SEEDS = Number(process.env.SEEDS ?? 20);
const ITERATIONS = Number(process.env.ITERATIONS ?? 30);
const FILE = process.env.SURROGATE ?? DEFAULT_SURROGATE_FILE;
const seeds = Array.from({ length: SEEDS }, (_, r) => 1 + SEED_STRIDE * r);

interface Group {
  readonly name: string;
  readonly what: string;
  readonly run: Record<string, unknown> | null; // null: random search
}

function groups(): Group[] {
  const every = DEFAULT_RUN_CONFIG.level15.every;
  const b = builtinGroups(every);
  const noL15 = { enabled: false };
  const fromBuiltin = (n: "A" | "B" | "D" | "R") => ({
    name: n,
    what: b[n]?.description ?? n,
    run: b[n]?.run ?? {},
  });
  const mechanisms = listLibrary().map((m) => ({
    name: `D+${m.name}`,
    what: `Level 1 + ${m.name} (active from the start)`,
    run: { level15: noL15, level2: { everyCycles: 0 }, mechanisms: [m.file] },
  }));
  return [
    fromBuiltin("A"),
    fromBuiltin("B"),
    { ...fromBuiltin("D"), what: "Level 1 + 2 (library researcher)" },
    ...mechanisms,
    fromBuiltin("R"),
    { name: "random", what: "random search: uniform configs over the whole space", run: null },
  ];
}

/** One run of the loop on the surrogate in a temporary folder; returns baseline − best. */
async function loopRun(
  sandbox: Sandbox,
  trainer: SurrogateTrainer,
  group: Group,
  seed: number,
): Promise<number> {
  const config = resolveRunConfig(
    {
      ...group.run,
      name: "bench-search",
      seed,
      iterations: ITERATIONS,
      budgetSeconds: 1,
      trainer: { kind: "surrogate", file: FILE },
    },
    { baseDir: REPO_ROOT, label: `group ${group.name}` },
  );
  const dir = mkdtempSync(path.join(tmpdir(), "bilevel-bench-search-"));
  const store = RunStore.open(dir);
  try {
    await new BilevelLoop({
      store,
      config,
      trainer,
      sandbox,
      proposer: new OfflineProposer(),
      strategist: new RuleStrategist(config.level15),
      researcher: new LibraryResearcher(),
      syntheticTrace,
      startMechanisms: config.mechanisms.map((file) => ({ file, source: readFileSync(file, "utf8") })),
    }).run();
    const { baseline, best } = runCurve(store.trials(), seed);
    return baseline !== null && best !== null ? baseline - best : Number.NaN;
  } finally {
    for (const m of store.mechanisms()) if (m.status === "active") await sandbox.unload(m.id);
    store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Random search with the loop's measurement: the same baseline (start config, run seed), ITERATIONS uniform configs. */
async function randomRun(trainer: SurrogateTrainer, seed: number): Promise<number> {
  const params = trainer.model.params;
  const start = Object.fromEntries(params.map((p) => [p.name, p.default]));
  const baseline = trainer.score(start, seed).valBpb;
  if (baseline === null) return Number.NaN;
  const rng = createRng("random-search", seed);
  let best = baseline;
  for (let it = 0; it < ITERATIONS; it++) {
    const config = Object.fromEntries(params.map((p) => [p.name, fromUnit(p, rng.next())]));
    const v = trainer.score(config, seed).valBpb;
    if (v !== null && v < best) best = v;
  }
  return baseline - best;
}

function cell(c: Comparison): string {
  const ci = c.ci ? `[${c.ci[0].toFixed(4)}, ${c.ci[1].toFixed(4)}]` : "n/a";
  const p = c.p === null ? "p n/a" : c.p < 0.001 ? "p<0.001" : `p=${c.p.toFixed(3)}`;
  return `${(c.diff ?? 0).toFixed(4)} ${ci} ${p}${c.exact ? "" : "~"}: ${c.verdict}`;
}

async function main(): Promise<void> {
  const trainer = surrogateTrainer(FILE);
  const sandbox = await Sandbox.start(sandboxPolicy(DEFAULT_RUN_CONFIG.policy));
  const improvements = new Map<string, number[]>();
  const t0 = performance.now();
  try {
    for (const g of groups()) {
      const values: number[] = [];
      for (const seed of seeds)
        values.push(
          g.run === null ? await randomRun(trainer, seed) : await loopRun(sandbox, trainer, g, seed),
        );
      improvements.set(g.name, values.filter(Number.isFinite));
      process.stderr.write(
        `${g.name}: ${SEEDS} runs done (${((performance.now() - t0) / 1000).toFixed(0)} s)\n`,
      );
    }
  } finally {
    await sandbox.close();
  }
  report(improvements, trainer.model.sigma);
}

function report(improvements: Map<string, number[]>, sigma: number): void {
  const a = improvements.get("A") ?? [];
  const random = improvements.get("random") ?? [];
  const rows = groups().map((g) => {
    const x = improvements.get(g.name) ?? [];
    const s = summarize(x, `bench:${g.name}`);
    const vsA = g.name === "A" ? "—" : cell(compare("A", x, a, `bench:${g.name}:A`));
    const vsRandom = g.name === "random" ? "—" : cell(compare("random", x, random, `bench:${g.name}:random`));
    const ci = s.ci ? `[${s.ci[0].toFixed(4)}, ${s.ci[1].toFixed(4)}]` : "n/a";
    return [
      g.name,
      String(s.n),
      `${(s.mean ?? 0).toFixed(4)} ± ${(s.sd ?? 0).toFixed(4)}`,
      (s.median ?? 0).toFixed(4),
      ci,
      vsA,
      vsRandom,
    ];
  });
  console.log(
    `bench:search — surrogate ${path.relative(REPO_ROOT, FILE)} (noise σ ${sigma.toFixed(4)}), offline proposer, ${SEEDS} seeds × ${ITERATIONS} iterations per group`,
  );
  console.log(
    "improvement = baseline val_bpb − best val_bpb per run (higher is better); p ~: Monte Carlo permutation test\n",
  );
  console.log(
    formatTable(
      ["group", "n", "mean ± sd", "median", "95% CI", "vs A: Δ [95% CI] p", "vs random: Δ [95% CI] p"],
      rows,
    ),
  );
  const winners = groups().filter((g) => {
    const x = improvements.get(g.name) ?? [];
    return (
      g.name !== "A" &&
      g.name !== "random" &&
      compare("A", x, a, `bench:${g.name}:A`).verdict === "better" &&
      compare("random", x, random, `bench:${g.name}:random`).verdict === "better"
    );
  });
  console.log(
    winners.length
      ? `\nbeats both A and random search (95% CI excludes 0, p < 0.05): ${winners.map((g) => g.name).join(", ")}`
      : "\nno configuration beats both A and random search with a 95% CI that excludes 0 (a finding, not a failure)",
  );
}

await main();
