// What crosses back to the host loses host paths and keeps JSON pointers into the mechanism's data.
import os from "node:os";
import path from "node:path";
import { sanitize } from "../../sandbox/sanitize.ts";

const repo = path.resolve(import.meta.dirname, "../..");

test.each([
  "/value/reason must be string",
  "the state is not JSON: /seen is a Set",
  "the state is not JSON: /a~1b/0/c is NaN",
  "/0/config/LR must be number",
  'bandit "toString" has no arm "/x/y"',
  "the state nests deeper than 64 levels (at /v/0/0/0)",
])("a JSON pointer stays: %s", (message) => {
  expect(sanitize(message)).toBe(message);
});

test.each([
  [`at run (${repo}/sandbox/runner.ts:12:5)`, "at run (<path>)"],
  [`Cannot find module '${repo}/node_modules/x/index.js'`, "Cannot find module '<path>'"],
  [`open '${path.join(os.homedir(), "secret")}' failed`, "open '<path>' failed"],
  [`cwd ${process.cwd()}/runs/7 is busy`, "cwd <path> is busy"],
  [`temp ${path.join(os.tmpdir(), "bilevel-1", "x")}`, "temp <path>"],
  ["file:///srv/app/sandbox/child.ts:3:1 failed", "<path> failed"],
  ["at node:internal/modules/esm/loader:123:7", "at <path>"],
  ["at Object.<anonymous> (/opt/app/dist/main.js:1:2)", "at Object.<anonymous> (<path>)"],
  ["dlopen /usr/lib/x86_64-linux-gnu/libc.so.6", "dlopen <path>"],
  [
    "ENOENT: no such file or directory, open '/home/alice/data'",
    "ENOENT: no such file or directory, open '<path>'",
  ],
])("a host path goes: %s", (message, expected) => {
  expect(sanitize(message)).toBe(expected);
});

test("messages are capped", () => {
  expect(sanitize("x".repeat(5000))).toHaveLength(2000);
});
