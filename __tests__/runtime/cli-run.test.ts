// The run-facing commands as a user calls them (subprocesses): run, status, export, approve,
// resume with more iterations, and garbage input for each.
import { spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { RunStore } from "../../runtime/store.ts";
import { cliArgv } from "../support/cli.ts";

const root = path.resolve(import.meta.dirname, "../..");
const tmp = mkdtempSync(path.join(tmpdir(), "bilevel-cli-run-"));

function cli(...args: string[]) {
  return spawnSync(process.execPath, cliArgv(...args), { encoding: "utf8", cwd: tmp, timeout: 120_000 });
}

function config(name: string, body: object): string {
  const file = path.join(tmp, `${name}.json`);
  writeFileSync(file, JSON.stringify(body));
  return file;
}

const base = {
  iterations: 4,
  trainer: { kind: "synthetic", delayMs: 0, noise: 0.002 },
  acceptance: { baselineRepeats: 2 },
  level15: { every: 2, minActive: 6 },
  level2: { everyCycles: 1, retireWindow: 0 },
};

test.each([
  [["run", "--iterations", "abc"], /--iterations.*expected a positive integer, got "abc"/],
  [["run", "--budget", "-3"], /--budget.*expected a positive number/],
  [["run", "--config", "missing.json"], /no such file: missing\.json/],
  [["run", "--resume", "nowhere"], /--resume nowhere: no such folder/],
  [["status", "nowhere"], /nowhere: no such folder/],
  [["export", "nowhere", "--format", "xml"], /argument 'xml' is invalid/],
  [["mechanism", "approve", "nowhere", "m1"], /nowhere: no such folder/],
  [["mechanism", "approve", ".", "m1"], /\.: no run database \(run\.db\) there/],
])("%j is a clear usage error (exit 2)", (args, message) => {
  const r = cli(...args);
  expect(r.stderr).toMatch(message);
  expect(r.status).toBe(2);
});

test("a config that names a bad field is refused before anything runs", () => {
  const r = cli("run", "--config", config("bad", { ...base, acceptance: { k: -1 } }), "--out", "bad-run");
  expect(r.status).toBe(2);
  expect(r.stderr).toMatch(/acceptance\.k: must be >= 0/);
  expect(RunStore.exists(path.join(tmp, "bad-run"))).toBe(false);
});

test("approval policy: a Level 2 mechanism waits, `mechanism approve` releases it, a resumed run activates it", () => {
  const file = config("approval", { ...base, policy: { autoActivate: false } });
  const first = cli("run", "--config", file, "--out", "approval-run", "--offline");
  expect(first.status).toBe(0);
  const dir = path.join(tmp, "approval-run");
  let store = RunStore.open(dir, { readOnly: true });
  const waiting = store.mechanisms().filter((m) => m.status === "pending-approval");
  store.close();
  expect(waiting.length).toBeGreaterThan(0);
  const id = waiting[0]?.id ?? "";

  expect(cli("mechanism", "approve", dir, "m-none").stderr).toMatch(
    /no mechanism m-none .* waiting for approval: m/,
  );
  const approve = cli("mechanism", "approve", dir, id);
  expect(approve.status).toBe(0);
  expect(cli("mechanism", "approve", dir, id).stderr).toMatch(/is approved, not waiting/);

  const resumed = cli("run", "--resume", dir, "--offline", "--iterations", "6");
  expect(resumed.status).toBe(0);
  store = RunStore.open(dir, { readOnly: true });
  expect(store.mechanisms().find((m) => m.id === id)?.status).toBe("active");
  expect(
    store
      .trials()
      .filter((t) => t.kind === "search")
      .map((t) => t.iteration),
  ).toEqual([1, 2, 3, 4, 5, 6]);
  store.close();

  const status = cli("status", dir, "--json");
  expect(status.status).toBe(0);
  const report = JSON.parse(status.stdout) as {
    iterationsDone: number;
    mechanisms: { id: string; status: string }[];
  };
  expect(report.iterationsDone).toBe(6);
  expect(report.mechanisms.find((m) => m.id === id)?.status).toBe("active");
  expect(cli("status", dir).stdout).toMatch(/iterations 6\/6/);

  const tsv = cli("export", dir).stdout.trim().split("\n");
  expect(tsv[0]).toBe("commit\tval_bpb\tmemory_gb\tstatus\tdescription");
  expect(tsv).toHaveLength(1 + 2 + 6);
  const json = JSON.parse(cli("export", dir, "--format", "json").stdout) as {
    trials: unknown[];
    ledger: unknown[];
  };
  expect(json.trials).toHaveLength(8);
  expect(json.ledger.length).toBeGreaterThan(0);
});

test("a run folder that already holds a run is not overwritten", () => {
  const file = config("twice", { ...base, iterations: 1, level2: { everyCycles: 0 } });
  expect(cli("run", "--config", file, "--out", "twice-run", "--offline").status).toBe(0);
  const again = cli("run", "--config", file, "--out", "twice-run", "--offline");
  expect(again.status).toBe(2);
  expect(again.stderr).toMatch(/already holds a run: use --resume/);
});

test("trainer kind external: a Karpathy-style train.py drives the loop; only the searched constants are rewritten", () => {
  const script = path.join(root, "__tests__/fixtures/trainer/karpathy_train.py");
  const external = { ...base, iterations: 3, level2: { everyCycles: 0 }, acceptance: { mode: "strict" } };
  // The fixture lives in this project's repository: no run branch there.
  const missing = cli(
    "run",
    "--config",
    config("ext-bad", { ...external, trainer: { kind: "external", script, git: false } }),
  );
  expect(missing.status).toBe(2);
  expect(missing.stderr).toMatch(
    /trainer\.params: name the constants of karpathy_train\.py to search.*it has DEPTH, /,
  );

  const file = config("ext", {
    ...external,
    trainer: { kind: "external", script, git: false },
    activeParams: ["DEPTH", "MATRIX_LR", "EMBEDDING_LR"],
    startConfig: { DEPTH: 8, MATRIX_LR: 0.04, EMBEDDING_LR: 0.6 },
  });
  const r = cli("run", "--config", file, "--out", "ext-run", "--offline");
  if (r.status !== 0) throw new Error(r.stderr.slice(-2000));
  const store = RunStore.open(path.join(tmp, "ext-run"), { readOnly: true });
  const trials = store.trials();
  store.close();
  expect(trials).toHaveLength(4);
  for (const t of trials) {
    expect(t.status).toBe("ok");
    // The fixture scores 1 + DEPTH/100 + log2(TOTAL_BATCH_SIZE)/1000 + ...: DEPTH reached the script.
    expect(t.valBpb).toBeGreaterThan(1 + Number(t.config.DEPTH) / 100);
  }
});
