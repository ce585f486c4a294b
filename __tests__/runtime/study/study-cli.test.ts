// `bilevel study` end to end on the committed surrogate: 5 groups × 3 repeats × 10 iterations,
// SIGKILLed while a run is in progress and continued with the same command: it completes, prints
// the statistics table, and nothing ran twice (runs finished before the kill were not started
// again; every store holds each baseline and iteration once). Bad input exits 2 and creates nothing.
// A run whose study died before recording its pid quits without touching its folder.
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { RunStore } from "../../../runtime/store.ts";
import { attemptsPath, readAttempts, runState } from "../../../runtime/study/layout.ts";
import { loadStudy } from "../../../runtime/study/results.ts";
import { STUDY_PARENT_ENV } from "../../../runtime/study/runner.ts";
import { formatStudy } from "../../../runtime/study/table.ts";
import { cliArgv, cliAsync } from "../../support/cli.ts";
import { running, waitFor } from "../../support/wait.ts";

const SURROGATE = path.resolve(import.meta.dirname, "../../../data/surrogate/cpu.jsonl");

const started: ChildProcess[] = [];
// Whatever happens in a test, no study outlives it.
afterAll(() => {
  for (const child of started) if (child.exitCode === null) child.kill("SIGKILL");
});

function start(args: readonly string[]): {
  child: ChildProcess;
  done: Promise<{ code: number | null; stdout: string; stderr: string }>;
} {
  const child = spawn(process.execPath, cliArgv("study", ...args), { stdio: ["ignore", "pipe", "pipe"] });
  started.push(child);
  let stdout = "";
  let stderr = "";
  child.stdout?.on("data", (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr?.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  const done = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    child.on("exit", (code) => resolve({ code, stdout, stderr }));
  });
  return { child, done };
}

/** Runs whose process is alive and whose store already holds a trial and is not finished. */
function runsInProgress(dir: string): { id: string; pid: number }[] {
  const runs = path.join(dir, "runs");
  if (!existsSync(runs)) return [];
  return readdirSync(runs).flatMap((id) => {
    const folder = path.join(runs, id);
    const pidFile = path.join(folder, "run.pid");
    if (!existsSync(pidFile) || !RunStore.exists(folder)) return [];
    const pid = Number(readFileSync(pidFile, "utf8"));
    // A run that has just ended keeps its run.pid until the study has recorded its exit.
    if (!running(pid)) return [];
    let trials = 0;
    let finished = false;
    try {
      const store = RunStore.open(folder, { readOnly: true });
      trials = store.trials().length;
      finished = store.getMeta("status") === "finished";
      store.close();
    } catch {
      // The run is creating its database this very moment.
    }
    return trials > 0 && !finished ? [{ id, pid }] : [];
  });
}

test("bad input is exit 2 and creates nothing: unknown group, --repeats 0, a garbage surrogate file", async () => {
  const dir = mkdtempSync(path.join(tmpdir(), "bilevel-study-bad-"));
  const garbage = path.join(dir, "garbage.jsonl");
  writeFileSync(garbage, "col1,col2\n1,2\n");
  // A custom group may not take a built-in group's name: every "vs A" would then mean something else.
  const shadow = path.join(dir, "shadow.json");
  writeFileSync(shadow, JSON.stringify({ customGroups: { A: { extends: "C", description: "my A" } } }));
  const typo = path.join(dir, "typo.json");
  writeFileSync(typo, JSON.stringify({ repeat: 3 }));
  const cases: [string[], RegExp][] = [
    [["--groups", "A,Z", "--objective", `surrogate:${SURROGATE}`], /unknown group "Z"/],
    [["--config", shadow, "--objective", `surrogate:${SURROGATE}`], /customGroups\.A: A is a built-in group/],
    [
      ["--config", typo, "--objective", `surrogate:${SURROGATE}`],
      /repeat: unknown field \(did you mean repeats\?\)/,
    ],
    [["--repeats", "0"], /--repeats.*expected a positive integer/],
    [["--objective", `surrogate:${garbage}`], /garbage\.jsonl:1: not a JSON line/],
  ];
  const results = await Promise.all(
    cases.map(([args], k) => start([...args, "--offline", "--out", path.join(dir, `out-${k}`)]).done),
  );
  results.forEach((r, k) => {
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(cases[k]?.[1] as RegExp);
    expect(existsSync(path.join(dir, `out-${k}`))).toBe(false);
  });
});

