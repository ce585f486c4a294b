// The adapter for a user's own Karpathy-style train.py (e.g. a checkout of
// karpathy/autoresearch): copy the script into the trial folder, rewrite the constants whose
// value differs from the script's (the baseline runs the file byte for byte), check the declared
// ranges and constraints before anything starts, run the user's command, parse the summary block,
// and read the constants back from the file that ran.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import type { Config, ParamSpec, ParamValue, TrialStatus } from "../mechanism-api/index.d.ts";
import { childEnv } from "./child-env.ts";
import { checkConstraints } from "./constraints.ts";
import { runProcess } from "./process.ts";
import { findPython } from "./python.ts";
import { constantsConfig, discoverSource, runHelper, type ScriptConstant } from "./script-space.ts";
import { checkValue } from "./search-space.ts";
import { TailLines } from "./tail.ts";
import { outcome, validateRequest } from "./torch-trainer.ts";
import type { Trainer, TrainerResult, TrialOutcome, TrialRequest } from "./types.ts";

/** Runs the user's command so that it and everything it starts die with the trial (Linux). */
const TIE_TO_PARENT = path.join(import.meta.dirname, "parent_death.py");

/** The environment variables a trial's script can read its run-level values from (documented in docs/trainer.md). */
export const SEED_ENV = "BILEVEL_SEED";
export const BUDGET_ENV = "BILEVEL_BUDGET_SECONDS";
export const MAX_STEPS_ENV = "BILEVEL_MAX_STEPS";

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
  /** The constants read back from the rewritten source. */
  readonly constants?: readonly ScriptConstant[];
}

/**
 * Rewrite top-level constants of a Python script (via trainer/rewrite_constants.py, which
 * uses Python's ast for exact spans). Values: numbers, strings, or arrays for tuples/lists;
 * `NAME[i]` sets one element. `ADAM_BETA1`/`ADAM_BETA2` set the elements of a tuple
 * `ADAM_BETAS` when the script has no constant of that name. Never throws: problems come
 * back in `errors`. `folder`: where `from MODULE import NAME` finds MODULE.py.
 */
export function rewriteConstants(
  source: string,
  values: Readonly<Record<string, ParamValue | readonly ParamValue[]>>,
  python?: string,
  optional: Readonly<Record<string, ParamValue>> = {},
  folder: string | null = null,
): RewriteResult {
  const r = runHelper<RewriteResult>({ source, values, optional, folder }, python);
  return r.ok ? r.value : { source, changes: [], errors: [r.error] };
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
  /**
   * The searched constants: each request is checked against their ranges and constraints
   * before anything starts (invalid-config, no trainer time). Constants computed from others
   * (`B = A * 2`) are written only when searched.
   */
  readonly params?: readonly ParamSpec[];
  /**
   * The seed at which a script's own SEED constant stays as written (the run seed): a trial
   * with seed s sets SEED to its value + (s - baseSeed), so repeated baselines differ while the
   * first one runs the file as it is. Unset: SEED is never rewritten ($BILEVEL_SEED carries the seed).
   */
  readonly baseSeed?: number;
  /** Records each trial's script before it runs (git: a commit whose message is the description). */
  readonly recorder?: (content: Buffer, message: string) => string;
}

/** The script as it was when the trainer first read it: every trial derives from these bytes. */
interface Snapshot {
  readonly bytes: Buffer;
  readonly source: string;
  readonly constants: ReadonlyMap<string, ScriptConstant>;
}

/** What one trial writes: the values that differ from the script's, and the run-level ones. */
interface TrialPlan {
  readonly values: Record<string, ParamValue>;
  readonly env: Record<string, string>;
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

/** Equal values (numbers within float rounding: a value read back from the file may differ in the last bit). */
function sameValue(a: ParamValue, b: ParamValue): boolean {
  if (typeof a === "number" && typeof b === "number")
    return a === b || Math.abs(a - b) <= 1e-12 * Math.abs(a);
  return a === b;
}

/** What the command printed that matters: the summary block, FAIL, an OOM, the last lines. */
class OutputWatcher {
  readonly tail = new TailLines(200, 64 * 1024); // stdout and stderr, for error messages
  summaryLines: string[] | null = null; // stdout after the last "---"
  /** A "val_bpb:" line on stdout before any "---": a summary without its separator. */
  bpbWithoutBlock = false;
  failed = false; // a FAIL line
  oom = false;
  private readonly request: TrialRequest;

