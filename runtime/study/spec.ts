// What a study is: groups × repeats of ordinary runs. The built-in groups, the study config file
// (JSON, validated), the CLI flags over it, and the resolved spec stored as study.json.
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import path from "node:path";
import { Ajv } from "ajv";
import {
  ConfigError,
  describeSchemaErrors,
  mergeRunConfig,
  type ResolvedRunConfig,
  readConfigFile,
  resolveRunConfig,
} from "../config.ts";
import { UserError } from "../errors.ts";
import { jsonInputProblem } from "../json-input.ts";
import { REPO_ROOT } from "../paths.ts";
import { DEFAULT_SURROGATE_FILE } from "../surrogate/data.ts";

export const STUDY_FORMAT = "bilevel-study/1";
/** Repeat r runs with seed `seed + SEED_STRIDE × r`: the baselines' seeds (seed … seed + baselineRepeats − 1) never overlap. */
export const SEED_STRIDE = 1000;
export const DEFAULT_GROUPS = ["A", "B", "C", "D", "R"] as const;
/** The name of a study whose spec names none. */
export const DEFAULT_STUDY_NAME = "study";

/** How a study is named in its output: "study" for an unnamed one (not "study study"). */
export function studyTitle(name: string): string {
  return name === DEFAULT_STUDY_NAME ? "study" : `study ${name}`;
}

type Partial = Record<string, unknown>;

export interface GroupDef {
  readonly description: string;
  /** Run config fields over the study's base config. */
  readonly run: Partial;
}

/** The built-in groups. R restarts every `restartEvery` iterations (default: the Level 1.5 cadence). */
export function builtinGroups(restartEvery: number): Readonly<Record<string, GroupDef>> {
  const noL15 = { enabled: false };
  return {
    A: { description: "Level 1 only", run: { level15: noL15, level2: { everyCycles: 0 } } },
    B: { description: "Level 1 + 1.5", run: { level2: { everyCycles: 0 } } },
    C: { description: "Level 1 + 1.5 + 2", run: {} },
    D: { description: "Level 1 + 2", run: { level15: noL15 } },
    R: {
      description: `Level 1, incumbent restarted from the best config every ${restartEvery} iterations`,
      run: { level15: noL15, level2: { everyCycles: 0 }, level1: { restartEvery } },
    },
  };
}

export interface StudyGroup {
  readonly name: string;
  readonly description: string;
  /** The partial run config every run of the group gets (before the repeat's seed and name). */
  readonly run: Partial;
}

export interface StudySpec {
  readonly format: typeof STUDY_FORMAT;
  readonly name: string;
  readonly seed: number;
  readonly repeats: number;
  readonly iterations: number;
  readonly budgetSeconds: number;
  /** "trainer" (the run config's trainer) or "surrogate:ABSOLUTE_FILE". */
  readonly objective: string;
  /** sha256 of the surrogate's data file, so a changed recording is noticed. */
  readonly objectiveSha256: string | null;
  readonly restartEvery: number;
  /** val_bpb for "trials to reach a target"; null: the median of all runs' best. */
  readonly target: number | null;
  readonly offline: boolean;
  readonly groups: readonly StudyGroup[];
}

export interface StudyRunSpec {
  /** e.g. "A-r1": the folder under runs/. */
  readonly id: string;
  readonly group: string;
  readonly repeat: number;
  readonly seed: number;
  /** The run's config file (absolute paths, device resolved). */
  readonly config: Partial;
}

const GROUP_NAME = "^[A-Za-z][A-Za-z0-9_]{0,31}$";
const fileSchema = {
  type: "object",
  additionalProperties: false,
  properties: {
    $schema: { type: "string" },
    name: { type: "string", pattern: "^[A-Za-z0-9][A-Za-z0-9._-]{0,60}$" },
    seed: { type: "integer", minimum: 0, maximum: 1000000 },
    repeats: { type: "integer", minimum: 1, maximum: 1000 },
    iterations: { type: "integer", minimum: 1, maximum: 100000 },
    budgetSeconds: { type: "number", exclusiveMinimum: 0, maximum: 86400 },
    objective: { type: "string", pattern: "^(trainer|surrogate(:.+)?)$" },
    groups: { type: "array", minItems: 1, uniqueItems: true, items: { type: "string", pattern: GROUP_NAME } },
    restartEvery: { type: "integer", minimum: 1, maximum: 100000 },
    target: { type: ["number", "null"] },
    offline: { type: "boolean" },
    run: { type: "object" },
    customGroups: {
      type: "object",
      propertyNames: { pattern: GROUP_NAME },
      additionalProperties: {
        type: "object",
        additionalProperties: false,
        properties: { description: { type: "string" }, extends: { type: "string" }, run: { type: "object" } },
      },
    },
  },
} as const;

