// The sandbox child sees none of the host's environment: only its policy, TZ=UTC and, when the host
// uses Node's compile cache, a cache folder of the child's own.
// Jest gives each test file a copy of process.env, so the child is started from a Node
// process whose real environment holds the secrets; it reads /proc/<childpid>/environ.
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";

const SECRETS = { OPENAI_API_KEY: "sk-parent-secret", MY_SECRET_TOKEN: "tok-parent-secret" };

/** The names and entries of the environment of a sandbox child started by a host with `env`. */
function childEnvironment(env: NodeJS.ProcessEnv): string[] {
  const url = pathToFileURL(path.resolve(import.meta.dirname, "../../sandbox/child-process.ts")).href;
  const policyUrl = pathToFileURL(path.resolve(import.meta.dirname, "../../sandbox/policy.ts")).href;
  const driver = `
    import { readFileSync } from "node:fs";
    import { SandboxChild } from ${JSON.stringify(url)};
    import { DEFAULT_POLICY } from ${JSON.stringify(policyUrl)};
    const child = await SandboxChild.start({
      policy: DEFAULT_POLICY, memoryMb: 1024, heapMb: 256, startTimeoutMs: 60000, watchdogIntervalMs: 1000,
    });
    const environ = readFileSync("/proc/" + child.pid + "/environ", "latin1");
    await child.close();
    process.stdout.write(JSON.stringify(environ.split("\\0").filter(Boolean)));`;
  const r = spawnSync(
    process.execPath,
    ["--no-node-snapshot", "--disable-warning=ExperimentalWarning", "--input-type=module", "-e", driver],
    { env, encoding: "utf8", timeout: 120_000 },
  );
  if (r.status !== 0) throw new Error(`driver failed (${r.status ?? r.signal}): ${r.stderr}`);
  return JSON.parse(r.stdout) as string[];
}

const names = (entries: readonly string[]) => entries.map((e) => e.slice(0, e.indexOf("="))).sort();

test("the sandbox child's environment holds no host variable", () => {
  const { NODE_COMPILE_CACHE: _cache, ...env } = process.env;
  const entries = childEnvironment({ ...env, ...SECRETS });
  expect(names(entries)).toEqual(["BILEVEL_SANDBOX_POLICY", "TZ"]);
  expect(entries).toContain("TZ=UTC");
  expect(entries.join("\n")).not.toContain("parent-secret");
});

test("a host with a compile cache gives the child a cache folder of its own, never the host's", () => {
  const cache = mkdtempSync(path.join(tmpdir(), "bilevel-compile-cache-"));
  try {
    const entries = childEnvironment({ ...process.env, ...SECRETS, NODE_COMPILE_CACHE: cache });
    expect(names(entries)).toEqual(["BILEVEL_SANDBOX_POLICY", "NODE_COMPILE_CACHE", "TZ"]);
    expect(entries).toContain(`NODE_COMPILE_CACHE=${path.join(cache, "bilevel-sandbox-child")}`);
    expect(entries.join("\n")).not.toContain("parent-secret");
  } finally {
    rmSync(cache, { recursive: true, force: true });
  }
});
