// The adapter that runs one trial of the Python trainer (python3 -m trainer) and turns
// whatever happens into a typed TrialOutcome. Nothing the child does makes it throw.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { Ajv } from "ajv";
import type { TrialStatus } from "../mechanism-api/index.d.ts";
import { childEnv } from "./child-env.ts";
import { Deadline, runProcess } from "./process.ts";
import { findPython } from "./python.ts";
import { validateConfig } from "./search-space.ts";
import type { Trainer, TrainerProgress, TrainerResult, TrialOutcome, TrialRequest } from "./types.ts";

export const REPO_ROOT = path.resolve(import.meta.dirname, "..");

/** The trainer's exit codes (trainer/train.py); anything else is a crash. */
export const EXIT_CODES: Readonly<Record<number, TrialStatus>> = {
  0: "ok",
  1: "crashed",
  2: "invalid-config",
  3: "oom",
  4: "diverged",
};

export interface TorchTrainerOptions {
  /** Python to run; default: findPython for the trial's device (trainer/find_python.sh). */
  readonly python?: string;
  /** What comes before the trial's arguments (default ["-m", "trainer"]); anything speaking the same protocol works. */
  readonly entry?: readonly string[];
  /**
   * Hard timeout = budget × timeoutFactor + graceSeconds from the first progress record, then
   * SIGKILL of the process group. The trainer excludes its start and warm-up (a cold
   * torch.compile: minutes for a deep config) from the budget, so they get their own allowance.
   */
  readonly timeoutFactor?: number;
  readonly graceSeconds?: number;
  /** Seconds from the start to the first progress record: data, model, compile (default 600). */
  readonly startupSeconds?: number;
  /** Extra arguments after the trial's own (e.g. ["--eval-bytes", "16384"]). */
  readonly extraArgs?: readonly string[];
  /** Values set in the child's environment (names the deny rule matches are dropped). */
  readonly env?: NodeJS.ProcessEnv;
  /** Names (or `PREFIX*`) inherited from our environment besides DEFAULT_ENV_ALLOW. */
  readonly envAllow?: readonly string[];
  /** Names never passed on, e.g. the LLM key's variable (SECRET_NAME matches are never passed either). */
  readonly secretEnv?: readonly string[];
}

const num = { type: "number" } as const;
const resultSchema = {
  type: "object",
  required: [
    "val_bpb",
    "training_seconds",
    "total_seconds",
    "warmup_seconds",
    "num_steps",
    "num_tokens",
    "num_params",
    "peak_memory_mb",
    "mfu_percent",
    "tokens_per_second",
    "device",
    "config",
  ],
  properties: {
    event: { const: "result" },
    val_bpb: { type: "number", exclusiveMinimum: 0 },
    training_seconds: { type: "number", minimum: 0 },
    total_seconds: { type: "number", minimum: 0 },
    warmup_seconds: { type: "number", minimum: 0 },
    num_steps: { type: "integer", minimum: 0 },
    num_tokens: { type: "integer", minimum: 0 },
    num_params: { type: "integer", minimum: 0 },
    peak_memory_mb: { type: "number", minimum: 0 },
    mfu_percent: { type: ["number", "null"] },
    tokens_per_second: { type: "number", minimum: 0 },
    device: { type: "string" },
    config: { type: "object", additionalProperties: { type: ["number", "string"] } },
  },
} as const;
const progressSchema = {
  type: "object",
  required: ["step", "loss", "elapsed", "tokens_per_second", "progress"],
  properties: {
    event: { const: "progress" },
    step: { type: "integer", minimum: 0 },
    loss: num,
    elapsed: { type: "number", minimum: 0 },
    tokens_per_second: { type: "number", minimum: 0 },
    progress: { type: "number", minimum: 0, maximum: 1 },
  },
} as const;
const errorSchema = {
  type: "object",
  required: ["status", "message"],
  properties: { event: { const: "error" }, status: { type: "string" }, message: { type: "string" } },
} as const;

interface RawProgress {
  step: number;
  loss: number;
  elapsed: number;
  tokens_per_second: number;
  progress: number;
}

