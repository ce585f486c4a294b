// How tests start the CLI as a user would: Node with the launcher's flags on runtime/cli.ts.
import path from "node:path";

export const CLI_PATH = path.resolve(import.meta.dirname, "../../runtime/cli.ts");

/** Arguments for `process.execPath` that run `bilevel ARGS...`. */
export function cliArgv(...args: readonly string[]): string[] {
  return ["--no-node-snapshot", "--disable-warning=ExperimentalWarning", CLI_PATH, ...args];
}
