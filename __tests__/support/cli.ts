// How tests start the CLI as a user would: Node with the launcher's flags on runtime/cli.ts.
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
