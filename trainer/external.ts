// The adapter for a user's own Karpathy-style train.py (e.g. a checkout of
// karpathy/autoresearch): copy the script into the trial folder, rewrite the named
// top-level constants, run the user's command, parse the summary block.
import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import type { Config, ParamValue, TrialStatus } from "../mechanism-api/index.d.ts";
import { childEnv } from "./child-env.ts";
import { runProcess } from "./process.ts";
import { findPython } from "./python.ts";
import { TailLines } from "./tail.ts";
import { outcome, validateRequest } from "./torch-trainer.ts";
import type { Trainer, TrainerResult, TrialOutcome, TrialRequest } from "./types.ts";

const HELPER = path.join(import.meta.dirname, "rewrite_constants.py");
/** Runs the user's command so that it (and its children) die with this process. */
const TIE_TO_PARENT = path.join(import.meta.dirname, "parent_death.py");

export interface ConstantChange {
  readonly name: string;
  readonly line: number;
  readonly old: string;
  readonly new: string;
}

export interface RewriteResult {
  readonly source: string;
  readonly changes: readonly ConstantChange[];
  readonly errors: readonly string[];
}

/**
 * Rewrite top-level constants of a Python script (via trainer/rewrite_constants.py, which
 * uses Python's ast for exact spans). Values: numbers, strings, or arrays for tuples/lists.
 * `ADAM_BETA1`/`ADAM_BETA2` set the elements of a tuple `ADAM_BETAS` when the script has no
 * constant of that name. Never throws: problems come back in `errors`.
 */
export function rewriteConstants(
  source: string,
  values: Readonly<Record<string, ParamValue | readonly ParamValue[]>>,
  python?: string,
  optional: Readonly<Record<string, ParamValue>> = {},
): RewriteResult {
  let py = python;
  if (!py) {
    const found = findPython("ast");
    if (!found.ok) return { source, changes: [], errors: [found.error] };
    py = found.python;
  }
  const r = spawnSync(py, [HELPER], {
    input: JSON.stringify({ source, values, optional }),
    encoding: "utf8",
    timeout: 60_000,
    maxBuffer: 64 * 1024 * 1024,
    env: childEnv(process.env),
  });
  if (r.status !== 0) {
    return {
      source,
      changes: [],
      errors: [`rewrite helper failed: ${(r.stderr || r.error?.message || "").trim()}`],
    };
  }
  try {
    const parsed = JSON.parse(r.stdout) as RewriteResult;
    return parsed;
  } catch {
    return { source, changes: [], errors: ["rewrite helper printed no JSON"] };
  }
}

/** `key: value` lines after the last `---` line of the output (Karpathy's summary block). */
export function parseSummary(lines: readonly string[]): Map<string, string> {
  const start = lines.map((l) => l.trim()).lastIndexOf("---");
  const out = new Map<string, string>();
  if (start < 0) return out;
  for (const line of lines.slice(start + 1)) {
    const m = /^([A-Za-z_][\w]*):\s+(.*\S)\s*$/.exec(line.trim());
    if (m?.[1] && m[2] !== undefined) out.set(m[1], m[2]);
  }
  return out;
}

/** Karpathy's progress line: `step 00012 (5.2%) | loss: 4.123 | ... | tok/sec: 123,456 | ...` */
const PROGRESS = /step\s+(\d+)\s+\(([\d.]+)%\)\s*\|\s*loss:\s*([-\d.eE+naif]+)(?:.*?tok\/sec:\s*([\d,]+))?/;

export interface ExternalTrainerOptions {
  /** The user's train.py. */
  readonly script: string;
  /** The command; `{script}` is replaced by the copied script's path. Default [python, "{script}"]. */
  readonly command?: readonly string[];
  /** Where the command runs (default: the script's folder, so its imports and data paths work). */
  readonly cwd?: string;
  /** Python for the default command and the rewrite helper (default: findPython("torch")). */
  readonly python?: string;
  readonly timeoutFactor?: number;
  readonly graceSeconds?: number;
  /** Values set in the command's environment (names the deny rule matches are dropped). */
  readonly env?: NodeJS.ProcessEnv;
  /** Names (or `PREFIX*`) inherited from our environment besides DEFAULT_ENV_ALLOW. */
  readonly envAllow?: readonly string[];
  /** Names never passed on, e.g. the LLM key's variable (SECRET_NAME matches are never passed either). */
  readonly secretEnv?: readonly string[];
  /** Constants the request's run-level fields go to, when the script defines them. */
  readonly budgetConstant?: string;
  readonly seedConstant?: string;
  readonly maxStepsConstant?: string;
}

