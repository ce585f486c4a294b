// The integrity issue's checks as a user runs them: from another working directory, with a config
// whose paths are relative to its own folder, with trials that fail, and a resume that changes too much.
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { defaultConfig } from "../../trainer/search-space.ts";
import { cliArgv } from "../support/cli.ts";
import { waitFor } from "../support/wait.ts";

const tmp = mkdtempSync(path.join(tmpdir(), "bilevel-cli-integrity-"));
const elsewhere = mkdtempSync(path.join(tmpdir(), "bilevel-elsewhere-"));

function cli(cwd: string, ...args: string[]) {
  const r = spawnSync(process.execPath, cliArgv(...args), { cwd, encoding: "utf8", timeout: 300_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

test("config show --device cuda --json shows the GPU defaults, without running anything", () => {
  const r = cli(elsewhere, "config", "show", "--device", "cuda", "--json");
  expect(r.status).toBe(0);
  const shown = JSON.parse(r.stdout);
  expect(shown.device).toBe("cuda");
  expect(shown.startConfig).toEqual(defaultConfig("cuda"));
  expect(shown.policy.isolateMemoryMb).toBe(64);
  const text = cli(elsewhere, "config", "show", "--device", "cpu");
  expect(text.stdout).toMatch(/^device: "cpu"$/m);
  expect(text.stdout).toMatch(/DEPTH\s+start 2\s+int \[1, 24\]/);
  const bad = cli(elsewhere, "config", "show", "--device", "tpu");
  expect(bad.status).toBe(2);
});

test("a run whose trials fail finishes with exit 0, from another folder, paths relative to the config", () => {
  const project = path.join(tmp, "project");
  mkdirSync(path.join(project, "mechanisms"), { recursive: true });
  // Suggests a learning rate that diverges every other iteration: failed trials among scored ones.
  writeFileSync(
    path.join(project, "mechanisms", "diverge.ts"),
    `import type { Mechanism } from "bilevel/mechanism-api";
export default {
  manifest: { name: "diverge", version: 1, hooks: ["suggest"], capabilities: [] },
  suggest(ctx) {
    if (ctx.iteration % 2 === 0) return undefined;
    return { changes: [{ param: "MATRIX_LR", value: 1 }], rationale: "too hot" };
  },
} satisfies Mechanism<{}>;
`,
  );
  const config = path.join(project, "run.json");
  writeFileSync(
    config,
    JSON.stringify({
      name: "fails",
      iterations: 6,
      budgetSeconds: 1,
      trainer: { kind: "synthetic", delayMs: 0, noise: 0.002 },
      mechanisms: ["mechanisms/diverge.ts"],
    }),
  );
  const run = cli(elsewhere, "run", "--config", config, "--out", "out/fails");
  expect(run.stderr).not.toMatch(/Invalid array length/);
  expect(run.status).toBe(0);
  const dir = path.join(elsewhere, "out/fails");
  const tsv = readFileSync(path.join(dir, "results.tsv"), "utf8").trim().split("\n");
  expect(tsv.filter((l) => l.split("\t")[3] === "crash").length).toBeGreaterThanOrEqual(2);
  expect(tsv.find((l) => l.includes("crash"))).toMatch(/diverged: loss became NaN/);
  // The console's #N is the store's trial N and results.tsv's trial-N.
  const shown = [
    ...run.stderr.matchAll(/^\[L1 \] #(\d+) \(iteration \d+\) (?:val_bpb (\d\.\d{4})|DIVERGED)/gm),
  ];
  expect(shown).toHaveLength(6);
  for (const m of shown) {
    const row = tsv.find((l) => l.startsWith(`trial-${m[1]}\t`));
    expect(row).toBeDefined();
    if (m[2] !== undefined) expect(Number(row?.split("\t")[1]).toFixed(4)).toBe(m[2]);
    else expect(row?.split("\t")[3]).toBe("crash");
  }
  const status = cli(tmp, "status", dir);
  expect(status.status).toBe(0);
  expect(status.stdout).toMatch(/iterations 6\/6/);
  expect(status.stdout).toMatch(/failed trial\(s\) not drawn/);
  const json = cli(tmp, "status", dir, "--json");
  expect(json.status).toBe(0);
  expect(JSON.parse(json.stdout).iterationsDone).toBe(6);

  // A resume may add iterations, but not change what the trials were measured with.
  writeFileSync(config, JSON.stringify({ ...JSON.parse(readFileSync(config, "utf8")), seed: 5 }));
  const refused = cli(elsewhere, "run", "--resume", "out/fails", "--config", config);
  expect(refused.status).toBe(2);
  expect(refused.stderr).toMatch(/cannot resume with a different seed/);
  const more = cli(elsewhere, "run", "--resume", "out/fails", "--iterations", "7");
  expect(more.status).toBe(0);
  expect(JSON.parse(cli(tmp, "status", dir, "--json").stdout).iterationsDone).toBe(7);
}, 300_000);

test("bad input is refused before anything is created", () => {
  const config = path.join(tmp, "missing-mechanism.json");
  writeFileSync(
    config,
    JSON.stringify({ mechanisms: ["nope.ts"], trainer: { kind: "synthetic", delayMs: 0, noise: 0 } }),
  );
  const r = cli(elsewhere, "run", "--config", config, "--out", "never");
  expect(r.status).toBe(2);
  expect(r.stderr).toMatch(/mechanisms\[0\]: .*nope\.ts does not exist/);
  expect(() => readFileSync(path.join(elsewhere, "never", "run.db"))).toThrow(/ENOENT/);
});

test("the demo works when started from another folder", () => {
  const r = cli(elsewhere, "demo", "--iterations", "1", "--budget", "2", "--out", "demo-elsewhere");
  expect(r.stderr).toMatch(/tabu-search activated/);
  expect(r.status).toBe(0);
  const tsv = readFileSync(path.join(elsewhere, "demo-elsewhere", "results.tsv"), "utf8");
  expect(tsv.trim().split("\n")).toHaveLength(1 + 2 + 1); // header, 2 baselines, 1 trial
}, 300_000);

test("one process per run folder: a second resume is refused while the run goes on; a killed run says so and resumes", async () => {
  const config = path.join(tmp, "slow.json");
  writeFileSync(
    config,
    JSON.stringify({
      iterations: 4,
      budgetSeconds: 1,
      // Trials slow enough that the run still goes on when the second command has started, even
      // on a loaded machine where a Node start takes seconds.
      trainer: { kind: "synthetic", delayMs: 2_500, noise: 0.002 },
    }),
  );
  const dir = path.join(tmp, "locked");
  const first = spawn(process.execPath, cliArgv("run", "--config", config, "--out", dir), {
    stdio: "ignore",
  });
  const exited = new Promise<number | null>((resolve) => first.on("exit", (code) => resolve(code)));
  await waitFor(() => existsSync(path.join(dir, "run.lock")) && existsSync(path.join(dir, "trials")));
  const second = cli(tmp, "run", "--resume", dir);
  expect(second.status).toBe(2);
  expect(second.stderr).toMatch(new RegExp(`is in use by process ${first.pid}`));
  first.kill("SIGKILL");
  await exited;
  const status = cli(tmp, "status", dir);
  expect(status.status).toBe(0);
  expect(status.stdout).toMatch(
    /status interrupted, .*\n {2}why: no process is running it: it was killed; continue with --resume/,
  );
  const resumed = cli(tmp, "run", "--resume", dir);
  expect(resumed.status).toBe(0);
  expect(JSON.parse(cli(tmp, "status", dir, "--json").stdout)).toMatchObject({
    status: "finished",
    iterationsDone: 4,
  });
  expect(existsSync(path.join(dir, "run.lock"))).toBe(false);
}, 300_000);