export interface StudyFile {
  name?: string;
  seed?: number;
  repeats?: number;
  iterations?: number;
  budgetSeconds?: number;
  objective?: string;
  groups?: string[];
  restartEvery?: number;
  target?: number | null;
  offline?: boolean;
  run?: Partial;
  customGroups?: Record<string, { description?: string; extends?: string; run?: Partial }>;
}

const ajv = new Ajv({ allErrors: true, strict: false, allowUnionTypes: true });
const validateFile = ajv.compile<StudyFile>(fileSchema);

/** A study config file, validated (paths in it are relative to its folder). */
export function readStudyFile(file: string): StudyFile {
  const raw = readConfigFile(file);
  const problem = jsonInputProblem(raw);
  if (problem !== null) throw new ConfigError(`invalid study config ${file}: ${problem}`);
  if (!validateFile(raw))
    throw new ConfigError(
      `invalid study config ${file}:\n${describeSchemaErrors(validateFile.errors ?? [], fileSchema)}`,
    );
  return raw;
}

/** The flags of `bilevel study`, already parsed. */
export interface StudyFlags {
  readonly groups?: readonly string[];
  readonly repeats?: number;
  readonly iterations?: number;
  readonly budget?: number;
  readonly objective?: string;
  readonly offline?: boolean;
  readonly target?: number;
}

function deepMerge(base: unknown, over: unknown): unknown {
  const isObj = (v: unknown): v is Partial => typeof v === "object" && v !== null && !Array.isArray(v);
  if (!isObj(base) || !isObj(over)) return over;
  const out: Partial = { ...base };
  for (const [k, v] of Object.entries(over)) out[k] = k === "trainer" ? v : deepMerge(base[k], v);
  return out;
}

/** The groups asked for, built-in or custom (a custom group may extend a built-in one). */
function resolveGroups(names: readonly string[], file: StudyFile, restartEvery: number): StudyGroup[] {
  const builtin = builtinGroups(restartEvery);
  const custom = file.customGroups ?? {};
  // Every "vs A" and "vs R" comparison means the built-in groups: a custom one may not take their names.
  const taken = Object.keys(custom).filter((name) => builtin[name] !== undefined);
  if (taken.length > 0)
    throw new ConfigError(
      `customGroups.${taken[0]}: ${taken.join(", ")} ${taken.length > 1 ? "are built-in groups" : "is a built-in group"} (A, B, C, D, R); give the custom group another name`,
    );
  return names.map((name) => {
    const c = custom[name];
    if (c) {
      const parent = c.extends === undefined ? undefined : builtin[c.extends];
      if (c.extends !== undefined && !parent) {
        throw new ConfigError(
          `customGroups.${name}.extends: unknown built-in group ${JSON.stringify(c.extends)} (A, B, C, D or R)`,
        );
      }
      const run = deepMerge(parent?.run ?? {}, c.run ?? {}) as Partial;
      return { name, description: c.description ?? `custom group ${name}`, run };
    }
    const b = builtin[name];
    if (!b) {
      const known = [...Object.keys(builtin), ...Object.keys(custom)].join(", ");
      throw new ConfigError(
        `unknown group ${JSON.stringify(name)} (known: ${known}; custom groups go in the study config's customGroups)`,
      );
    }
    return { name, ...b };
  });
}

/** "surrogate[:FILE]" with FILE made absolute (against `baseDir`); the data file's sha256. */
function resolveObjective(objective: string, baseDir: string): { objective: string; sha: string | null } {
  if (objective === "trainer") return { objective, sha: null };
  const m = /^surrogate(?::(.+))?$/.exec(objective);
  if (!m)
    throw new ConfigError(
      `--objective must be trainer or surrogate[:FILE], got ${JSON.stringify(objective)}`,
    );
  const file = m[1] === undefined ? DEFAULT_SURROGATE_FILE : path.resolve(baseDir, m[1]);
  let sha: string;
  try {
    sha = createHash("sha256").update(readFileSync(file)).digest("hex");
  } catch (error) {
    throw new ConfigError(
      `--objective ${objective}: cannot read ${file} (${(error as NodeJS.ErrnoException).code})`,
    );
  }
  return { objective: `surrogate:${file}`, sha };
}

