// What a trial's processes see of our environment: an allow-list, never the LLM key or a
// secret-looking name. Jest gives each test file a copy of process.env (a child started
// without an explicit env would not see changes to it), so the real processes are started
// by a Node process whose real environment holds the secrets; each dumps the environment
// the kernel gave it (/proc/PID/environ).
import { spawnSync } from "node:child_process";
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { childEnv, DEFAULT_ENV_ALLOW } from "../../trainer/child-env.ts";

const python = "/usr/bin/python3";
/** Set in this (the parent) process for the whole file. */
const PARENT: Record<string, string> = {
  OPENAI_API_KEY: "sk-parent-secret",
  MY_SECRET_TOKEN: "tok-parent-secret",
  LLM_AUTH: "llm-key-under-a-plain-name", // the run's LLM key variable, named by secretEnv
  ALLOWED_EXTRA: "extra-ok",
  UNLISTED_VAR: "not-allow-listed",
};
const secretEnv = ["LLM_AUTH"];
// Allow-listing a secret does not pass it: the deny rule wins.
const envAllow = ["ALLOWED_EXTRA", "MY_SECRET_TOKEN", "LLM_AUTH", "OPENAI_*"];
let tmp: string;
beforeAll(() => {
  tmp = mkdtempSync(path.join(os.tmpdir(), "bilevel-child-env-"));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const trainerDir = path.resolve(import.meta.dirname, "../../trainer");
const moduleUrl = (name: string) => JSON.stringify(pathToFileURL(path.join(trainerDir, name)).href);

/** Run ES module code in a Node process whose environment holds PARENT. */
function inParent(code: string): void {
  const r = spawnSync(
    process.execPath,
    ["--no-node-snapshot", "--disable-warning=ExperimentalWarning", "--input-type=module", "-e", code],
    { env: { ...process.env, ...PARENT }, encoding: "utf8", timeout: 120_000 },
  );
  if (r.status !== 0) throw new Error(`driver failed (${r.status ?? r.signal}): ${r.stderr}`);
}

/** The driver's prelude: the trainer modules, tmp, and a trial request in tmp/NAME. */
const prelude = () => `
import { TorchTrainer } from ${moduleUrl("torch-trainer.ts")};
import { ExternalTrainer, rewriteConstants } from ${moduleUrl("external.ts")};
import { findPython } from ${moduleUrl("python.ts")};
const tmp = ${JSON.stringify(tmp)};
const python = ${JSON.stringify(python)};
const envOptions = ${JSON.stringify({ envAllow, secretEnv })};
const request = (name) => ({ config: {}, budgetSeconds: 5, seed: 0, device: "cpu", workDir: tmp + "/" + name });
`;

/** A /proc/PID/environ dump: NUL-separated NAME=value entries. */
function parseEnviron(raw: Buffer): Map<string, string> {
  const env = new Map<string, string>();
  for (const entry of raw.toString("utf8").split("\0")) {
    const i = entry.indexOf("=");
    if (i > 0) env.set(entry.slice(0, i), entry.slice(i + 1));
  }
  return env;
}

/** No secret reached the process, under any name or as any value; PATH did. */
function expectClean(env: Map<string, string>): void {
  expect(env.get("PATH")).toBe(process.env.PATH);
  for (const name of ["OPENAI_API_KEY", "MY_SECRET_TOKEN", "LLM_AUTH", "UNLISTED_VAR"]) {
    expect(env.has(name)).toBe(false);
  }
  const values = [...env.values()].join("\n");
  expect(values).not.toContain("parent-secret");
  expect(values).not.toContain("llm-key-under");
}

test("childEnv: allow-list with prefixes, explicit values, and a deny rule that always wins", () => {
  const parent = {
    PATH: "/bin",
    LC_ALL: "C.UTF-8",
    CUDA_VISIBLE_DEVICES: "1",
    OPENAI_API_KEY: "k",
    HF_TOKEN: "t",
    DB_PASSWORD: "p",
    AWS_SECRET_ACCESS_KEY: "s",
    GH_CREDENTIALS: "c",
    LLM_AUTH: "l",
    RANDOM_THING: "r",
    EXTRA_ONE: "e",
  };
  const env = childEnv(parent, {
    allow: ["EXTRA_*", "OPENAI_API_KEY", "HF_TOKEN", "LLM_AUTH"],
    secret: ["LLM_AUTH"],
    set: { FOO: "bar", API_KEY: "explicit", PATH: "/usr/bin" },
  });
  expect(env).toEqual({
    PATH: "/usr/bin",
    LC_ALL: "C.UTF-8",
    CUDA_VISIBLE_DEVICES: "1",
    EXTRA_ONE: "e",
    FOO: "bar",
  });
  expect(DEFAULT_ENV_ALLOW).toContain("PATH");
  expect(childEnv({ PATH: "/bin" }, { set: { PATH: undefined } })).toEqual({});
});

test("the built-in trainer's process (through runProcess) gets only the allow-list", () => {
  const dump = path.join(tmp, "torch-environ");
  // python -c CODE --config ...: the process the adapter starts, dumping what it was given.
  const code =
    "import os; open(os.environ['DUMP_FILE'], 'wb').write(open('/proc/self/environ', 'rb').read())";
  inParent(`${prelude()}
    await new TorchTrainer({
      python,
      entry: ["-c", ${JSON.stringify(code)}],
      env: { DUMP_FILE: ${JSON.stringify(dump)}, API_KEY: "explicit-parent-secret" },
      ...envOptions,
    }).run(request("torch"));`);
  const env = parseEnviron(readFileSync(dump));
  expectClean(env);
  expect(env.has("API_KEY")).toBe(false);
  expect(env.get("ALLOWED_EXTRA")).toBe("extra-ok");
  expect(env.get("BILEVEL_PARENT_PID")).toMatch(/^\d+$/); // the parent-death tie
  expect(env.get("OPENBLAS_NUM_THREADS")).toBeDefined();
  expect(env.get("PYTHONPATH")?.split(path.delimiter)[0]).toBe(path.dirname(trainerDir));
});

test("a user's train.py (external adapter, through the parent-death shim) gets only the allow-list", () => {
  const script = path.join(tmp, "train.py");
  writeFileSync(
    script,
    [
      "import json, os",
      "here = os.path.dirname(os.path.abspath(__file__))",
      "def environ(pid):",
      "    with open(f'/proc/{pid}/environ', 'rb') as f:",
      "        return f.read().decode()",
      "with open(os.path.join(here, 'environ.json'), 'w') as f:",
      "    json.dump({'self': environ('self'), 'shim': environ(os.getppid())}, f)",
      "print('---')",
      "print('val_bpb:          1.5')",
      "",
    ].join("\n"),
  );
  inParent(`${prelude()}
    const o = await new ExternalTrainer({ script: ${JSON.stringify(script)}, python, ...envOptions }).run(
      request("external"),
    );
    if (o.status !== "ok") throw new Error(o.message);`);
  const dumped = JSON.parse(readFileSync(path.join(tmp, "external", "environ.json"), "utf8")) as {
    self: string;
    shim: string;
  };
  for (const raw of [dumped.self, dumped.shim]) {
    const env = parseEnviron(Buffer.from(raw));
    expectClean(env);
    expect(env.get("ALLOWED_EXTRA")).toBe("extra-ok");
    expect(env.get("PYTHONPATH")?.split(path.delimiter)[0]).toBe(tmp); // the script's folder
  }
});

test("the helper processes (rewrite helper, Python lookup) get only the default allow-list", () => {
  // A stand-in interpreter that dumps the environment it was given, then runs the real Python.
  const dumps = path.join(tmp, "helper-dumps");
  const fake = path.join(tmp, "fake-python.sh");
  writeFileSync(
    fake,
    `#!/bin/sh\nmkdir -p "${dumps}"\ncat /proc/$$/environ > "${dumps}/$$"\nexec ${python} "$@"\n`,
  );
  chmodSync(fake, 0o755);
  inParent(`${prelude()}
    const fake = ${JSON.stringify(fake)};
    const r = rewriteConstants("X = 1\\n", { X: 2 }, fake);
    if (r.errors.length) throw new Error(r.errors.join("; "));
    const found = findPython("json", { ...process.env, BILEVEL_PYTHON: fake });
    if (!found.ok) throw new Error(found.error);`);
  const files = readdirSync(dumps);
  expect(files).toHaveLength(2);
  for (const f of files) {
    const env = parseEnviron(readFileSync(path.join(dumps, f)));
    expectClean(env);
    expect(env.has("ALLOWED_EXTRA")).toBe(false);
  }
});