test("the same --out with other settings is refused (exit 2) naming what differs, with both values, and changes nothing", async () => {
  const out = path.join(mkdtempSync(path.join(tmpdir(), "bilevel-study-other-")), "s");
  const args = ["--objective", `surrogate:${SURROGATE}`, "--groups", "A", "--repeats", "1", "--offline"];
  const first = await start([...args, "--iterations", "2", "--out", out]).done;
  expect(first.code).toBe(0);
  const stored = readFileSync(path.join(out, "study.json"), "utf8");
  const other = await start([...args, "--iterations", "3", "--out", out]).done;
  expect(other.code).toBe(2);
  expect(other.stderr).toMatch(
    /holds another study \(differs in spec\.iterations \(2 there, 3 here\)\): continue it with --resume /,
  );
  expect(readFileSync(path.join(out, "study.json"), "utf8")).toBe(stored);
  expect(readdirSync(path.join(out, "runs"))).toEqual(["A-r1"]);
  // A study folder is no run folder: a run there is refused, and the run commands point to runs/.
  const run = await cliAsync(["run", "--offline", "--out", out]);
  expect(run.status).toBe(2);
  expect(run.stderr).toMatch(
    /holds a study \(study\.json; its runs are under runs\/\): choose another --out/,
  );
  const status = await cliAsync(["status", out]);
  expect(status.status).toBe(2);
  expect(status.stderr).toContain(
    `no run database (run.db) there; it holds a study, whose runs are under ${path.join(out, "runs")}`,
  );
  expect(readdirSync(out).sort()).toEqual(["attempts.jsonl", "results.json", "runs", "study.json"]);
}, 120_000);

