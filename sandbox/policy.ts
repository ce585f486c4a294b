// The run policy: limits for every mechanism. Every field has a safe default.
import { sandboxPolicySchema } from "./schemas.ts";
import type { SandboxPolicy } from "./types.ts";
import { validator } from "./validation.ts";

const isPolicy = validator<SandboxPolicy>(sandboxPolicySchema);

export const DEFAULT_POLICY: SandboxPolicy = Object.freeze({
  grantedCapabilities: Object.freeze(["tabu", "bandit", "space"] as const),
  hookTimeoutMs: 1000,
  isolateMemoryMb: 64,
  capabilityCallBudget: 1000,
  maxJsonBytes: 1024 * 1024,
  maxStateBytes: 64 * 1024,
  maxCapabilityStateBytes: 512 * 1024,
  maxLogLines: 50,
});

/** The default policy with `overrides` applied; throws a TypeError when the result is not a valid policy. */
export function defaultPolicy(overrides: Partial<SandboxPolicy> = {}): SandboxPolicy {
  const merged: Record<string, unknown> = { ...DEFAULT_POLICY };
  for (const [key, value] of Object.entries(overrides)) if (value !== undefined) merged[key] = value;
  if (!isPolicy(merged)) throw new TypeError(`invalid sandbox policy: ${isPolicy.explain()}`);
  return Object.freeze({ ...merged, grantedCapabilities: Object.freeze([...merged.grantedCapabilities]) });
}
