// `bilevel mechanism new NAME [--hooks LIST] [--capabilities LIST] [--out FILE] [--force]`: write a
// documented skeleton mechanism that passes `mechanism check` as written (a test checks every hook
// and capability). Exit 0: written (its path on stdout); 2: a usage error (bad name, unknown hook or
// capability, the file exists), before anything is written.
import { existsSync, writeFileSync } from "node:fs";
import path from "node:path";
import { type Command, CommanderError } from "commander";
import type { CapabilityName, HookName } from "../../mechanism-api/index.d.ts";
import { launcherCommand } from "../paths.ts";
import { safeText } from "../terminal-text.ts";

export const ALL_HOOKS: readonly HookName[] = ["init", "guide", "suggest", "filter", "observe"];
export const ALL_CAPABILITIES: readonly CapabilityName[] = ["tabu", "bandit", "space"];
const NAME = /^[a-z0-9]+(-[a-z0-9]+)*$/;

export interface SkeletonSpec {
  readonly name: string;
  /** `init` is always included: it creates the state the other hooks use. */
  readonly hooks: readonly HookName[];
  readonly capabilities: readonly CapabilityName[];
}

/** What each hook is for, as the skeleton's comment above it. */
const HOOK_DOCS: Readonly<Record<HookName, string>> = {
  init: "Once, when the mechanism is activated: return the initial state.",
  guide:
    "Before the proposer is asked: text added to the LLM proposer's prompt, or nothing. Only an LLM\n  // proposer reads it (offline and in `mechanism test` it has no effect).",
  suggest:
    "Before the proposer is asked: a proposal that replaces the proposer's this iteration, or nothing.\n  // Values outside a parameter's range, or changes to a frozen parameter, are refused.",
  filter:
    "After a proposal, before training: accept it, reject it with a reason (the proposer is asked\n  // again, a bounded number of times) or modify its changes.",
  observe: "After a trial is scored (or failed): learn from it. Writes to ctx.state are kept.",
};

type Caps = ReadonlySet<CapabilityName>;
const when = (on: boolean, lines: readonly string[]): readonly string[] => (on ? lines : []);

/** The code of each hook (after its first line): example uses of the capabilities that fit it, then its result. */
const HOOK_BODIES: Readonly<Record<HookName, (caps: Caps) => readonly string[]>> = {
  init: (caps) => [`    return { calls: 0${caps.has("bandit") ? ", lastArm: null" : ""} };`],
  guide: (caps) => [
    "    ctx.state.calls += 1;",
    ...(caps.has("bandit")
      ? [
          "    // Example: a bandit picks a direction; observe rewards it.",
          '    ctx.bandit.arms("direction", ["up", "down"]);',
          '    const arm = ctx.bandit.select("direction", "ucb1");',
          "    ctx.state.lastArm = arm;",
          // biome-ignore lint/suspicious/noTemplateCurlyInString: the skeleton's own template literal
          "    return `try moving one parameter ${arm}`;",
        ]
      : [
          "    // Example: remind the proposer of the best score so far.",
          // biome-ignore lint/suspicious/noTemplateCurlyInString: the skeleton's own template literal
          "    return ctx.best === null ? undefined : `the best val_bpb so far is ${ctx.best.valBpb.toFixed(4)}`;",
        ]),
  ],
  suggest: (caps) => [
    "    ctx.state.calls += 1;",
    "    // Example: every fifth iteration, nudge the first unfrozen numeric parameter.",
    '    const param = ctx.params.find((p) => !p.frozen && p.kind !== "choice");',
    "    if (param === undefined || ctx.iteration % 5 !== 0) return undefined;",
    ...(caps.has("space")
      ? [
          "    const next = ctx.space.neighbour(ctx.incumbent.config, param.name, 1);",
          "    const value = next[param.name];",
          "    if (value === undefined) return undefined;",
          '    return { changes: [{ param: param.name, value }], rationale: "one step up" };',
        ]
      : ["    return undefined;"]),
  ],
  filter: (caps) => [
    "    ctx.state.calls += 1;",
    ...when(caps.has("tabu"), [
      '    if (ctx.tabu.contains("recent", proposal.config)) {',
      '      return { verdict: "reject", reason: "too close to a config tried recently" };',
      "    }",
    ]),
    ...when(caps.has("space"), [
      "    const last = ctx.history.at(-1);",
      "    if (last !== undefined && ctx.space.distance(last.config, proposal.config) === 0) {",
      '      return { verdict: "reject", reason: "the same config as the last trial" };',
      "    }",
    ]),
    '    return { verdict: "accept" };',
  ],
  observe: (caps) => [
    "    ctx.state.calls += 1;",
    ...when(caps.has("tabu"), ['    ctx.tabu.add("recent", trial.config, 10);']),
    ...when(caps.has("bandit"), [
      "    const arm = ctx.state.lastArm;",
      '    if (arm !== null) ctx.bandit.reward("direction", arm, trial.kept ? 1 : 0);',
    ]),
  ],
};