/** The spec of a new study from its config file (optional) and the flags over it. */
export function resolveStudy(
  file: string | undefined,
  flags: StudyFlags,
): { spec: StudySpec; baseDir: string; base: Partial } {
  const study = file ? readStudyFile(file) : {};
  const baseDir = file ? path.dirname(path.resolve(file)) : REPO_ROOT;
  const base = study.run ?? {};
  // Defaults the run config would use (iterations, budget, Level 1.5 cadence) come from it.
  const merged = mergeRunConfig(base, {}, file === undefined ? undefined : `${file}, its run section`);
  const restartEvery = study.restartEvery ?? merged.level15.every;
  const names = flags.groups ?? study.groups ?? [...DEFAULT_GROUPS];
  const objective = resolveObjective(
    flags.objective ?? study.objective ?? "trainer",
    flags.objective !== undefined ? process.cwd() : baseDir,
  );
  const spec: StudySpec = {
    format: STUDY_FORMAT,
    name: study.name ?? DEFAULT_STUDY_NAME,
    seed: study.seed ?? 1,
    repeats: flags.repeats ?? study.repeats ?? 5,
    iterations: flags.iterations ?? study.iterations ?? merged.iterations,
    budgetSeconds: flags.budget ?? study.budgetSeconds ?? merged.budgetSeconds,
    objective: objective.objective,
    objectiveSha256: objective.sha,
    restartEvery,
    target: flags.target ?? study.target ?? null,
    offline: flags.offline ?? study.offline ?? false,
    groups: resolveGroups(names, study, restartEvery),
  };
  return { spec, baseDir, base };
}

/**
 * Every run of the study, in the order they start (repeat by repeat, so a partial study has
 * balanced groups), each config resolved now: a bad group config is refused before anything exists.
 */
export function studyRuns(spec: StudySpec, base: Partial, baseDir: string): StudyRunSpec[] {
  const runs: StudyRunSpec[] = [];
  for (let r = 0; r < spec.repeats; r++) {
    for (const g of spec.groups) {
      const trainer =
        spec.objective === "trainer"
          ? {}
          : { trainer: { kind: "surrogate", file: spec.objective.slice("surrogate:".length) } };
      const partial = deepMerge(deepMerge(base, g.run), {
        ...repeatFields(spec, g.name, r + 1),
        iterations: spec.iterations,
        budgetSeconds: spec.budgetSeconds,
        ...trainer,
      }) as Partial;
      const resolved = resolveRunConfig(partial, { baseDir, label: `group ${g.name}` });
      runs.push(repeatRun(spec, g.name, r + 1, portable(partial, resolved)));
    }
  }
  return runs;
}

/** What differs between the repeats of a group's run: its name and its seed. */
function repeatFields(spec: StudySpec, group: string, repeat: number): { name: string; seed: number } {
  return { name: `${spec.name}-${group}-r${repeat}`, seed: spec.seed + SEED_STRIDE * (repeat - 1) };
}

function repeatRun(spec: StudySpec, group: string, repeat: number, config: Partial): StudyRunSpec {
  const { seed } = repeatFields(spec, group, repeat);
  return { id: `${group}-r${repeat}`, group, repeat, seed, config };
}

/**
 * The study with `repeats` repeats (at least its own): each new repeat's run is its group's first
 * run with the repeat's name and seed, which is all that differs between repeats (studyRuns), so
 * the runs stored so far stay as they are and keep their results.
 */
export function withRepeats(
  spec: StudySpec,
  runs: readonly StudyRunSpec[],
  repeats: number,
): {
  spec: StudySpec;
  runs: StudyRunSpec[];
} {
  const more: StudyRunSpec[] = [];
  for (let r = spec.repeats + 1; r <= repeats; r++) {
    for (const g of spec.groups) {
      const first = runs.find((run) => run.group === g.name && run.repeat === 1);
      if (!first)
        throw new UserError(`study.json has no first run of group ${g.name} to add repeats from`, 2);
      more.push(repeatRun(spec, g.name, r, { ...first.config, ...repeatFields(spec, g.name, r) }));
    }
  }
  return { spec: { ...spec, repeats: Math.max(spec.repeats, repeats) }, runs: [...runs, ...more] };
}

/** The partial config with every path absolute and the device resolved, so it works from any folder. */
function portable(partial: Partial, resolved: ResolvedRunConfig): Partial {
  return {
    ...partial,
    device: resolved.device,
    dataDir: resolved.dataDir,
    trainer: resolved.trainer,
    mechanisms: resolved.mechanisms,
  };
}
