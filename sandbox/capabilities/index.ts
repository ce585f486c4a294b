// The capability dispatcher that the guest reaches through one ivm.Callback: it takes an
// operation name and a JSON array of arguments and returns a JSON string. Pure over the session's
// CapabilityState + search space; it never throws (faults come back as { code, message }).
import type { CapabilityName, ParamSpec } from "../../mechanism-api/index.d.ts";
import type { CapabilityState, SandboxErrorCode } from "../types.ts";
import { type Validator, validator } from "../validation.ts";
import { banditArms, banditReward, banditSelect, banditStats } from "./bandit.ts";
import { own, withEntry } from "./dict.ts";
import { CapabilityFault } from "./fault.ts";
import { type CapabilityOperation, capabilityArgumentSchemas } from "./schemas.ts";
import {
  clamp,
  distance,
  latinHypercube,
  neighbour,
  neighbours,
  orthogonalArray,
  sample,
  unitOf,
  valueAt,
} from "./space.ts";
import { tabuAdd, tabuClear, tabuContains, tabuMatch, tabuSize } from "./tabu.ts";

export { CapabilityFault } from "./fault.ts";

/** Max characters of one capability call's argument JSON. */
export const MAX_CAPABILITY_ARGS_CHARS = 256 * 1024;

export interface CapabilitySession {
  readonly params: readonly ParamSpec[];
  readonly iteration: number;
  /** Declared by the manifest AND granted by the policy. */
  readonly allowed: ReadonlySet<CapabilityName>;
  readonly declared: ReadonlySet<CapabilityName>;
  readonly budget: number;
  readonly random: () => number;
  calls: number;
  state: { -readonly [K in keyof CapabilityState]: CapabilityState[K] };
}

export type CapabilityResult =
  | { readonly ok: true; readonly value: unknown }
  | { readonly ok: false; readonly code: SandboxErrorCode; readonly message: string };

const validators = new Map<string, Validator<unknown[]>>(
  Object.entries(capabilityArgumentSchemas).map(([op, schema]) => [op, validator<unknown[]>(schema)]),
);

/** Compile every capability's argument validator (before guest code runs: see Validator.warm). */
export function warmCapabilityValidators(): void {
  for (const v of validators.values()) v.warm();
}

function isOperation(op: string): op is CapabilityOperation {
  return validators.has(op);
}

export function invokeCapability(
  session: CapabilitySession,
  op: unknown,
  argsJson: unknown,
): CapabilityResult {
  if (typeof op !== "string" || !isOperation(op)) {
    return {
      ok: false,
      code: "capability-error",
      message: `unknown capability operation ${String(op).slice(0, 60)}`,
    };
  }
  const capability = op.slice(0, op.indexOf(".")) as CapabilityName;
  if (!session.allowed.has(capability)) {
    const why = session.declared.has(capability)
      ? "the run's policy does not grant it"
      : "the manifest does not declare it";
    return {
      ok: false,
      code: "capability-denied",
      message: `${op}: capability "${capability}" denied (${why})`,
    };
  }
  session.calls++;
  if (session.calls > session.budget) {
    return {
      ok: false,
      code: "capability-budget",
      message: `more than ${session.budget} capability calls in one hook call`,
    };
  }
  if (typeof argsJson !== "string" || argsJson.length > MAX_CAPABILITY_ARGS_CHARS) {
    return { ok: false, code: "capability-error", message: `${op}: arguments missing or too large` };
  }
  let args: unknown;
  try {
    args = JSON.parse(argsJson);
  } catch {
    return { ok: false, code: "capability-error", message: `${op}: arguments are not JSON` };
  }
  const check = validators.get(op)!;
  if (!check(args)) return { ok: false, code: "capability-error", message: `${op}: ${check.explain()}` };
  try {
    return { ok: true, value: apply(session, op, args) };
  } catch (error) {
    if (error instanceof CapabilityFault)
      return { ok: false, code: "capability-error", message: `${op}: ${error.message}` };
    return { ok: false, code: "capability-error", message: `${op}: internal error` };
  }
}

function apply(session: CapabilitySession, op: CapabilityOperation, args: unknown[]): unknown {
  if (op.startsWith("tabu.")) return applyTabu(session, op, args);
  if (op.startsWith("bandit.")) return applyBandit(session, op, args);
  return applySpace(session, op, args);
}

// Shapes were checked by the ajv schema of `op`; `never` lets each argument reach its parameter.
type Args = [never, never, never, never];

function applyTabu(session: CapabilitySession, op: CapabilityOperation, args: unknown[]): unknown {
  const { params, iteration, state } = session;
  const a = args as unknown as Args;
  switch (op) {
    case "tabu.add":
      state.tabu = tabuAdd(
        state.tabu,
        iteration,
        a[0],
        a[1],
        a[2],
        (a[3] as { capacity?: number })?.capacity,
      );
      return null;
    case "tabu.contains":
      return tabuContains(state.tabu, params, iteration, a[0], a[1], a[2]);
    case "tabu.match":
      return tabuMatch(state.tabu, params, iteration, a[0], a[1], a[2]);
    case "tabu.size":
      return tabuSize(state.tabu, iteration, a[0]);
    case "tabu.clear":
      state.tabu = tabuClear(state.tabu, a[0]);
      return null;
  }
  throw new CapabilityFault(`unknown operation ${op}`);
}

function applyBandit(session: CapabilitySession, op: CapabilityOperation, args: unknown[]): unknown {
  const { state } = session;
  const a = args as unknown as Args;
  const settings = own(state.banditSettings ?? {}, a[0]);
  switch (op) {
    case "bandit.arms":
      state.bandit = banditArms(state.bandit, a[0], a[1]);
      if (a[2] !== undefined) state.banditSettings = withEntry(state.banditSettings ?? {}, a[0], a[2]);
      return null;
    case "bandit.select":
      return banditSelect(state.bandit, a[0], a[1], a[2] ?? {}, session.random, settings);
    case "bandit.reward":
      state.bandit = banditReward(state.bandit, a[0], a[1], a[2], settings);
      return null;
    case "bandit.stats":
      return banditStats(state.bandit, a[0], settings);
  }
  throw new CapabilityFault(`unknown operation ${op}`);
}

function applySpace(session: CapabilitySession, op: CapabilityOperation, args: unknown[]): unknown {
  const { params } = session;
  const a = args as unknown as Args;
  switch (op) {
    case "space.clamp":
      return clamp(params, a[0], a[1]);
    case "space.toUnit":
      return unitOf(params, a[0], a[1]);
    case "space.fromUnit":
      return valueAt(params, a[0], a[1]);
    case "space.neighbour":
      return neighbour(params, a[0], a[1], a[2], a[3]);
    case "space.neighbours":
      return neighbours(params, a[0], a[1], a[2]);
    case "space.distance":
      return distance(params, a[0], a[1], a[2]);
    case "space.sample":
      return sample(params, a[0], a[1] ?? {}, session.random);
    case "space.latinHypercube":
      return latinHypercube(params, a[0], a[1], session.random);
    case "space.orthogonalArray":
      return orthogonalArray(params, a[0], a[1]);
  }
  throw new CapabilityFault(`unknown operation ${op}`);
}
