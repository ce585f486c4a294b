// One temporary folder per test run: every test (and every process it starts) makes its temporary
// files under it, through TMPDIR, and the run removes it at the end, so a run leaves nothing in /tmp
// whatever the tests themselves clean up. Set before the workers start, so they inherit it.
import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";

export async function setup() {
  const root = mkdtempSync(path.join(os.tmpdir(), "bilevel-tests-"));
  // As /tmp itself: tests that run a command as an unprivileged user must reach their folders.
  chmodSync(root, 0o1777);
  process.env.BILEVEL_TEST_TEMP_ROOT = root;
  process.env.TMPDIR = root;
}

export async function teardown() {
  const root = process.env.BILEVEL_TEST_TEMP_ROOT;
  if (root) rmSync(root, { recursive: true, force: true, maxRetries: 3 });
}