/**
 * A summary value as a number: Python's `inf`/`nan` spellings become ±Infinity/NaN,
 * thousands separators are dropped; null when absent or not a number.
 */
export function summaryNumber(raw: string | undefined): number | null {
  if (raw === undefined) return null;
  const text = raw.replace(/,/g, "").trim();
  const special = /^([+-]?)(inf|infinity|nan)$/i.exec(text);
  if (special) {
    if (special[2]!.toLowerCase() === "nan") return Number.NaN;
    return special[1] === "-" ? Number.NEGATIVE_INFINITY : Number.POSITIVE_INFINITY;
  }
  const n = text === "" ? Number.NaN : Number(text);
  return Number.isNaN(n) ? null : n;
}

function num(summary: Map<string, string>, key: string): number | null {
  return summaryNumber(summary.get(key));
}

const OOM = /out of memory|OutOfMemoryError|CUBLAS_STATUS_ALLOC_FAILED/i;

/** Runs trials of a user's Karpathy-style train.py. */
export class ExternalTrainer implements Trainer {
  readonly options: ExternalTrainerOptions;

  constructor(options: ExternalTrainerOptions) {
    this.options = options;
  }

  async run(request: TrialRequest): Promise<TrialOutcome> {
    const started = Date.now();
    mkdirSync(request.workDir, { recursive: true });
    const logPath = path.join(request.workDir, "train.log");
    const refuse = (status: TrialStatus, message: string) => {
      writeFileSync(logPath, `${message}\n`);
      return outcome(status, message, logPath, started);
    };
    const requestErrors = validateRequest(request);
    if (requestErrors.length) return refuse("invalid-config", `invalid config: ${requestErrors.join("; ")}`);
    let source: string;
    try {
      source = readFileSync(this.options.script, "utf8");
    } catch (e) {
      return refuse("crashed", `cannot read ${this.options.script}: ${(e as Error).message}`);
    }
    let python = this.options.python;
    if (!python) {
      const found = findPython(this.options.command ? "ast" : "torch");
      if (!found.ok) return refuse("crashed", found.error);
      python = found.python;
    }
    // Run-level values go to the script only where it defines the constant at top level
    // (autoresearch keeps TIME_BUDGET in prepare.py and hard-codes its seed); a constant
    // named explicitly in the options must exist.
    const values: Record<string, ParamValue> = { ...request.config };
    const optional: Record<string, ParamValue> = {};
    const runLevel: [string | undefined, string, number | undefined][] = [
      [this.options.budgetConstant, "TIME_BUDGET", request.budgetSeconds],
      [this.options.seedConstant, "SEED", request.seed],
      [this.options.maxStepsConstant, "MAX_STEPS", request.maxSteps],
    ];
    for (const [explicit, fallback, value] of runLevel) {
      if (value === undefined) continue;
      if (explicit) values[explicit] = value;
      else optional[fallback] = value;
    }
    const rewritten = rewriteConstants(source, values, python, optional);
    if (rewritten.errors.length)
      return refuse("invalid-config", `invalid config: ${rewritten.errors.join("; ")}`);
    const scriptCopy = path.join(request.workDir, path.basename(this.options.script));
    writeFileSync(scriptCopy, rewritten.source);
    const scriptDir = path.dirname(path.resolve(this.options.script));
    const command = (this.options.command ?? [python, "{script}"]).map((a) =>
      a.replaceAll("{script}", scriptCopy),
    );
    const [exe, ...args] = command;
    if (!exe) return refuse("invalid-config", "the command is empty");

    const factor = this.options.timeoutFactor ?? 1.5;
    const grace = this.options.graceSeconds ?? 120;
    const timeoutMs = Math.round((request.budgetSeconds * factor + grace) * 1000);
    // Only bounded tails are kept: a long run prints a \r progress line per step, and the
    // summary block, an OOM or a traceback come at the end.
    const tail = new TailLines(200, 64 * 1024); // stdout and stderr, for error messages
    let summaryLines: string[] | null = null; // stdout after the last "---"
    let failed = false; // a FAIL line
    let oom = false;
    const base = childEnv(process.env, {
      allow: this.options.envAllow ?? [],
      secret: this.options.secretEnv ?? [],
      set: this.options.env ?? {},
    });
    const env: Record<string, string> = {
      ...base,
      // The copy runs from the trial folder: keep the script's own folder importable.
      PYTHONPATH: base.PYTHONPATH ? `${scriptDir}${path.delimiter}${base.PYTHONPATH}` : scriptDir,
      PYTHONUNBUFFERED: "1",
    };
    // Linux: through the shim, so a SIGKILLed run takes the command and its children
    // (e.g. the Python under `uv run`) with it.
    const tied = process.platform === "linux";
    const proc = await runProcess({
      command: tied ? python : exe,
      args: tied ? [TIE_TO_PARENT, exe, ...args] : args,
      cwd: this.options.cwd ?? scriptDir,
      env,
      logPath,
      timeoutMs,
      ...(request.signal ? { signal: request.signal } : {}),
      onLine: (line, stream) => {
        tail.push(line);
        if (!oom && OOM.test(line)) oom = true;
        if (stream !== "stdout") return;
        const trimmed = line.trim();
        if (trimmed === "---") summaryLines = [];
        else if (summaryLines && summaryLines.length < 1000) summaryLines.push(line);
        if (trimmed === "FAIL") failed = true;
        const m = PROGRESS.exec(line);
        if (m?.[1] && m[2] && m[3]) {
          const progress = Math.min(1, Math.max(0, Number(m[2]) / 100));
          try {
            request.onProgress?.({
              step: Number(m[1]),
              loss: Number(m[3]),
              elapsed: progress * request.budgetSeconds,
              tokensPerSecond: m[4] ? Number(m[4].replace(/,/g, "")) : 0,
              progress,
            });
          } catch {
            // A failing progress callback must not end the trial.
          }
        }
      },
    });
    const at = { exitCode: proc.exitCode };
    if (proc.aborted) return outcome("crashed", "aborted", logPath, started, at);
    if (proc.timedOut) {
      const s = (timeoutMs / 1000).toFixed(0);
      return outcome(
        "timeout",
        `killed after ${s} s (budget × ${factor} + ${grace} s grace)`,
        logPath,
        started,
        at,
      );
    }
    if (proc.spawnError)
      return outcome(
        "crashed",
        `could not start ${tied ? python : exe}: ${proc.spawnError}`,
        logPath,
        started,
      );
    const shimError = /parent_death: cannot run .*?: (.*)/.exec(proc.stderrTail)?.[1];
    if (tied && proc.exitCode === 127 && shimError)
      return outcome("crashed", `could not start ${exe}: ${shimError}`, logPath, started, at);
    const summary = parseSummary(summaryLines ? ["---", ...summaryLines] : []);
    const valBpb = num(summary, "val_bpb");
    const rawBpb = summary.get("val_bpb");
    if (valBpb === null) {
      if (failed) {
        return outcome("diverged", "the script printed FAIL (loss NaN or exploding)", logPath, started, at);
      }
      if (oom) return outcome("oom", "out of memory", logPath, started, at);
      if (rawBpb !== undefined) {
        return outcome(
          "crashed",
          `val_bpb: line is not a number: ${JSON.stringify(rawBpb)}`,
          logPath,
          started,
          at,
        );
      }
      const last =
        tail
          .toArray()
          .map((l) => l.trim())
          .filter(Boolean)
          .at(-1) ?? "";
      return outcome(
        "crashed",
        `no val_bpb: line in the output (exit ${proc.exitCode ?? proc.signal})${last ? `: ${last}` : ""}`,
        logPath,
        started,
        at,
      );
    }
    if (!Number.isFinite(valBpb)) return outcome("diverged", `val_bpb is ${valBpb}`, logPath, started, at);
    if (valBpb <= 0) {
      return outcome(
        "crashed",
        `val_bpb must be > 0, got ${rawBpb} (bits per byte cannot be zero or negative)`,
        logPath,
        started,
        at,
      );
    }
    if (proc.exitCode !== 0) {
      return outcome(
        "crashed",
        `the script printed val_bpb but exited ${proc.exitCode}`,
        logPath,
        started,
        at,
      );
    }
    const trainingSeconds = num(summary, "training_seconds") ?? 0;
    const numTokens = Math.round((num(summary, "total_tokens_M") ?? 0) * 1e6);
    const config: Config = { ...request.config };
    const result: TrainerResult = {
      val_bpb: valBpb,
      training_seconds: trainingSeconds,
      total_seconds: num(summary, "total_seconds") ?? proc.durationMs / 1000,
      warmup_seconds: 0,
      num_steps: Math.round(num(summary, "num_steps") ?? 0),
      num_tokens: numTokens,
      num_params: Math.round((num(summary, "num_params_M") ?? 0) * 1e6),
      peak_memory_mb: num(summary, "peak_vram_mb") ?? 0,
      mfu_percent: num(summary, "mfu_percent"),
      tokens_per_second: trainingSeconds > 0 ? numTokens / trainingSeconds : 0,
      device: "external",
      config,
    };
    return outcome("ok", "ok", logPath, started, { ...at, result });
  }
}
