// The adapter on a user's own train.py, as an autoresearch user has it: the baseline runs the file
// byte for byte, only changed constants are written, the config is read back from the file that
// ran, declared constraints are refused before anything starts, the seed reaches the script, and
// at the deadline every process the trial started is gone, whatever session it moved to.
import {
  chmodSync,
  cpSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import os from "node:os";
import path from "node:path";
import type { Config, ParamSpec } from "../../mechanism-api/index.d.ts";
import { ExternalTrainer } from "../../trainer/external.ts";
import { constantsConfig, discoverSource } from "../../trainer/script-space.ts";
import type { TrialRequest } from "../../trainer/types.ts";

const python = "/usr/bin/python3";
const fixtures = path.resolve(import.meta.dirname, "../fixtures");
let tmp: string;
let project: string; // a copy of the autoresearch-style fixture
let script: string;
beforeAll(() => {
  tmp = mkdtempSync(path.join(os.tmpdir(), "bilevel-external-script-"));
  project = path.join(tmp, "project");
  cpSync(path.join(fixtures, "autoresearch"), project, { recursive: true });
  script = path.join(project, "train.py");
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function request(name: string, extra: Partial<TrialRequest> = {}): TrialRequest {
  return { config: {}, budgetSeconds: 3, seed: 1, device: "cpu", workDir: path.join(tmp, name), ...extra };
}

/** A file's constants; `folder` is where its imports come from (a trial's copy imports from the script's folder). */
function constants(file: string, folder = path.dirname(file)): Config {
  const found = discoverSource(readFileSync(file, "utf8"), folder, python);
  if (!found.ok) throw new Error(found.error);
  return constantsConfig(found.value.constants);
}

/** Whether a process runs (a zombie has ended: it only waits for its parent to read its status). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const state = stat.slice(stat.lastIndexOf(")") + 2)[0];
    return state !== "Z" && state !== "X";
  } catch {
    return false;
  }
}

/** Live processes whose command line mentions `text` (the process table, read from /proc). */
function processesMentioning(text: string): number[] {
  return readdirSync("/proc")
    .filter((e) => /^\d+$/.test(e) && Number(e) !== process.pid)
    .filter((e) => {
      try {
        return readFileSync(`/proc/${e}/cmdline`, "utf8").includes(text) && alive(Number(e));
      } catch {
        return false;
      }
    })
    .map(Number);
}

test("the baseline runs the script byte for byte; a change rewrites only its own line; 2**19 stays 2**19", async () => {
  const original = readFileSync(script);
  const start = constants(script); // what a run's startConfig holds: every constant, as on disk
  const trainer = new ExternalTrainer({ script, python });
  const base = await trainer.run(request("baseline", { config: start }));
  expect(base.status).toBe("ok");
  expect(readFileSync(path.join(tmp, "baseline", "train.py")).equals(original)).toBe(true);
  expect(base.ranConfig).toEqual(start);

  const changed = await trainer.run(request("changed", { config: { ...start, MATRIX_LR: 0.03, DEPTH: 10 } }));
  expect(changed.status).toBe("ok");
  const before = original.toString("utf8").split("\n");
  const after = readFileSync(path.join(tmp, "changed", "train.py"), "utf8").split("\n");
  expect(after.filter((line, i) => line !== before[i])).toEqual([
    "MATRIX_LR = 0.03  # learning rate for matrix parameters (Muon)",
    "DEPTH = 10  # number of transformer layers",
  ]);
  expect(after).toContain("TOTAL_BATCH_SIZE = 2**19  # ~524K tokens per optimizer step");
  expect(changed.valBpb).toBeLessThan(base.valBpb ?? 0); // the fixture's optimum is near these values
});

test("the config of a trial is read back from the file that ran: computed constants follow their inputs", async () => {
  const start = constants(script);
  const trainer = new ExternalTrainer({ script, python });
  // tokens_per_fwdbwd = DEVICE_BATCH_SIZE * MAX_SEQ_LEN is computed by the script: the stale
  // value in the request is not written over the expression.
  const o = await trainer.run(
    request("read-back", { config: { ...start, DEVICE_BATCH_SIZE: 64, EMBEDDING_LR: 0.14955 } }),
  );
  expect(o.status).toBe("ok");
  const copy = path.join(tmp, "read-back", "train.py");
  expect(o.ranConfig).toEqual(constants(copy, project));
  expect(o.ranConfig).toMatchObject({
    DEVICE_BATCH_SIZE: 64,
    EMBEDDING_LR: 0.14955,
    tokens_per_fwdbwd: 64 * 2048,
  });
  expect(readFileSync(copy, "utf8")).toContain("tokens_per_fwdbwd = DEVICE_BATCH_SIZE * MAX_SEQ_LEN\n");
  expect(o.result?.config).toEqual(o.ranConfig);
});

test("a config that breaks a declared constraint is refused before anything starts (no process, no copy)", async () => {
  const params: ParamSpec[] = [
    {
      name: "TOTAL_BATCH_SIZE",
      kind: "int",
      min: 2 ** 17,
      max: 2 ** 21,
      default: 2 ** 19,
      description: "",
      constraints: ["TOTAL_BATCH_SIZE % (DEVICE_BATCH_SIZE * 2048) == 0"],
    },
  ];
  const o = await new ExternalTrainer({ script, python, params }).run(
    request("constraint", { config: { TOTAL_BATCH_SIZE: 890212 } }),
  );
  expect(o.status).toBe("invalid-config");
  expect(o.exitCode).toBeNull();
  expect(o.message).toMatch(
    /constraint "TOTAL_BATCH_SIZE % \(DEVICE_BATCH_SIZE \* 2048\) == 0" is false for TOTAL_BATCH_SIZE=890212/,
  );
  expect(readdirSync(path.join(tmp, "constraint"))).toEqual(["train.log"]);
  // Undeclared, the same value burns a trial on the script's own assertion.
  const burnt = await new ExternalTrainer({ script, python }).run(
    request("no-constraint", { config: { TOTAL_BATCH_SIZE: 890212 } }),
  );
  expect(burnt.status).toBe("crashed");
  expect(burnt.message).toMatch(/AssertionError/);
});

test("the seed reaches the script as $BILEVEL_SEED; a SEED constant is offset from the run seed", async () => {
  const o = await new ExternalTrainer({
    script: path.join(fixtures, "trainer", "karpathy_train.py"),
    python,
  }).run(request("seed-env", { seed: 5 }));
  expect(o.status).toBe("ok");
  expect(readFileSync(o.logPath, "utf8")).toContain("seed from the environment: 5");

  const seeded = path.join(tmp, "seeded", "train.py");
  mkdirSync(path.dirname(seeded), { recursive: true });
  const text = 'SEED = 42\nprint("---")\nprint(f"val_bpb: {1 + SEED / 1000}")\n';
  writeFileSync(seeded, text);
  const trainer = new ExternalTrainer({ script: seeded, python, baseSeed: 1 });
  const first = await trainer.run(request("seed-1", { seed: 1 }));
  expect(readFileSync(path.join(tmp, "seed-1", "train.py"), "utf8")).toBe(text);
  const third = await trainer.run(request("seed-3", { seed: 3 }));
  expect(readFileSync(path.join(tmp, "seed-3", "train.py"), "utf8")).toMatch(/^SEED = 44$/m);
  expect([first.valBpb, third.valBpb]).toEqual([1.042, 1.044]);
});

test("a script with a UTF-8 byte order mark runs (Python accepts it)", async () => {
  const bom = path.join(project, "train_bom.py");
  writeFileSync(bom, Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), readFileSync(script)]));
  const trainer = new ExternalTrainer({ script: bom, python });
  const o = await trainer.run(request("bom", { config: { DEPTH: 9 } }));
  expect(o.message).toBe("ok");
  expect(readFileSync(path.join(tmp, "bom", "train_bom.py")).subarray(0, 3)).toEqual(
    Buffer.from([0xef, 0xbb, 0xbf]),
  );
  expect(o.ranConfig?.DEPTH).toBe(9);
});