const HOOK_HEADS: Readonly<Record<HookName, string>> = {
  init: "init() {",
  guide: "guide(ctx) {",
  suggest: "suggest(ctx) {",
  filter: "filter(proposal, ctx) {",
  observe: "observe(trial, ctx) {",
};

/** Where each capability is used, given the hooks; a capability no chosen hook uses goes in the first hook that can. */
function usedCapabilities(spec: SkeletonSpec): Map<HookName, Set<CapabilityName>> {
  const homes: Readonly<Record<CapabilityName, readonly HookName[]>> = {
    tabu: ["filter", "observe"],
    bandit: ["guide", "observe"],
    space: ["suggest", "filter"],
  };
  const out = new Map<HookName, Set<CapabilityName>>(spec.hooks.map((h) => [h, new Set()]));
  for (const cap of spec.capabilities) {
    const home = homes[cap].filter((h) => spec.hooks.includes(h));
    for (const h of home) out.get(h)?.add(cap);
  }
  return out;
}

/** The hooks the capabilities' examples need, added to the chosen ones (and init, always), in the loop's order. */
export function completeSpec(spec: SkeletonSpec): SkeletonSpec {
  const extra: HookName[] = [];
  // The tabu example adds to a list in observe and asks it in filter: both, or the list stays empty.
  if (spec.capabilities.includes("tabu")) extra.push("filter", "observe");
  // The bandit example selects in guide and rewards in observe: both, or the arm is never rewarded.
  if (spec.capabilities.includes("bandit")) extra.push("guide", "observe");
  if (spec.capabilities.includes("space") && !spec.hooks.some((h) => h === "suggest" || h === "filter"))
    extra.push("filter");
  const hooks = ALL_HOOKS.filter((h) => h === "init" || spec.hooks.includes(h) || extra.includes(h));
  return { ...spec, hooks };
}

/** The skeleton's TypeScript source. */
export function skeleton(given: SkeletonSpec): string {
  const spec = completeSpec(given);
  const uses = usedCapabilities(spec);
  const list = (xs: readonly string[]) => xs.map((x) => JSON.stringify(x)).join(", ");
  const hooks = spec.hooks.flatMap((h) => [
    "",
    `  // ${HOOK_DOCS[h]}`,
    `  ${HOOK_HEADS[h]}`,
    // init creates the state every declared capability's example keeps.
    ...HOOK_BODIES[h](h === "init" ? new Set(spec.capabilities) : (uses.get(h) ?? new Set())),
    "  },",
  ]);
  return [
    `// ${spec.name}: TODO say in a line or two what this mechanism does and why it should help.`,
    `// Written by \`bilevel mechanism new\`. Check it with \`bilevel mechanism check ${spec.name}.ts\`,`,
    `// watch it work with \`bilevel mechanism test ${spec.name}.ts --verbose\`; the API is`,
    "// mechanism-api/README.md, and examples/mechanisms/ has worked examples.",
    'import type { Mechanism } from "bilevel/mechanism-api";',
    "",
    "/** What the mechanism keeps between hook calls: JSON only (no Set, Map, Date or class instance). */",
    "interface State {",
    "  /** Hook calls so far: an example field, replace it with your own. */",
    "  calls: number;",
    ...when(spec.capabilities.includes("bandit"), [
      "  /** The arm guide selected, for observe to reward. */",
      "  lastArm: string | null;",
    ]),
    "}",
    "",
    "export default {",
    "  manifest: {",
    `    name: ${JSON.stringify(spec.name)},`,
    "    version: 1,",
    '    description: "TODO: one sentence on what it does.",',
    `    hooks: [${list(spec.hooks)}],`,
    `    capabilities: [${list(spec.capabilities)}],`,
    "  },",
    ...hooks,
    "} satisfies Mechanism<State>;",
    "",
  ].join("\n");
}

