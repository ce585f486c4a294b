// One interpreter lookup (trainer/find_python.sh) for trials, config resolution and the GPU
// check. A machine with a CUDA build of torch in a venv usually still has Debian's CPU-only one
// at /usr/bin/python3: CUDA trials must get the CUDA one, and each trial records what it ran on.
import { spawnSync } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { cudaAvailable, findPython } from "../../trainer/python.ts";
import { TorchTrainer } from "../../trainer/torch-trainer.ts";

const repo = path.resolve(import.meta.dirname, "../..");
const stub = path.join(repo, "__tests__/fixtures/trainer/protocol_stub.py");
let tmp: string;
let fake: string;
let withFake: NodeJS.ProcessEnv;

beforeAll(() => {
  tmp = mkdtempSync(path.join(os.tmpdir(), "bilevel-lookup-"));
  const bin = path.join(tmp, "venv-bin");
  mkdirSync(bin);
  fake = path.join(bin, "python3");
  // Answers the lookup's probe as a CUDA build; runs a trial as the protocol stub.
  writeFileSync(
    fake,
    `#!/bin/sh\nif [ "$1" = "-c" ]; then echo "2.9.1+cu128 cuda"; exit 0; fi\nexec /usr/bin/python3 ${stub}\n`,
  );
  chmodSync(fake, 0o755);
  withFake = { ...process.env, PATH: `${bin}:/usr/bin:/bin` };
  delete withFake.BILEVEL_PYTHON;
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

test("for cuda and auto the lookup picks the interpreter whose torch sees a GPU; for cpu Debian's", () => {
  expect(findPython("torch", withFake, "cuda")).toEqual({
    ok: true,
    python: fake,
    torch: "2.9.1+cu128",
    cuda: true,
  });
  expect(findPython("torch", withFake, "auto")).toMatchObject({ ok: true, python: fake });
  expect(findPython("torch", withFake, "cpu")).toMatchObject({
    ok: true,
    python: "/usr/bin/python3",
    cuda: false,
  });
  expect(cudaAvailable(withFake)).toBe(true); // device "auto" resolves to cuda on such a machine
});

test("BILEVEL_PYTHON still wins, whatever it sees", () => {
  const env = { ...withFake, BILEVEL_PYTHON: "/usr/bin/python3" };
  expect(findPython("torch", env, "cuda")).toMatchObject({
    ok: true,
    python: "/usr/bin/python3",
    cuda: false,
  });
});

test("without a CUDA interpreter a cuda lookup fails, saying what each candidate lacks", () => {
  const env = { ...withFake, PATH: "/usr/bin:/bin" };
  const found = findPython("torch", env, "cuda");
  expect(found.ok).toBe(false);
  expect(!found.ok && found.error).toMatch(
    /no Python whose torch sees a CUDA device .*\/usr\/bin\/python3: torch \S+ sees no CUDA device/,
  );
  expect(findPython("torch", env, "auto")).toMatchObject({ ok: true, python: "/usr/bin/python3" }); // auto falls back
});

test("the GPU check script makes the same choice (it runs the same lookup)", () => {
  const which = (...args: string[]) =>
    spawnSync("bash", [path.join(repo, "trainer/gpu_check.sh"), ...args, "--which-python"], {
      env: withFake,
      encoding: "utf8",
    }).stdout.split("\t")[0];
  expect(which()).toBe(fake);
  expect(which("--dry")).toBe("/usr/bin/python3"); // its CPU dry mode uses the cpu lookup
});

test("each trial records the interpreter it ran on; a CUDA trial runs on the CUDA one", async () => {
  const saved = process.env.PATH;
  process.env.PATH = withFake.PATH;
  try {
    const o = await new TorchTrainer().run({
      config: {},
      budgetSeconds: 5,
      seed: 0,
      device: "cuda",
      workDir: path.join(tmp, "cuda-trial"),
    });
    expect(o.status).toBe("ok");
    expect(o.python).toBe(fake);
    expect(o.result?.python).toBe(fake); // stored with the trial's result in run.db
  } finally {
    process.env.PATH = saved;
  }
}, 60_000);
