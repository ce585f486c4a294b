// The sandbox's public surface. Guest code runs in one supervised child process; the TypeScript
// compiler on mechanism source in another (compiler-process.ts).
export { EMPTY_CAPABILITIES } from "./capabilities/state.ts";
export { FIXED_NOW } from "./guest.ts";
export { DEFAULT_MAX_SOURCE_BYTES, Sandbox, type SandboxOptions } from "./host.ts";
export { DEFAULT_POLICY, defaultPolicy } from "./policy.ts";
export { loadDefaultParams, syntheticTrace } from "./trace.ts";
export type * from "./types.ts";