  constructor(request: TrialRequest) {
    this.request = request;
  }

  line(line: string, stream: "stdout" | "stderr"): void {
    this.tail.push(line);
    if (!this.oom && OOM.test(line)) this.oom = true;
    if (stream !== "stdout") return;
    const trimmed = line.trim();
    if (trimmed === "---") this.summaryLines = [];
    else if (this.summaryLines && this.summaryLines.length < 1000) this.summaryLines.push(line);
    else if (this.summaryLines === null && trimmed.startsWith("val_bpb:")) this.bpbWithoutBlock = true;
    if (trimmed === "FAIL") this.failed = true;
    const m = PROGRESS.exec(line);
    if (!m?.[1] || !m[2] || !m[3]) return;
    const progress = Math.min(1, Math.max(0, Number(m[2]) / 100));
    try {
      this.request.onProgress?.({
        step: Number(m[1]),
        loss: Number(m[3]),
        elapsed: progress * this.request.budgetSeconds,
        tokensPerSecond: m[4] ? Number(m[4].replace(/,/g, "")) : 0,
        progress,
      });
    } catch {
      // A failing progress callback must not end the trial.
    }
  }

  lastLine(): string {
    return (
      this.tail
        .toArray()
        .map((l) => l.trim())
        .filter(Boolean)
        .at(-1) ?? ""
    );
  }
}

/** Runs trials of a user's Karpathy-style train.py. */
export class ExternalTrainer implements Trainer {
  readonly options: ExternalTrainerOptions;
  private snapshot: Snapshot | null = null;

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
    const python = this.findPython();
    if (!python.ok) return refuse("crashed", python.error);
    const snap = this.read(python.python);
    if ("error" in snap) return refuse(snap.status, snap.error);
    // Ranges and constraints first: a config that breaks one never costs trainer time.
    const problems = this.check(request, snap);
    if (problems.length) return refuse("invalid-config", `invalid config: ${problems.join("; ")}`);
    const plan = this.plan(request, snap);
    const written = this.write(request, snap, plan, python.python);
    if ("error" in written) return refuse("invalid-config", `invalid config: ${written.error}`);
    const commit = this.options.recorder?.(written.bytes, request.description ?? "bilevel trial");
    const result = await this.execute(request, written.file, plan.env, python.python, logPath, started);
    const ranConfig = constantsConfig(written.constants);
    return {
      ...result,
      ...(result.result ? { result: { ...result.result, config: ranConfig } } : {}),
      ranConfig,
      ...(commit ? { commit } : {}),
    };
  }

  private findPython(): { ok: true; python: string } | { ok: false; error: string } {
    if (this.options.python) return { ok: true, python: this.options.python };
    return findPython(this.options.command ? "ast" : "torch");
  }

  /** The script's bytes and constants, read once: the baseline and every trial derive from them. */
  private read(python: string): Snapshot | { status: TrialStatus; error: string } {
    if (this.snapshot) return this.snapshot;
    let bytes: Buffer;
    try {
      bytes = readFileSync(this.options.script);
    } catch (e) {
      return { status: "crashed", error: `cannot read ${this.options.script}: ${(e as Error).message}` };
    }
    const source = bytes.toString("utf8");
    const found = discoverSource(source, this.folder(), python);
    if (!found.ok) return { status: "invalid-config", error: `invalid config: ${found.error}` };
    this.snapshot = { bytes, source, constants: new Map(found.value.constants.map((c) => [c.name, c])) };
    return this.snapshot;
  }

  private folder(): string {
    return path.dirname(path.resolve(this.options.script));
  }