const ajv = new Ajv({ strict: true, allErrors: true, allowUnionTypes: true });
const isResult = ajv.compile<TrainerResult>(resultSchema);
const isProgress = ajv.compile<RawProgress>(progressSchema);
const isError = ajv.compile<{ status: string; message: string }>(errorSchema);

/** Validate a parsed result record; returns the typed result (contract fields only) or the errors. */
export function parseResult(value: unknown): { result: TrainerResult } | { error: string } {
  if (!isResult(value)) return { error: ajv.errorsText(isResult.errors) };
  const r = value;
  return {
    result: {
      val_bpb: r.val_bpb,
      training_seconds: r.training_seconds,
      total_seconds: r.total_seconds,
      warmup_seconds: r.warmup_seconds,
      num_steps: r.num_steps,
      num_tokens: r.num_tokens,
      num_params: r.num_params,
      peak_memory_mb: r.peak_memory_mb,
      mfu_percent: r.mfu_percent,
      tokens_per_second: r.tokens_per_second,
      device: r.device,
      config: r.config,
    },
  };
}

let cpuFlagsCache: Set<string> | undefined;
/** This CPU's flags from /proc/cpuinfo (empty where there is none). */
export function cpuFlags(): Set<string> {
  if (cpuFlagsCache) return cpuFlagsCache;
  let flags: string[] = [];
  try {
    const line = readFileSync("/proc/cpuinfo", "utf8")
      .split("\n")
      .find((l) => l.startsWith("flags"));
    flags = line?.split(":")[1]?.trim().split(/\s+/) ?? [];
  } catch {
    // Not Linux: nothing to tune.
  }
  cpuFlagsCache = new Set(flags);
  return cpuFlagsCache;
}

/** glibc's tunable for malloc's transparent huge pages (see trainer/cpu_env.py). */
const HUGETLB = "glibc.malloc.hugetlb";

/** GLIBC_TUNABLES with malloc's huge pages on, unless the tunables choose them themselves. */
export function withHugetlb(tunables: string | undefined): string {
  if (!tunables) return `${HUGETLB}=1`;
  if (tunables.split(":").some((t) => t.split("=", 1)[0] === HUGETLB)) return tunables;
  return `${tunables}:${HUGETLB}=1`;
}

/**
 * The environment a trainer process starts with: one BLAS thread unless set, an OpenBLAS
 * core type chosen from the CPU flags (OpenBLAS misdetects some virtual CPUs as Prescott),
 * and on Linux malloc's huge pages. trainer/cpu_env.py does the same for direct runs and
 * restarts the interpreter when the environment lacks them; set here, a trial starts once.
 */
export function trainerEnv(base: Readonly<Record<string, string>>): Record<string, string> {
  const env: Record<string, string> = { ...base };
  env.OPENBLAS_NUM_THREADS ??= "1";
  if (env.OPENBLAS_CORETYPE === undefined) {
    const f = cpuFlags();
    if (["avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd"].every((x) => f.has(x))) {
      env.OPENBLAS_CORETYPE = "SkylakeX";
    } else if (f.has("avx2") && f.has("fma")) {
      env.OPENBLAS_CORETYPE = "Haswell";
    }
  }
  if (process.platform === "linux") env.GLIBC_TUNABLES = withHugetlb(env.GLIBC_TUNABLES);
  env.PYTHONPATH = env.PYTHONPATH ? `${REPO_ROOT}${path.delimiter}${env.PYTHONPATH}` : REPO_ROOT;
  env.PYTHONUNBUFFERED = "1";
  return env;
}

