// `bilevel train --script path/train.py [--list] [--set K=V ...]`: a user's own train.py, one
// trial or the list of its constants with the search range each would get. With --config, the
// run config's trainer (command, declared ranges and constraints) is used as a run would use it.
import path from "node:path";
import type { ParamSpec, ParamValue } from "../../mechanism-api/index.d.ts";
import { ExternalTrainer } from "../../trainer/external.ts";
import {
  discoverScript,
  formatScriptConstants,
  type ScriptInfo,
  unknownConstant,
} from "../../trainer/script-space.ts";
import { parseNumber } from "../../trainer/search-space.ts";
import type { TrialOutcome } from "../../trainer/types.ts";
import { loadRunConfig } from "../config.ts";

export interface ScriptTrainOptions {
  readonly script?: string;
  readonly config?: string;
  readonly command?: string;
  readonly set: readonly string[];
  readonly list?: boolean;
}

/** What a script trial needs: the script, its constants, the command and the declared search space. */
export interface ScriptSetup {
  readonly info: ScriptInfo;
  readonly command?: readonly string[];
  readonly space: readonly ParamSpec[];
  readonly budgetSeconds: number | null;
  readonly timeoutFactor?: number;
  readonly graceSeconds?: number;
  readonly envAllow: readonly string[];
}

/** The script (from --script, or the config's external trainer) and what the config declares about it. */
export function scriptSetup(opts: ScriptTrainOptions, errors: string[]): ScriptSetup | null {
  let script = opts.script ? path.resolve(opts.script) : undefined;
  let setup: Omit<ScriptSetup, "info"> = { space: [], budgetSeconds: null, envAllow: [] };
  if (opts.config) {
    const config = loadRunConfig(opts.config, { probeCuda: () => false });
    if (config.trainer.kind !== "external") {
      errors.push(
        `--config ${opts.config}: its trainer is ${config.trainer.kind}, not a script (trainer.kind external)`,
      );
      return null;
    }
    const t = config.trainer;
    script ??= t.script;
    setup = {
      ...(t.command ? { command: t.command } : {}),
      space: script === t.script ? config.searchSpace : [],
      budgetSeconds: config.budgetSeconds,
      ...(t.timeoutFactor !== undefined ? { timeoutFactor: t.timeoutFactor } : {}),
      ...(t.graceSeconds !== undefined ? { graceSeconds: t.graceSeconds } : {}),
      envAllow: t.env ?? [],
    };
  }
  if (!script) return null;
  if (opts.command !== undefined)
    setup = { ...setup, command: opts.command.split(/\s+/).filter((a) => a !== "") };
  const found = discoverScript(script, undefined);
  if (!found.ok) {
    errors.push(`--script: ${found.error}`);
    return null;
  }
  const budget =
    found.value.imported.find((c) => c.name === "TIME_BUDGET")?.value ??
    found.value.constants.find((c) => c.name === "TIME_BUDGET")?.value;
  return {
    ...setup,
    info: found.value,
    budgetSeconds: setup.budgetSeconds ?? (typeof budget === "number" && budget > 0 ? budget : null),
  };
}

/** --set KEY=VALUE for a script's constant, typed by the value the script has. */
export function parseScriptAssignment(
  info: ScriptInfo,
  text: string,
): { name: string; value: ParamValue } | string {
  const eq = text.indexOf("=");
  if (eq <= 0) return `--set expects KEY=VALUE, got ${JSON.stringify(text)}`;
  const name = text.slice(0, eq).trim();
  const raw = text.slice(eq + 1).trim();
  const why = unknownConstant(info, name);
  if (why !== null) return why;
  const c = info.constants.find((k) => k.name === name);
  if (!c) return `${name}: unknown`;
  if (c.type === "str") return { name, value: raw.replace(/^(["'])(.*)\1$/, "$2") };
  const n = parseNumber(raw);
  if (n === null) return `${name} is a number in the script (${c.text}), got ${JSON.stringify(raw)}`;
  return { name, value: n };
}

/** The constants' table for --list. */
export function listScript(setup: ScriptSetup): string {
  return formatScriptConstants(setup.info, setup.space);
}

/** One trial of the script with the --set values (the script's other constants as written). */
export function runScriptTrial(
  setup: ScriptSetup,
  values: Readonly<Record<string, ParamValue>>,
  request: { budgetSeconds: number; seed: number | undefined; workDir: string; signal: AbortSignal },
  onProgress: (p: { progress: number; step: number; loss: number; tokensPerSecond: number }) => void,
): Promise<TrialOutcome> {
  const trainer = new ExternalTrainer({
    script: setup.info.script,
    ...(setup.command ? { command: setup.command } : {}),
    // With --config, what --set asks is checked as a run's proposal would be (ranges, constraints).
    params: setup.space,
    ...(setup.timeoutFactor !== undefined ? { timeoutFactor: setup.timeoutFactor } : {}),
    ...(setup.graceSeconds !== undefined ? { graceSeconds: setup.graceSeconds } : {}),
    envAllow: setup.envAllow,
    // --seed sets the script's own SEED constant, when it has one.
    ...(request.seed !== undefined && setup.info.constants.some((c) => c.name === "SEED" && c.type === "int")
      ? { seedConstant: "SEED" }
      : {}),
  });
  return trainer.run({
    config: values,
    budgetSeconds: request.budgetSeconds,
    seed: request.seed ?? 0,
    device: "auto",
    workDir: request.workDir,
    signal: request.signal,
    description: Object.entries(values)
      .map(([k, v]) => `${k}=${v}`)
      .join(", "),
    onProgress,
  });
}
