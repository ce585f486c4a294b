// Fault messages that name the limit that was hit, shared by the child (the isolate's timeout) and
// the host (its deadline on the child's answer).
import type { SandboxStage } from "./types.ts";

/** "filter did not finish within 1000 ms (policy.hookTimeoutMs)"; load runs the file's top-level code. */
export function timeoutMessage(stage: SandboxStage, timeoutMs: number): string {
  const what = stage === "load" ? "the mechanism's top-level code" : stage;
  return `${what} did not finish within ${timeoutMs} ms (policy.hookTimeoutMs)`;
}