  /** The declared ranges and constraints, on the config the trial would run. */
  private check(request: TrialRequest, snap: Snapshot): string[] {
    const params = this.options.params ?? [];
    const errors = params.flatMap((p) =>
      request.config[p.name] === undefined ? [] : checkValue(p, request.config[p.name]),
    );
    const full = { ...constantsConfig([...snap.constants.values()]), ...request.config };
    return [...errors, ...checkConstraints(params, full)];
  }

  /** The constants to write (only those that differ from the script's) and the run-level environment. */
  private plan(request: TrialRequest, snap: Snapshot): TrialPlan {
    const searched = new Set((this.options.params ?? []).map((p) => p.name));
    const values: Record<string, ParamValue> = {};
    for (const [name, value] of Object.entries(request.config)) {
      const c = snap.constants.get(name);
      if (c && sameValue(c.value, value)) continue; // unchanged: the original expression stays
      if (c?.derived && !searched.has(name)) continue; // computed from others: it follows them
      values[name] = value; // an unknown name: the helper says what is wrong
    }
    const runLevel = (explicit: string | undefined, fallback: string, value: number) => {
      const name = explicit ?? fallback;
      const c = snap.constants.get(name);
      if (c ? !sameValue(c.value, value) : explicit !== undefined) values[name] = value;
    };
    runLevel(this.options.budgetConstant, "TIME_BUDGET", request.budgetSeconds);
    if (request.maxSteps !== undefined)
      runLevel(this.options.maxStepsConstant, "MAX_STEPS", request.maxSteps);
    const seed = snap.constants.get(this.options.seedConstant ?? "SEED");
    if (this.options.seedConstant !== undefined) runLevel(this.options.seedConstant, "SEED", request.seed);
    else if (this.options.baseSeed !== undefined && seed?.type === "int") {
      runLevel(undefined, "SEED", (seed.value as number) + request.seed - this.options.baseSeed);
    }
    const env: Record<string, string> = {
      [SEED_ENV]: String(request.seed),
      [BUDGET_ENV]: String(request.budgetSeconds),
      ...(request.maxSteps !== undefined ? { [MAX_STEPS_ENV]: String(request.maxSteps) } : {}),
    };
    return { values, env };
  }

  /** The trial's copy of the script: the original bytes when nothing changes, else the rewrite. */
  private write(
    request: TrialRequest,
    snap: Snapshot,
    plan: TrialPlan,
    python: string,
  ): { file: string; bytes: Buffer; constants: readonly ScriptConstant[] } | { error: string } {
    let bytes = snap.bytes;
    let constants: readonly ScriptConstant[] = [...snap.constants.values()];
    if (Object.keys(plan.values).length > 0) {
      const r = rewriteConstants(snap.source, plan.values, python, {}, this.folder());
      if (r.errors.length > 0 || !r.constants)
        return { error: r.errors.join("; ") || "no constants read back" };
      bytes = Buffer.from(r.source, "utf8");
      constants = r.constants;
    }
    const file = path.join(request.workDir, path.basename(this.options.script));
    writeFileSync(file, bytes);
    return { file, bytes, constants };
  }