test("more repeats, by the same command or --resume --repeats: the runs so far kept, the new ones as a fresh study's", async () => {
  const root = mkdtempSync(path.join(tmpdir(), "bilevel-study-more-"));
  const [grown, fresh] = [path.join(root, "grown"), path.join(root, "fresh")];
  const args = ["--objective", `surrogate:${SURROGATE}`, "--groups", "A", "--iterations", "2", "--offline"];
  expect((await start([...args, "--repeats", "1", "--out", grown]).done).code).toBe(0);
  const more = await start([...args, "--repeats", "2", "--out", grown]).done;
  expect(more.code).toBe(0);
  expect(more.stderr).toMatch(/1 repeat\(s\) added \(now 2\): 1 new runs; the runs so far are kept/);
  expect(more.stderr).toMatch(/1 of 2 runs already finished; 1 to go/);
  // One group: nothing to compare it with, so no comparison table.
  expect(more.stdout).not.toMatch(/vs A:|vs R:/);
  expect(more.stdout).toMatch(/^A +2 /m);
  const resumed = await start(["--resume", grown, "--repeats", "3"]).done;
  expect(resumed.code).toBe(0);
  expect((await start([...args, "--repeats", "3", "--out", fresh]).done).code).toBe(0);
  const study = (dir: string) => JSON.parse(readFileSync(path.join(dir, "study.json"), "utf8"));
  expect(study(grown).spec).toEqual(study(fresh).spec);
  expect(study(grown).runs).toEqual(study(fresh).runs);
  // Each run ran once; the same seeds give the same results as the fresh study's.
  expect(readAttempts(grown).map((a) => a.run)).toEqual(["A-r1", "A-r2", "A-r3"]);
  const best = (dir: string) => loadStudy(dir).runs.map((r) => r.best);
  expect(best(grown)).toEqual(best(fresh));
  const fewer = await start(["--resume", grown, "--repeats", "2"]).done;
  expect(fewer.code).toBe(2);
  expect(fewer.stderr).toMatch(
    /--repeats 2: the study in .* has 3 repeats; it can gain repeats, not lose them/,
  );
  const fewerSame = await start([...args, "--repeats", "2", "--out", grown]).done;
  expect(fewerSame.code).toBe(2);
  expect(fewerSame.stderr).toMatch(/holds this study with 3 repeats; it can gain repeats, not lose them/);
  const other = await start(["--resume", grown, "--repeats", "4", "--iterations", "5"]).done;
  expect(other.code).toBe(2);
  expect(other.stderr).toMatch(/drop --iterations \(only --repeats to add repeats/);
  expect(study(grown).spec.repeats).toBe(3);
}, 180_000);

test("Ctrl-C: the study exits 130, a run it stops is 'stopped', not failed, and no error is recorded for it", async () => {
  const dir = path.join(mkdtempSync(path.join(tmpdir(), "bilevel-study-int-")), "s");
  const args = [
    "--objective",
    `surrogate:${SURROGATE}`,
    "--groups",
    "A",
    "--repeats",
    "1",
    "--iterations",
    "200",
  ];
  const study = start([...args, "--offline", "--out", dir]);
  await waitFor(() => runsInProgress(dir).length > 0, { intervalMs: 20 });
  study.child.kill("SIGINT");
  const stopped = await study.done;
  expect(stopped.code).toBe(130);
  expect(stopped.stderr).toMatch(/^\[1\/1\] A-r1 stopped \(SIGTERM; it continues with the study\)$/m);
  expect(stopped.stderr).not.toMatch(/failed|did not finish/);
  expect(readAttempts(dir)).toEqual([expect.objectContaining({ run: "A-r1", exitCode: 143 })]);
  expect(readAttempts(dir)[0]).not.toHaveProperty("error");
}, 120_000);

test("a run that fails the same way each time: its reason, its attempts in a row, and advice other than 'run it again'", async () => {
  const dir = mkdtempSync(path.join(tmpdir(), "bilevel-study-fails-"));
  // A train.py whose every run dies as an out-of-memory one does: the run's baselines all fail.
  writeFileSync(
    path.join(dir, "train.py"),
    'LEARNING_RATE = 0.01\nDEPTH = 4\nimport sys\nprint("CUDA out of memory", file=sys.stderr)\nsys.exit(1)\n',
  );
  const trainer = {
    kind: "external",
    script: "train.py",
    git: false,
    params: { LEARNING_RATE: {}, DEPTH: {} },
  };
  const config = path.join(dir, "study.json");
  writeFileSync(
    config,
    JSON.stringify({ groups: ["A"], repeats: 1, iterations: 2, budgetSeconds: 5, run: { trainer } }),
  );
  const args = ["--config", config, "--objective", "trainer", "--offline", "--out", path.join(dir, "out")];
  const first = await start(args).done;
  expect(first.code).toBe(1);
  expect(first.stderr).toMatch(
    /\[1\/1\] A-r1 failed \(exit 1; see runs\/A-r1\/run\.log\): bilevel: every baseline run failed/,
  );
  expect(first.stderr).toMatch(
    /1 run\(s\) did not finish:\n {2}A-r1: exit 1 — bilevel: every baseline run failed/,
  );
  expect(first.stderr).toContain("Run the same command again to continue them.");
  const second = await start(args).done;
  expect(second.code).toBe(1);
  expect(second.stderr).toMatch(
    /^0 of 1 runs already finished; 1 to go \(1 continues where it stopped: A-r1\)$/m,
  );
  expect(second.stderr).toMatch(
    /A-r1: exit 1, the same on its last 2 attempts — bilevel: every baseline run failed/,
  );
  expect(second.stderr).toMatch(
    /but A-r1 failed the same way more than once: fix what runs\/A-r1\/run\.log says first/,
  );
  const attempts = readAttempts(path.join(dir, "out"));
  expect(attempts.map((a) => a.exitCode)).toEqual([1, 1]);
  for (const a of attempts) expect(a.error).toMatch(/^bilevel: every baseline run failed/);
}, 120_000);

test("a run whose study is gone before it recorded the run's pid (killed while starting it) touches nothing", async () => {
  // A resume cannot see such a run (run.pid does not name it), so it would start the run afresh
  // beside it: the run must quit before touching its folder.
  const folder = mkdtempSync(path.join(tmpdir(), "bilevel-orphan-"));
  const config = path.join(folder, "config.json");
  writeFileSync(
    config,
    JSON.stringify({ name: "orphan", iterations: 2, trainer: { kind: "surrogate", file: SURROGATE } }),
  );
  // The pid of a process that has exited: this run's parent (the test) is not its study.
  const gone = spawnSync(process.execPath, ["-e", ""]).pid;
  const child = spawn(process.execPath, cliArgv("run", "--config", config, "--out", folder, "--offline"), {
    stdio: ["ignore", "ignore", "pipe"],
    env: { ...process.env, [STUDY_PARENT_ENV]: String(gone) },
  });
  started.push(child);
  let stderr = "";
  child.stderr?.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
  expect(readdirSync(folder)).toEqual(["config.json"]);
  expect(stderr).toMatch(
    new RegExp(`study \\(process ${gone}\\) that started this run is gone and never recorded it`),
  );
  expect(code).toBe(130);
});

test("5 groups × 3 repeats × 10 iterations on the surrogate: killed mid-way, resumed, complete, nothing run twice", async () => {
  const dir = path.join(mkdtempSync(path.join(tmpdir(), "bilevel-study-")), "surrogate-study");
  const args = [
    "--objective",
    `surrogate:${SURROGATE}`,
    "--repeats",
    "3",
    "--iterations",
    "10",
    "--jobs",
    "2",
    "--offline",
    "--out",
    dir,
  ];
  const first = start(args);
  // Wait for a finished run and another one in progress, then kill the study outright.
  await waitFor(() => readAttempts(dir).some((a) => a.exitCode === 0) && runsInProgress(dir).length > 0, {
    intervalMs: 50,
  });
  const orphans = runsInProgress(dir);
  first.child.kill("SIGKILL");
  await first.done;
  // Read once the study is dead: exactly the runs it recorded as finished (a run in progress that
  // finished while the folders were scanned is among them, not among the killed).
  const finishedBefore = readAttempts(dir)
    .filter((a) => a.exitCode === 0)
    .map((a) => a.run);
  // Its run processes notice that the study is gone and stop on their own.
  await waitFor(() => orphans.every((o) => !running(o.pid)), { intervalMs: 50 });

  // Tables computed now (runs missing) say they are not final, naming the unfinished runs.
  expect(formatStudy(loadStudy(dir))).toMatch(
    /^NOT FINAL: \d+ of 15 runs are not finished \(.*\); the statistics cover/m,
  );
  // Grouped by state: the runs not started yet apart from those stopped or running.
  expect(formatStudy(loadStudy(dir))).toMatch(/^NOT FINAL: .*\(.*not started: [A-R]-r\d(, [A-R]-r\d)*[;)]/m);
  expect(loadStudy(dir, { target: 2.9 }).target).toEqual({ value: 2.9, source: "--target" });

  const interrupted = orphans
    .map((o) => o.id)
    .filter((id) => !finishedBefore.includes(id) && runState(path.join(dir, "runs", id)) !== "finished");
  const second = await start(args).done;
  expect(second.stderr).toMatch(/already finished/);
  // The resume names the runs it continues (their stores kept), apart from those it starts afresh.
  const continuing =
    /(?:continues where it|continue where they) stopped: (.*)\)$/m.exec(second.stderr)?.[1]?.split(", ") ??
    [];
  for (const id of interrupted) expect(continuing).toContain(id);
  // Its stderr in place of the code, so that a failure says which run failed and why.
  expect(second.code === 0 ? 0 : `exit ${second.code}:\n${second.stderr}`).toBe(0);
  for (const g of ["A", "B", "C", "D", "R"]) expect(second.stdout).toMatch(new RegExp(`^${g} +3 `, "m"));
  expect(second.stdout).toMatch(/vs A: Δ mean/);

  const results = loadStudy(dir);
  expect(results.runs).toHaveLength(15);
  const attempts = readAttempts(dir);
  for (const id of finishedBefore) expect(attempts.filter((a) => a.run === id)).toHaveLength(1);
  for (const run of results.runs) {
    expect(run.state).toBe("finished");
    expect(run.iterations).toBe(10);
    // 3 baselines (seeds s, s+1, s+2) and one trial per iteration, each exactly once.
    const keys = run.curve.map((p) => `${p.kind}:${p.iteration}:${p.seed}`);
    expect(new Set(keys).size).toBe(keys.length);
    expect(run.curve.filter((p) => p.kind === "baseline")).toHaveLength(3);
    expect(run.curve.filter((p) => p.kind === "search").length).toBeLessThanOrEqual(10);
    expect(run.curve.map((p) => p.trial)).toEqual(run.curve.map((_, k) => k + 1));
  }
  // Groups share their baselines' seeds: the same baseline per repeat in every group.
  for (const repeat of [1, 2, 3]) {
    const baselines = results.runs.filter((r) => r.repeat === repeat).map((r) => r.baseline);
    expect(new Set(baselines).size).toBe(1);
  }
  const killed = orphans.map((o) => o.id).filter((id) => !finishedBefore.includes(id));
  expect(killed.length).toBeGreaterThan(0);
  expect(results.groups.map((g) => g.improvement.n)).toEqual([3, 3, 3, 3, 3]);
  expect(formatStudy(results)).not.toContain("NOT FINAL");
  // An unnamed study is "study" in its tables, not "study study", and its page names its folder.
  expect(formatStudy(results)).toMatch(/^study: 5 groups × 3 repeats × 10 iterations; objective surrogate/);

  // Its page says what the tables say: the same groups, statistics and verdicts (results.json's).
  const pageFile = path.join(dir, "page.html");
  const report = await cliAsync(["report", dir, "--out", pageFile]);
  expect(report.stderr).toBe("");
  expect(report.status).toBe(0);
  const page = readFileSync(pageFile, "utf8");
  expect(page).toContain("15 / 15 finished");
  expect(page).toContain('<h1>Study <span class="name">surrogate-study</span></h1>');
  for (const g of results.groups) {
    const { mean, sd, median } = g.improvement;
    expect(page).toContain(`${mean?.toFixed(4)} ± ${sd?.toFixed(4)}`);
    expect(page).toContain(median?.toFixed(4));
    if (g.vsA)
      expect(page).toContain(`permutation test (${g.vsA.exact ? "exact" : "Monte Carlo"}): ${g.vsA.verdict}`);
  }

  // A run whose wall time is not recorded (its attempt line missing, as for a run that ended after
  // its study died): its group's time columns are over the other runs, all four the same ones.
  const lines = readFileSync(attemptsPath(dir), "utf8").split("\n");
  writeFileSync(attemptsPath(dir), lines.filter((l) => !l.includes('"run":"B-r2"')).join("\n"));
  const untimed = loadStudy(dir);
  const b = untimed.groups.find((g) => g.name === "B")!;
  // (A run that finished on its own after the kill has no attempt line either.)
  const withLine = new Set(readAttempts(dir).map((a) => a.run));
  const timed = untimed.runs.filter((r) => r.group === "B" && withLine.has(r.id));
  expect(timed.length).toBeGreaterThan(0);
  expect([b.seconds.runs, b.target.n]).toEqual([timed.length, 3]);
  const mean = (f: (r: (typeof timed)[number]) => number | null) =>
    timed.reduce((sum, r) => sum + (f(r) ?? Number.NaN), 0) / timed.length;
  expect(b.seconds.training).toBeCloseTo(
    mean((r) => r.seconds.training),
    9,
  );
  expect(b.seconds.wall).toBeCloseTo(
    mean((r) => r.seconds.wall),
    9,
  );
  const { wall, training, llm, overhead } = b.seconds;
  expect(wall).toBeCloseTo((training ?? 0) + (llm ?? 0) + (overhead ?? 0), 9);
  const aTimed = untimed.runs.filter((r) => r.group === "A" && withLine.has(r.id)).length;
  expect(untimed.groups.find((g) => g.name === "A")!.seconds.runs).toBe(aTimed);
  const table = formatStudy(untimed);
  expect(table).toMatch(
    new RegExp(`^B +\\d/3 .* ${b.seconds.wall!.toFixed(1)} \\(n=${timed.length}\\) `, "m"),
  );
  expect(table).toMatch(/^wall s\/run \(n=…\): over the finished runs whose wall time is recorded/m);
  // 15 runs as separate processes: ~20 s on an idle 2-core machine, several times that on a loaded one.
}, 300_000);
