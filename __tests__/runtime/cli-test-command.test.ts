// `bilevel test` through the package's bin entry (node runtime/cli.ts test) does what the launcher
// does, by running it: the arguments reach `./bilevel test` unchanged, its output and exit status
// come back. The real launcher would run the whole suite (this test included), so the CLI runs here
// from a copy of runtime/ next to a stand-in launcher.
import { spawnSync } from "node:child_process";
import { cpSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { cliArgvAt } from "../support/cli.ts";

const repo = path.resolve(import.meta.dirname, "../..");
let tmp: string;
let cli: string;

const FAKE_LAUNCHER = `#!/bin/sh
printf 'launcher:'
for a in "$@"; do printf ' [%s]' "$a"; done
printf '\\n'
echo "node: $(command -v node)" >&2
exit 7
`;

beforeAll(() => {
  tmp = mkdtempSync(path.join(tmpdir(), "bilevel-cli-test-"));
  cpSync(path.join(repo, "runtime"), path.join(tmp, "runtime"), { recursive: true });
  for (const entry of ["package.json", "node_modules", "sandbox", "trainer", "mechanism-api", "examples"]) {
    symlinkSync(path.join(repo, entry), path.join(tmp, entry));
  }
  cli = path.join(tmp, "runtime", "cli.ts");
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const run = (...args: string[]) =>
  spawnSync(process.execPath, cliArgvAt(cli, "test", ...args), { encoding: "utf8", cwd: tmp });

test("it runs `<repo>/bilevel test ARGS...`: arguments verbatim, output and exit status passed on", () => {
  writeFileSync(path.join(tmp, "bilevel"), FAKE_LAUNCHER, { mode: 0o755 });
  const r = run("__tests__/x.test.ts", "--ci", "-t", "a b", "--help", "--", "test");
  expect(r.stdout).toBe("launcher: [test] [__tests__/x.test.ts] [--ci] [-t] [a b] [--help] [--] [test]\n");
  // The Node that runs the CLI comes first on the launcher's PATH (so it needs no other Node).
  expect(r.stderr).toBe(`node: ${process.execPath}\n`);
  expect(r.status).toBe(7);
  expect(run().stdout).toBe("launcher: [test]\n");
});

test("without the launcher: a clear message and exit 2", () => {
  rmSync(path.join(tmp, "bilevel"), { force: true });
  const r = run();
  expect(r.status).toBe(2);
  expect(r.stderr).toMatch(/bilevel test runs the project's checks through the launcher, which is missing: /);
  expect(r.stderr).toContain(path.join(tmp, "bilevel"));
});