  /** Run the command on the copy (through the parent-death shim on Linux) and classify what happened. */
  private async execute(
    request: TrialRequest,
    scriptCopy: string,
    runEnv: Readonly<Record<string, string>>,
    python: string,
    logPath: string,
    started: number,
  ): Promise<TrialOutcome> {
    const scriptDir = this.folder();
    const command = (this.options.command ?? [python, "{script}"]).map((a) =>
      a.replaceAll("{script}", scriptCopy),
    );
    const [exe, ...args] = command;
    if (!exe) return outcome("invalid-config", "the command is empty", logPath, started);
    const factor = this.options.timeoutFactor ?? 1.5;
    const grace = this.options.graceSeconds ?? 120;
    const timeoutMs = Math.round((request.budgetSeconds * factor + grace) * 1000);
    const base = childEnv(process.env, {
      // `uv run train.py` reads its settings and finds its environment through these.
      allow: ["UV_*", "VIRTUAL_ENV", ...(this.options.envAllow ?? [])],
      secret: this.options.secretEnv ?? [],
      set: { ...this.options.env, ...request.env },
    });
    const env: Record<string, string> = {
      ...base,
      ...runEnv,
      // The copy runs from the trial folder: keep the script's own folder importable.
      PYTHONPATH: base.PYTHONPATH ? `${scriptDir}${path.delimiter}${base.PYTHONPATH}` : scriptDir,
      PYTHONUNBUFFERED: "1",
      // Imports from the script's folder must not leave __pycache__ in the user's working tree.
      PYTHONDONTWRITEBYTECODE: "1",
    };
    // Linux: through the shim, so that everything the command starts (the Python under `uv run`,
    // a process that moved to its own session) ends with the trial.
    const tied = process.platform === "linux";
    const watcher = new OutputWatcher(request);
    const proc = await runProcess({
      command: tied ? python : exe,
      args: tied ? [TIE_TO_PARENT, exe, ...args] : args,
      cwd: this.options.cwd ?? scriptDir,
      env,
      logPath,
      timeoutMs,
      ...(request.signal ? { signal: request.signal } : {}),
      onLine: (line, stream) => watcher.line(line, stream),
    });
    const at = { exitCode: proc.exitCode };
    if (proc.aborted) return outcome("crashed", "aborted", logPath, started, at);
    if (proc.timedOut) {
      const message = `killed after ${(timeoutMs / 1000).toFixed(0)} s (budget ${request.budgetSeconds} s × ${factor} + ${grace} s grace), with every process it started`;
      return outcome("timeout", message, logPath, started, at);
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
    return classify(watcher, proc.exitCode, proc.signal, proc.durationMs, logPath, started);
  }
}

/** The outcome of a command that ran to its end, from its summary block and exit status. */
function classify(
  watcher: OutputWatcher,
  exitCode: number | null,
  signal: NodeJS.Signals | null,
  durationMs: number,
  logPath: string,
  started: number,
): TrialOutcome {
  const at = { exitCode };
  const fail = (status: TrialStatus, message: string) => outcome(status, message, logPath, started, at);
  const summary = parseSummary(watcher.summaryLines ? ["---", ...watcher.summaryLines] : []);
  const valBpb = num(summary, "val_bpb");
  const rawBpb = summary.get("val_bpb");
  if (valBpb === null) {
    if (watcher.failed) return fail("diverged", "the script printed FAIL (loss NaN or exploding)");
    if (watcher.oom) return fail("oom", "out of memory");
    if (rawBpb !== undefined)
      return fail("crashed", `val_bpb: line is not a number: ${JSON.stringify(rawBpb)}`);
    if (watcher.bpbWithoutBlock)
      return fail(
        "crashed",
        `val_bpb: was printed, but not in a summary block: the block starts with a line "---" (as in Karpathy's train.py), then "val_bpb: …" (exit ${exitCode ?? signal})`,
      );
    const last = watcher.lastLine();
    return fail(
      "crashed",
      `no val_bpb: line in the output (exit ${exitCode ?? signal})${last ? `: ${last}` : ""}`,
    );
  }
  if (!Number.isFinite(valBpb)) return fail("diverged", `val_bpb is ${valBpb}`);
  if (valBpb <= 0)
    return fail("crashed", `val_bpb must be > 0, got ${rawBpb} (bits per byte cannot be zero or negative)`);
  if (exitCode !== 0) return fail("crashed", `the script printed val_bpb but exited ${exitCode}`);
  const trainingSeconds = num(summary, "training_seconds") ?? 0;
  const numTokens = Math.round((num(summary, "total_tokens_M") ?? 0) * 1e6);
  const config: Config = {};
  const result: TrainerResult = {
    val_bpb: valBpb,
    training_seconds: trainingSeconds,
    total_seconds: num(summary, "total_seconds") ?? durationMs / 1000,
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
