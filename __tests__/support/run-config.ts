// A resolved run config for tests: paths relative to the working directory, and "auto" resolved
// to cpu without asking Python (tests that need the probe pass their own).
import { type ResolvedRunConfig, resolveRunConfig } from "../../runtime/config.ts";

export function testConfig(partial: unknown, baseDir = process.cwd()): ResolvedRunConfig {
  return resolveRunConfig(partial, { baseDir, label: "test config" }, { probeCuda: () => false });
}
