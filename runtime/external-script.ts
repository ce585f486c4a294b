// Resolving a run config whose trainer is the user's own train.py: the search space and the
// starting config come from the script's constants (trainer/script-space.ts), the time budget
// from its TIME_BUDGET when the config does not set one, git is on when the script is in a
// repository, and program.md next to the script is the research brief.
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import type { Config, ParamSpec, ParamValue } from "../mechanism-api/index.d.ts";
import { checkConstraints } from "../trainer/constraints.ts";
import {
  constantsConfig,
  discoverScript,
  type ParamDeclaration,
  type ScriptInfo,
  scriptSearchSpace,
  unknownConstant,
} from "../trainer/script-space.ts";
import { checkValue } from "../trainer/search-space.ts";

/** The run's research brief: the user's program.md, given to the LLM at Level 1 and Level 2. */
export interface ResearchBrief {
  readonly file: string;
  readonly text: string;
}

/** Largest program.md a run accepts (it is stored with the run and sent in prompts, shortened). */
export const MAX_BRIEF_BYTES = 256 * 1024;

export interface ExternalInput {
  readonly script: string;
  readonly params?: Readonly<Record<string, ParamDeclaration>>;
  readonly activeParams: readonly string[] | null;
  readonly startConfig: Readonly<Record<string, ParamValue>>;
  /** The config file's folder (a relative `program` resolves against it). */
  readonly baseDir: string;
  /** undefined: program.md next to the script if there is one; null: none. */
  readonly program?: string | null;
  /** undefined: on when the script is in a git repository. */
  readonly git?: boolean;
  /** Whether the config (or a flag) set budgetSeconds; if not, the script's TIME_BUDGET is the budget. */
  readonly budgetGiven: boolean;
  readonly python?: string;
}

export interface ExternalResolved {
  readonly searchSpace: ParamSpec[];
  readonly startConfig: Config;
  readonly activeParams: string[] | null;
  readonly budgetSeconds: number | null;
  readonly git: boolean;
  readonly program: ResearchBrief | null;
  readonly problems: string[];
}

/** Search space, starting config, budget, git and brief of an external trainer; problems name the field. */
export function resolveExternal(input: ExternalInput): ExternalResolved {
  const empty = { searchSpace: [], startConfig: {}, activeParams: null, budgetSeconds: null, git: false };
  const found = discoverScript(input.script, input.python);
  if (!found.ok) return { ...empty, program: null, problems: [`trainer.script: ${found.error}`] };
  const info = found.value;
  const problems: string[] = [];
  const declared = input.params ?? {};
  const legacy = Object.keys(declared).length === 0;
  // Without trainer.params, activeParams names the searched constants (ranges derived from their values).
  const declarations: Record<string, ParamDeclaration> = legacy
    ? Object.fromEntries((input.activeParams ?? []).map((n) => [n, {}]))
    : { ...declared };
  if (Object.keys(declarations).length === 0) {
    problems.push(
      `trainer.params: name the constants of ${path.basename(input.script)} to search, e.g. {"MATRIX_LR": {}} ` +
        `(${listNames(info)}; \`bilevel train --script ${input.script} --list\` shows the range each would get)`,
    );
  }
  const space = scriptSearchSpace(info, declarations, legacy ? "activeParams" : "trainer.params");
  problems.push(...space.problems);
  const searched = space.space.map((p) => p.name);
  if (!legacy) {
    for (const name of input.activeParams ?? []) {
      if (!(name in declarations))
        problems.push(`activeParams: ${name} is not searched (trainer.params names: ${searched.join(", ")})`);
    }
  }
  const startConfig = startFrom(info, space.space, input.startConfig, problems);
  if (problems.length === 0) {
    for (const broken of checkConstraints(space.space, startConfig))
      problems.push(`the starting config (the script as on disk) breaks a declared ${broken}`);
  }
  const program = readBrief(input, problems);
  const git = input.git ?? gitToplevel(path.dirname(input.script)) !== null;
  if (input.git === true && !gitAvailable())
    problems.push("trainer.git: git is not installed (or not on PATH)");
  return {
    searchSpace: space.space,
    startConfig,
    activeParams: legacy ? null : input.activeParams ? [...input.activeParams] : null,
    budgetSeconds: input.budgetGiven ? null : scriptBudget(info),
    git,
    program,
    problems,
  };
}

function listNames(info: ScriptInfo): string {
  const names = info.constants.map((c) => c.name);
  return names.length > 0 ? `it has ${names.slice(0, 40).join(", ")}` : "it has no top-level constants";
}

/** Every constant's value as the script has it, with the config's startConfig applied and checked. */
function startFrom(
  info: ScriptInfo,
  space: readonly ParamSpec[],
  overrides: Readonly<Record<string, ParamValue>>,
  problems: string[],
): Config {
  const start: Record<string, ParamValue> = { ...constantsConfig(info.constants) };
  for (const [name, value] of Object.entries(overrides)) {
    const why = unknownConstant(info, name);
    if (why !== null) {
      problems.push(`startConfig.${name}: ${why}`);
      continue;
    }
    if (typeof value !== typeof start[name]) {
      problems.push(
        `startConfig.${name}: the script's value is a ${typeof start[name]}, got ${JSON.stringify(value)}`,
      );
      continue;
    }
    const spec = space.find((p) => p.name === name);
    for (const e of spec ? checkValue(spec, value) : []) problems.push(`startConfig.${name}: ${e}`);
    start[name] = value;
  }
  return start;
}

/** The script's TIME_BUDGET (its own constant, or imported from e.g. prepare.py), if it is a positive number. */
function scriptBudget(info: ScriptInfo): number | null {
  const own = info.constants.find((c) => c.name === "TIME_BUDGET")?.value;
  const imported = info.imported.find((c) => c.name === "TIME_BUDGET")?.value;
  const v = own ?? imported;
  return typeof v === "number" && v > 0 && v <= 86400 ? v : null;
}

function readBrief(input: ExternalInput, problems: string[]): ResearchBrief | null {
  if (input.program === null) return null;
  const file =
    input.program === undefined
      ? path.join(path.dirname(input.script), "program.md")
      : path.resolve(input.baseDir, input.program);
  if (input.program === undefined && !existsSync(file)) return null;
  try {
    const size = statSync(file).size;
    if (size > MAX_BRIEF_BYTES) {
      problems.push(`trainer.program: ${file} is ${size} bytes (at most ${MAX_BRIEF_BYTES})`);
      return null;
    }
    return { file, text: readFileSync(file, "utf8").replace(/^\uFEFF/, "") };
  } catch (error) {
    problems.push(`trainer.program: cannot read ${file} (${(error as NodeJS.ErrnoException).code ?? error})`);
    return null;
  }
}

/** The top folder of the git repository holding `dir`, or null (no repository, or no git). */
export function gitToplevel(dir: string): string | null {
  const r = spawnSync("git", ["-C", dir, "rev-parse", "--show-toplevel"], { encoding: "utf8" });
  return r.status === 0 ? r.stdout.trim() : null;
}

function gitAvailable(): boolean {
  return spawnSync("git", ["--version"], { encoding: "utf8" }).status === 0;
}