describe("every process the trial started ends with it (the process table is checked)", () => {
  const small = path.join(fixtures, "trainer", "karpathy_train.py");

  test("at the deadline, a process that moved to its own session is killed too, and the trial ends", async () => {
    const trainer = new ExternalTrainer({ script: small, python, timeoutFactor: 1, graceSeconds: 0.5 });
    const o = await trainer.run(
      request("orphan-hang", { budgetSeconds: 1, config: { MODE: "orphan-hang" } }),
    );
    expect(o.status).toBe("timeout");
    expect(o.message).toMatch(
      /killed after 2 s \(budget 1 s × 1 \+ 0\.5 s grace\), with every process it started/,
    );
    const orphan = Number(readFileSync(path.join(tmp, "orphan-hang", "orphan.pid"), "utf8"));
    expect(alive(orphan)).toBe(false);
    expect(processesMentioning(path.join(tmp, "orphan-hang"))).toEqual([]);
  }, 30_000);

  test("when the script ends, what it left running in another session is killed and the trial ends", async () => {
    const o = await new ExternalTrainer({ script: small, python }).run(
      request("orphan", { config: { MODE: "orphan" } }),
    );
    expect(o.status).toBe("ok");
    const orphan = Number(readFileSync(path.join(tmp, "orphan", "orphan.pid"), "utf8"));
    expect(alive(orphan)).toBe(false);
    expect(processesMentioning(path.join(tmp, "orphan"))).toEqual([]);
  }, 30_000);
});

test("trainer.command may run the script with `uv run` (here a stand-in that starts Python as its child)", async () => {
  const bin = path.join(tmp, "bin");
  mkdirSync(bin, { recursive: true });
  writeFileSync(
    path.join(bin, "uv"),
    `#!/bin/sh\n[ "$1" = run ] || exit 2\nshift\n${python} "$@"\nexit $?\n`,
  );
  chmodSync(path.join(bin, "uv"), 0o755);
  const trainer = new ExternalTrainer({
    script,
    python,
    command: ["uv", "run", "{script}"],
    env: { PATH: `${bin}${path.delimiter}${process.env.PATH ?? ""}` },
  });
  const o = await trainer.run(request("uv", { config: { DEPTH: 12 } }));
  expect(o.message).toBe("ok");
  expect(o.result?.num_params).toBe(Math.round(12 * 6.3 * 1e6));
});
