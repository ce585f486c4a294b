// Shared fixtures for the sandbox tests.
import { readFileSync } from "node:fs";
import path from "node:path";
import type { HookName, Manifest } from "../../mechanism-api/index.d.ts";
import { sha256 } from "../../sandbox/hash.ts";
import { loadDefaultParams, syntheticTrace } from "../../sandbox/index.ts";
import type { CompiledMechanism, HookCall } from "../../sandbox/types.ts";

export const HOSTILE = path.resolve(import.meta.dirname, "../fixtures/hostile");
export const trace = syntheticTrace(loadDefaultParams(), 7);
export const EMPTY = { tabu: {}, bandit: {} } as const;

export function fixture(name: string): string {
  return readFileSync(path.join(HOSTILE, name), "utf8");
}

/**
 * A CompiledMechanism built straight from JavaScript (a CommonJS module body), skipping the
 * compiler and the lint: the runtime containment must hold without them.
 */
export function rawMechanism(
  js: string,
  manifest: Partial<Manifest> & { hooks: readonly HookName[] },
): CompiledMechanism {
  return {
    manifest: { name: "raw", version: 1, capabilities: [], ...manifest },
    source: `// hand-written JavaScript\n${js}`,
    js,
    sourceHash: sha256(js),
    jsHash: sha256(js),
  };
}

/** A raw fixture: `// manifest: {...}` on the first line, then the module body. */
export function rawFixture(name: string): CompiledMechanism {
  const js = fixture(name);
  const first = js.split("\n", 1)[0] ?? "";
  const manifest = JSON.parse(first.replace(/^\/\/\s*manifest:\s*/, "")) as Manifest;
  return rawMechanism(js, manifest);
}

export function hookCall(mechanismId: string, hook: HookName, overrides: Partial<HookCall> = {}): HookCall {
  const argument = hook === "filter" ? trace.proposal : hook === "observe" ? trace.trial : undefined;
  return {
    mechanismId,
    hook,
    context: trace.context,
    state: {},
    capabilities: EMPTY,
    ...(argument === undefined ? {} : { argument }),
    ...overrides,
  };
}

/** A well-behaved mechanism that uses every capability; the hostile tests check it keeps working. */
export const HEALTHY = `import type { Mechanism } from "bilevel/mechanism-api";
export default {
  manifest: { name: "healthy", version: 1, hooks: ["init", "guide", "filter", "observe"], capabilities: ["tabu", "bandit", "space"] },
  init() { return { seen: 0 }; },
  guide(ctx) { return "seen " + ctx.state.seen; },
  filter(proposal, ctx) {
    ctx.bandit.arms("b", ["x", "y"]);
    const arm = ctx.bandit.select("b", "ucb1");
    const d = ctx.space.distance(proposal.config, ctx.incumbent.config);
    return ctx.tabu.contains("t", proposal.config) ? { verdict: "reject", reason: "tabu " + arm + " " + d.toFixed(3) } : { verdict: "accept" };
  },
  observe(trial, ctx) { ctx.tabu.add("t", trial.config, 3); ctx.state.seen += 1; },
} satisfies Mechanism<{ seen: number }>;
`;
