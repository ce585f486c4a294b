// The run config `mechanism check` and `mechanism test` apply. Apart from runtime/commands/mechanism.ts
// so that `check` can start its sandbox child before the config code (and the trainer's search
// space) has loaded.
import { loadRunConfig, type ResolvedRunConfig, resolveRunConfig } from "../config.ts";
import { REPO_ROOT } from "../paths.ts";

export { sandboxPolicy } from "../config.ts";

/**
 * The config `mechanism check` and `mechanism test` apply: --config's, else a run's defaults, so a
 * mechanism that passes them meets the same sandbox limits in a run. The device is not asked
 * ("auto" counts as cpu): mechanisms see the search space, not the hardware.
 */
export function mechanismRunConfig(file?: string): ResolvedRunConfig {
  const options = { probeCuda: () => false };
  return file === undefined
    ? resolveRunConfig({}, { baseDir: REPO_ROOT, label: "defaults" }, options)
    : loadRunConfig(file, options);
}