/** Problems with the run-level fields of a request (config problems come from validateConfig). */
export function validateRequest(request: TrialRequest): string[] {
  const errors: string[] = [];
  if (!(typeof request.budgetSeconds === "number" && Number.isFinite(request.budgetSeconds))) {
    errors.push(`budgetSeconds must be a finite number, got ${String(request.budgetSeconds)}`);
  } else if (request.budgetSeconds <= 0) {
    errors.push(`budgetSeconds must be > 0, got ${request.budgetSeconds}`);
  }
  if (request.maxSteps !== undefined && !(Number.isInteger(request.maxSteps) && request.maxSteps >= 1)) {
    errors.push(`maxSteps must be an integer >= 1, got ${String(request.maxSteps)}`);
  }
  if (!(Number.isInteger(request.seed) && request.seed >= 0)) {
    errors.push(`seed must be an integer >= 0, got ${String(request.seed)}`);
  }
  if (!["auto", "cpu", "cuda"].includes(request.device)) {
    errors.push(`device must be auto, cpu or cuda, got ${String(request.device)}`);
  }
  return errors;
}

export function outcome(
  status: TrialStatus,
  message: string,
  logPath: string,
  started: number,
  extra: { result?: TrainerResult | null; exitCode?: number | null; python?: string } = {},
): TrialOutcome {
  const found = status === "ok" ? (extra.result ?? null) : null;
  // The interpreter goes with the result, so run.db records what each trial ran on.
  const result = found && extra.python !== undefined ? { ...found, python: extra.python } : found;
  return {
    status,
    valBpb: result ? result.val_bpb : null,
    result,
    message,
    exitCode: extra.exitCode ?? null,
    durationMs: Date.now() - started,
    logPath,
    ...(extra.python !== undefined ? { python: extra.python } : {}),
  };
}

/** The trainer's arguments for a request (after the interpreter): what a trial runs. */
export function trialArgs(request: TrialRequest, options: TorchTrainerOptions = {}): string[] {
  const args = [
    ...(options.entry ?? ["-m", "trainer"]),
    "--config",
    JSON.stringify(request.config),
    "--budget",
    String(request.budgetSeconds),
    "--seed",
    String(request.seed),
    "--device",
    request.device,
  ];
  if (request.maxSteps !== undefined) args.push("--max-steps", String(request.maxSteps));
  if (request.dataDir !== undefined) args.push("--data", path.resolve(request.dataDir));
  args.push(...(options.extraArgs ?? []));
  return args;
}

/** The interpreter for a request's device; a CUDA request without one is an invalid config. */
export function trialPython(
  request: TrialRequest,
  options: TorchTrainerOptions = {},
): { python: string } | { status: TrialStatus; error: string } {
  if (options.python) return { python: options.python };
  const found = findPython("torch", process.env, request.device);
  if (found.ok) return { python: found.python };
  return { status: request.device === "cuda" ? "invalid-config" : "crashed", error: found.error };
}

function lastLine(text: string): string {
  return (
    text
      .split(/[\r\n]+/)
      .map((l) => l.trim())
      .filter(Boolean)
      .at(-1) ?? ""
  );
}

/** What a trial printed on stdout, record by record: progress goes on at once, the rest is kept. */
class TrialRecords {
  result: TrainerResult | null = null;
  resultError: string | null = null;
  errorRecord: { status: string; message: string } | null = null;
  garbage = 0;
  progressed = false;
  private readonly onProgress: TrialRequest["onProgress"];
  private readonly onFirstProgress: () => void;

  constructor(onProgress: TrialRequest["onProgress"], onFirstProgress: () => void) {
    this.onProgress = onProgress;
    this.onFirstProgress = onFirstProgress;
  }

  line(line: string): void {
    const text = line.trim();
    if (!text.startsWith("{")) return; // the summary block and other prose
    let record: unknown;
    try {
      record = JSON.parse(text);
    } catch {
      this.garbage++;
      return;
    }
    const event = (record as { event?: unknown }).event;
    if (event === "progress") this.progress(record);
    else if (event === "result") {
      const parsed = parseResult(record);
      if ("result" in parsed) this.result = parsed.result;
      else this.resultError = parsed.error;
    } else if (event === "error") {
      if (isError(record)) this.errorRecord = record;
    } else if (event !== "start") this.garbage++;
  }

