import { spawnSync } from "node:child_process";
import { cliArgv } from "../support/cli.ts";

function cli(...args: string[]) {
  return spawnSync(process.execPath, cliArgv(...args), {
    encoding: "utf8",
  });
}

test("--help lists the command groups", () => {
  const r = cli("--help");
  expect(r.status).toBe(0);
  expect(r.stdout).toMatch(/mechanism/);
  expect(r.stdout).toMatch(/train/);
});

test("an unknown command is a clear usage error with exit 2", () => {
  const r = cli("frobnicate");
  expect(r.status).toBe(2);
  expect(r.stderr).toMatch(/unknown command 'frobnicate'/);
});
