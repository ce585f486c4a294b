import { spawnSync } from "node:child_process";
import path from "node:path";
import { setup as tempSetup } from "./temp-root.js";

export default async function setup() {
  await tempSetup();
  // The mechanism compiler's startup snapshot, built before any test (when the sources changed), so
  // that no command a test runs builds it midway and says so on its stderr.
  const root = path.resolve(import.meta.dirname, "../..");
  spawnSync(
    process.execPath,
    ["--disable-warning=ExperimentalWarning", "sandbox/compiler-blob.ts", "--prebuild"],
    {
      cwd: root,
      stdio: "inherit",
    },
  );
}
