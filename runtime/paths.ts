// Where things are: the repository (built-in examples, the demo's mechanism) and where outputs go.
// Outputs of `run`, `demo` and `train` go under ./runs/ of the working directory unless --out says otherwise.
import path from "node:path";

export const REPO_ROOT = path.resolve(import.meta.dirname, "..");

/** How the user started bilevel, for "run this next" hints: the launcher's path when it set BILEVEL_LAUNCHER, else "bilevel". */
export function launcherCommand(): string {
  const launcher = process.env.BILEVEL_LAUNCHER;
  return launcher && launcher !== "" ? launcher : "bilevel";
}

function stamp(): string {
  return new Date().toISOString().replace(/[-:]/g, "").replace(/\..*/, "").replace("T", "-");
}

/** The default folder of a run: runs/NAME-YYYYMMDD-HHMMSS under the working directory. */
export function defaultRunDir(name: string): string {
  return path.resolve("runs", `${name}-${stamp()}`);
}

/** The default folder of one `bilevel train` trial: runs/train/YYYYMMDD-HHMMSS under the working directory. */
export function defaultTrainDir(): string {
  return path.resolve("runs", "train", stamp());
}
