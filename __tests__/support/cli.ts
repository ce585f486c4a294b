// How tests start the CLI as a user would: Node with the launcher's flags on runtime/cli.ts.
import { spawn } from "node:child_process";
import path from "node:path";

export const CLI_PATH = path.resolve(import.meta.dirname, "../../runtime/cli.ts");

/** Arguments for `process.execPath` that run `bilevel ARGS...`. */
export function cliArgv(...args: readonly string[]): string[] {
  return cliArgvAt(CLI_PATH, ...args);
}

/** The same for another copy of the CLI (a tree set up by a test). */
export function cliArgvAt(cliPath: string, ...args: readonly string[]): string[] {
  return ["--no-node-snapshot", "--disable-warning=ExperimentalWarning", cliPath, ...args];
}

export interface CliResult {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * `bilevel ARGS...` as a subprocess, asynchronously: a mock LLM server in the test's own process
 * can answer it (spawnSync would block that server's event loop).
 */
export function cliAsync(
  args: readonly string[],
  options: { readonly cwd?: string; readonly env?: NodeJS.ProcessEnv } = {},
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, cliArgv(...args), {
      cwd: options.cwd ?? process.cwd(),
      env: options.env ?? process.env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout?.on("data", (b: Buffer) => out.push(b));
    child.stderr?.on("data", (b: Buffer) => err.push(b));
    child.on("error", reject);
    child.on("close", (status) =>
      resolve({
        status,
        stdout: Buffer.concat(out).toString("utf8"),
        stderr: Buffer.concat(err).toString("utf8"),
      }),
    );
  });
}
