// Checking and applying parameter changes against the search space. Every change that reaches
// the trainer passes through here, whoever made it (LLM, offline proposer, mechanism).
import type { Change, Config, ParamSpec, ParamValue } from "../mechanism-api/index.d.ts";
import { checkConstraints } from "../trainer/constraints.ts";
import { checkValue } from "../trainer/search-space.ts";

/**
 * Problems with `changes`, one sentence each; empty when they are valid. With `base` (the config
 * they apply to), the declared constraints are checked on the result too.
 */
export function checkChanges(
  changes: readonly Change[],
  params: readonly ParamSpec[],
  options: { active?: readonly string[]; maxChanges?: number; base?: Config } = {},
): string[] {
  const errors: string[] = [];
  const byName = new Map(params.map((p) => [p.name, p]));
  if (changes.length === 0) errors.push("no changes: propose at least one");
  if (options.maxChanges !== undefined && changes.length > options.maxChanges) {
    errors.push(`too many changes: ${changes.length} (at most ${options.maxChanges})`);
  }
  const seen = new Set<string>();
  for (const change of changes) {
    const spec = byName.get(change.param);
    if (!spec) {
      errors.push(`${change.param}: unknown parameter`);
      continue;
    }
    if (seen.has(change.param)) errors.push(`${change.param}: changed twice`);
    seen.add(change.param);
    if (options.active && !options.active.includes(change.param)) {
      errors.push(`${change.param}: frozen this cycle (active: ${options.active.join(", ")})`);
    }
    errors.push(...checkValue(spec, change.value));
  }
  if (errors.length === 0 && options.base)
    errors.push(...checkConstraints(params, applyChanges(options.base, changes)));
  return errors;
}

export function applyChanges(config: Config, changes: readonly Change[]): Config {
  const next: Record<string, ParamValue> = { ...config };
  for (const change of changes) next[change.param] = change.value;
  return next;
}

/**
 * `changes` as the host records them against `base`, the config they apply to: each carries
 * `previous`, `base`'s value of its parameter (absent when `base` has none). Whatever `previous` a
 * mechanism or proposer supplied is replaced: only the host says what a change replaced.
 */
export function withPrevious(base: Config, changes: readonly Change[]): Change[] {
  return changes.map(({ param, value }) => {
    const previous = Object.hasOwn(base, param) ? base[param] : undefined;
    return previous === undefined ? { param, value } : { param, value, previous };
  });
}

/** Drop changes that set a parameter to the value it already has; the rest as {@link withPrevious} records them. */
export function effectiveChanges(config: Config, changes: readonly Change[]): Change[] {
  return withPrevious(
    config,
    changes.filter((c) => config[c.param] !== c.value),
  );
}

/** "PARAM old -> new, …": the old value is the one the change recorded, else `config`'s. */
export function describeChanges(config: Config, changes: readonly Change[]): string {
  if (changes.length === 0) return "no change";
  return changes
    .map((c) => `${c.param} ${formatValue(c.previous ?? config[c.param])} -> ${formatValue(c.value)}`)
    .join(", ");
}

/** The value exactly (a description must match what the file holds: 0.14955, not 0.1496). */
function formatValue(value: ParamValue | undefined): string {
  if (value === undefined) return "?";
  return String(value);
}

export function defaultConfig(params: readonly ParamSpec[]): Config {
  return Object.fromEntries(params.map((p) => [p.name, p.default]));
}
