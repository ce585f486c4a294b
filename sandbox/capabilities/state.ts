import type { CapabilityState } from "../types.ts";

/** The host-kept capability data of a mechanism that has not used any capability yet. */
export const EMPTY_CAPABILITIES: CapabilityState = { tabu: {}, bandit: {} };