  private progress(record: unknown): void {
    if (!this.progressed) this.onFirstProgress();
    this.progressed = true;
    if (!isProgress(record)) {
      this.garbage++;
      return;
    }
    const p: TrainerProgress = {
      step: record.step,
      loss: record.loss,
      elapsed: record.elapsed,
      tokensPerSecond: record.tokens_per_second,
      progress: record.progress,
    };
    try {
      this.onProgress?.(p);
    } catch {
      // A failing progress callback must not end the trial.
    }
  }
}

/** Runs trials of the project's Python trainer. */
export class TorchTrainer implements Trainer {
  readonly options: TorchTrainerOptions;

  constructor(options: TorchTrainerOptions = {}) {
    this.options = options;
  }

  async run(request: TrialRequest): Promise<TrialOutcome> {
    const started = Date.now();
    mkdirSync(request.workDir, { recursive: true });
    const logPath = path.join(request.workDir, "trainer.log");
    const refuse = (status: TrialStatus, message: string) => {
      writeFileSync(logPath, `${message}\n`);
      return outcome(status, message, logPath, started);
    };
    const errors = [...validateConfig(request.config), ...validateRequest(request)];
    if (errors.length) return refuse("invalid-config", `invalid config: ${errors.join("; ")}`);
    const chosen = trialPython(request, this.options);
    if ("error" in chosen) return refuse(chosen.status, chosen.error);
    const python = chosen.python;
    const args = trialArgs(request, this.options);
    const factor = this.options.timeoutFactor ?? 1.5;
    const grace = this.options.graceSeconds ?? 120;
    const startup = this.options.startupSeconds ?? 600;
    const timeoutMs = Math.round((request.budgetSeconds * factor + grace) * 1000);
    // Until the first progress record the start's allowance runs; from it, the budget's.
    const deadline = new Deadline();
    const records = new TrialRecords(request.onProgress, () => deadline.restart(timeoutMs));
    const proc = await runProcess({
      command: python,
      args,
      cwd: request.workDir,
      env: trainerEnv(
        childEnv(process.env, {
          allow: this.options.envAllow ?? [],
          secret: this.options.secretEnv ?? [],
          set: { ...this.options.env, ...request.env },
        }),
      ),
      logPath,
      timeoutMs: startup * 1000,
      deadline,
      ...(request.signal ? { signal: request.signal } : {}),
      onLine: (line, stream) => {
        if (stream === "stdout") records.line(line);
      },
    });
    const { result, resultError, errorRecord, garbage, progressed } = records;
    const at = { exitCode: proc.exitCode, python };
    const seconds = (timeoutMs / 1000).toFixed(0);
    if (proc.aborted) return outcome("crashed", "aborted", logPath, started, at);
    if (proc.timedOut) {
      const why = progressed
        ? `killed after ${seconds} s from its first progress record (budget ${request.budgetSeconds} s × ${factor} + ${grace} s grace)`
        : `killed after ${startup} s without a progress record (the allowance for reading data, building the model and compiling)`;
      return outcome("timeout", why, logPath, started, at);
    }
    if (proc.spawnError)
      return outcome("crashed", `could not start ${python}: ${proc.spawnError}`, logPath, started, at);
    const reported = errorRecord?.message;
    const why = reported ?? (lastLine(proc.stderrTail) || "no message");
    if (proc.exitCode === 0) {
      if (result) return outcome("ok", "ok", logPath, started, { ...at, result });
      const detail = resultError
        ? `an invalid result record (${resultError})`
        : `no result record${garbage ? ` (${garbage} unparseable JSON-like lines)` : ""}`;
      return outcome("crashed", `trainer exited 0 with ${detail}`, logPath, started, at);
    }
    if (proc.exitCode === null) {
      const hint = proc.signal === "SIGKILL" ? " (possibly the kernel's out-of-memory killer)" : "";
      return outcome(
        "crashed",
        `trainer killed by ${proc.signal ?? "a signal"}${hint}`,
        logPath,
        started,
        at,
      );
    }
    const status = EXIT_CODES[proc.exitCode] ?? "crashed";
    const message = status === "crashed" ? `trainer exited ${proc.exitCode}: ${why}` : why;
    return outcome(status, message, logPath, started, at);
  }
}