class UsageError extends Error {}

/** `--hooks a,b` / `--capabilities a,b`: each known, no duplicates. */
function parseList<T extends string>(flag: string, text: string | undefined, known: readonly T[]): T[] {
  if (text === undefined) return [];
  const items = text
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
  for (const item of items) {
    if (!(known as readonly string[]).includes(item))
      throw new UsageError(`${flag}: unknown ${JSON.stringify(item)} (one of ${known.join(", ")})`);
  }
  return [...new Set(items)] as T[];
}

interface NewOptions {
  readonly hooks?: string;
  readonly capabilities?: string;
  readonly out?: string;
  readonly force?: boolean;
}

interface NewIo {
  stdout(text: string): void;
  stderr(text: string): void;
}

/** The path relative to the current folder when it is inside it, else absolute. */
function shown(relative: string, absolute: string): string {
  return relative.startsWith("..") ? absolute : relative;
}

/** Write the skeleton; returns the exit code (0 written, 2 usage error). */
export function mechanismNew(name: string, options: NewOptions, io: NewIo, cwd = process.cwd()): number {
  try {
    if (!NAME.test(name) || name.length > 64)
      throw new UsageError(
        `the name must be kebab-case, 1-64 characters (e.g. my-tabu), got ${JSON.stringify(name)}`,
      );
    const hooks = options.hooks === undefined ? ALL_HOOKS : parseList("--hooks", options.hooks, ALL_HOOKS);
    const capabilities = parseList("--capabilities", options.capabilities, ALL_CAPABILITIES);
    const file = path.resolve(cwd, options.out ?? `${name}.ts`);
    if (existsSync(file) && !options.force)
      throw new UsageError(`${file} exists (use --force to replace it)`);
    const spec = completeSpec({ name, hooks, capabilities });
    writeFileSync(file, skeleton(spec));
    io.stdout(`${file}\n`);
    io.stderr(
      `wrote ${spec.name} (hooks ${spec.hooks.join(", ")}; capabilities ${capabilities.join(", ") || "none"}); ` +
        `next: ${launcherCommand()} mechanism check ${shown(path.relative(cwd, file), file)}\n`,
    );
    return 0;
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    io.stderr(`bilevel mechanism new: ${safeText(error.message)}\n`);
    return 2;
  }
}

/** Add `new` to the `mechanism` command group. */
export function registerMechanismNewCommand(group: Command): void {
  group
    .command("new")
    .description(
      "write a documented skeleton mechanism NAME.ts that passes `mechanism check` (exit 0 written, 2 usage error)",
    )
    .argument("<name>", "the mechanism's name, kebab-case (also the file name unless --out)")
    .option(
      "--hooks <list>",
      `comma-separated, from ${ALL_HOOKS.join(",")} (default: all; init is always included)`,
    )
    .option("--capabilities <list>", `comma-separated, from ${ALL_CAPABILITIES.join(",")} (default: none)`)
    .option("--out <file>", "where to write it (default: NAME.ts in the current folder)")
    .option("--force", "replace the file if it exists")
    .exitOverride((error) => {
      if (error.exitCode !== 0) throw new CommanderError(2, error.code, error.message);
      throw error;
    })
    .action((name: string, options: NewOptions) => {
      process.exitCode = mechanismNew(name, options, {
        stdout: (t) => process.stdout.write(t),
        stderr: (t) => process.stderr.write(t),
      });
    });
}
