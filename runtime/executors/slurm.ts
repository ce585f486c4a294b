// The Slurm executor: each trial is one Slurm job (sbatch of a generated script that runs
// runtime/executors/slurm-job.ts on the node). The job is submitted held, its id stored by the
// loop, then released; squeue/scontrol follow it; scancel ends it at its deadline or when the
// run stops. The run folder must be on a filesystem the nodes share (checked at the start).
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import type { TrialStatus } from "../../mechanism-api/index.d.ts";
import { childEnv } from "../../trainer/child-env.ts";
import type { TrialOutcome } from "../../trainer/types.ts";
import type { ExecutorConfig, ResolvedRunConfig } from "../config.ts";
import type { JobRow } from "../store.ts";
import { type JobFile, OUTCOME_FILE, STARTED_FILE, writeWhole } from "./job-files.ts";
import { isActive, jobState, refusal, slurm } from "./slurm-commands.ts";
import { type Executor, ExecutorError, type ExecutorHooks, type ExecutorTrial } from "./types.ts";

type SlurmConfig = Extract<ExecutorConfig, { kind: "slurm" }>;

const JOB_MAIN = path.join(import.meta.dirname, "slurm-job.ts");
const DEFAULT_GRACE_SECONDS = 720; // the trainer's start allowance (600 s) and its grace (120 s)

export class SlurmExecutor implements Executor {
  readonly kind = "slurm";
  private readonly run_: ResolvedRunConfig;
  private readonly s: SlurmConfig;
  /** Set by prepare(): a short hash of the run folder, in every job name. */
  private runKey = "run";

  constructor(run: ResolvedRunConfig, settings: SlurmConfig) {
    this.run_ = run;
    this.s = settings;
  }

  /** Seconds from a job's start to its cancellation. */
  deadlineSeconds(): number {
    return (
      this.run_.budgetSeconds * (this.s.timeoutFactor ?? 1.5) + (this.s.graceSeconds ?? DEFAULT_GRACE_SECONDS)
    );
  }

  /** The sbatch options every trial's job gets: resources from the config, the time limit. */
  resourceArgs(): string[] {
    const s = this.s;
    const minutes = Math.ceil(this.deadlineSeconds() / 60) + 1; // Slurm's limit backs ours up
    return [
      `--time=${minutes}`,
      "--nodes=1",
      "--ntasks=1",
      ...(s.partition ? [`--partition=${s.partition}`] : []),
      ...(s.account ? [`--account=${s.account}`] : []),
      ...(s.qos ? [`--qos=${s.qos}`] : []),
      ...(s.gres ? [`--gres=${s.gres}`] : []),
      ...(s.gpus ? [`--gpus=${s.gpus}`] : []),
      ...(s.cpusPerTask ? [`--cpus-per-task=${s.cpusPerTask}`] : []),
      ...(s.mem ? [`--mem=${s.mem}`] : []),
      ...(s.extraArgs ?? []),
    ];
  }

  /** The resource request, checked by Slurm without submitting (`sbatch --test-only`). */
  async check(): Promise<void> {
    const r = await slurm("sbatch", ["--test-only", ...this.resourceArgs(), "--wrap", "true"]);
    if (r.code !== 0)
      throw new ExecutorError(
        `Slurm refuses the executor's resource request (${this.resourceArgs().join(" ")}): ${refusal(r)}; fix executor in the run config`,
      );
  }

  /** A small job reads a file the run wrote: the nodes must see the run folder. */
  async prepare(runDir: string, signal?: AbortSignal): Promise<void> {
    this.runKey = createHash("sha256").update(path.resolve(runDir)).digest("hex").slice(0, 6);
    if (this.s.checkSharedFolder === false) return;
    const probe = path.join(runDir, ".slurm-shared-check");
    const token = `${process.pid}-${Date.now()}`;
    writeFileSync(probe, token);
    rmSync(`${probe}.seen`, { force: true });
    const place = this.resourceArgs().filter((a) => /^--(partition|account|qos)=/.test(a));
    const r = await slurm("sbatch", [
      "--parsable",
      "--job-name=bilevel-shared-check",
      "--time=1",
      "--output=/dev/null",
      "--export=NONE",
      ...place,
      "--wrap",
      `cp '${probe}' '${probe}.seen'`,
    ]);
    if (r.code !== 0) throw new ExecutorError(`Slurm refused the shared-folder check job: ${refusal(r)}`);
    const jobId = parseJobId(r.stdout);
    while (!signal?.aborted) {
      const seen = existsSync(`${probe}.seen`) && readFileSync(`${probe}.seen`, "utf8") === token;
      if (seen) return;
      if (!isActive(await jobState(jobId)) && !existsSync(`${probe}.seen`))
        throw new ExecutorError(
          `the Slurm nodes do not see the run folder ${runDir} (job ${jobId} could not copy a file there): put the run on a filesystem the nodes share (--out), or set executor.checkSharedFolder false if it is shared`,
        );
      await sleep(this.pollMs());
    }
  }

  async run(trial: ExecutorTrial, hooks: ExecutorHooks): Promise<TrialOutcome> {
    const dir = trial.request.workDir;
    mkdirSync(dir, { recursive: true });
    const script = this.writeJob(trial);
    for (const f of [STARTED_FILE, OUTCOME_FILE]) rmSync(path.join(dir, f), { force: true });
    await this.cancelOrphans(trial.trialId);
    const r = await slurm("sbatch", ["--parsable", "--hold", script]);
    if (r.code !== 0)
      throw new ExecutorError(`Slurm refused the job of trial #${trial.trialId}: ${refusal(r)}`);
    const jobId = parseJobId(r.stdout);
    hooks.submitted(jobId); // stored before the job can start
    const released = await slurm("scontrol", ["release", jobId]);
    if (released.code !== 0)
      throw new ExecutorError(`could not release Slurm job ${jobId}: ${refusal(released)}`);
    return this.follow(jobId, trial, hooks);
  }

  reattach(job: JobRow, trial: ExecutorTrial, hooks: ExecutorHooks): Promise<TrialOutcome> | null {
    if (job.executor !== "slurm" || job.jobId === null) return null;
    const jobId = job.jobId;
    return (async () => {
      const state = await jobState(jobId);
      // Still queued or running, or ended with its outcome written: follow it; else run it again.
      if (isActive(state) || existsSync(path.join(trial.request.workDir, OUTCOME_FILE))) {
        // A run killed between storing the id and the release left it held.
        if (state === "PENDING") await slurm("scontrol", ["release", jobId]);
        return this.follow(jobId, trial, hooks);
      }
      return this.run(trial, hooks);
    })();
  }

  /** This run's job name for a trial: the run folder's hash keeps two runs of one name apart. */
  private jobName(trialId: number): string {
    return `bilevel-${this.run_.name}-${this.runKey}-${trialId}`;
  }

  /** Jobs of this trial that a killed run submitted but never stored (held): cancelled before a new one. */
  private async cancelOrphans(trialId: number): Promise<void> {
    const q = await slurm("squeue", ["-h", "--name", this.jobName(trialId), "-o", "%i"]);
    const ids = q.code === 0 ? q.stdout.split("\n").filter((l) => /^\d+$/.test(l.trim())) : [];
    for (const id of ids) await slurm("scancel", [id.trim()]);
  }

  /** Poll the job until its outcome is written or it ends; cancel it at its deadline or on abort. */
  private async follow(jobId: string, trial: ExecutorTrial, hooks: ExecutorHooks): Promise<TrialOutcome> {
    const dir = trial.request.workDir;
    const began = Date.now();
    let startedMs: number | null = null;
    for (;;) {
      const outcome = readJson<TrialOutcome>(path.join(dir, OUTCOME_FILE));
      if (outcome) return outcome;
      if (trial.request.signal?.aborted) return this.cancel(jobId, "crashed", "aborted", began);
      if (startedMs === null) {
        startedMs = readJson<{ atMs: number }>(path.join(dir, STARTED_FILE))?.atMs ?? null;
        if (startedMs !== null) hooks.started(startedMs);
      }
      if (startedMs !== null && Date.now() - startedMs > this.deadlineSeconds() * 1000)
        return this.cancel(jobId, "timeout", this.deadlineMessage(jobId), began);
      const state = await jobState(jobId);
      if (!isActive(state)) {
        // The outcome is renamed into place before the job ends: read it once more.
        const last = readJson<TrialOutcome>(path.join(dir, OUTCOME_FILE));
        return last ?? this.lost(jobId, state, dir, began);
      }
      await sleep(this.pollMs());
    }
  }

  /** scancel, then wait until the job has left the node. */
  private async cancel(
    jobId: string,
    status: TrialStatus,
    message: string,
    began: number,
  ): Promise<TrialOutcome> {
    await slurm("scancel", [jobId]);
    // COMPLETING still holds the node: wait until Slurm says the job is gone.
    while (isActive(await jobState(jobId))) await sleep(Math.min(this.pollMs(), 500));
    return {
      status,
      valBpb: null,
      result: null,
      message,
      exitCode: null,
      durationMs: Date.now() - began,
      logPath: "",
    };
  }

  private deadlineMessage(jobId: string): string {
    const s = this.s;
    return `Slurm job ${jobId} cancelled ${this.deadlineSeconds()} s after it started (budget ${this.run_.budgetSeconds} s × ${s.timeoutFactor ?? 1.5} + ${s.graceSeconds ?? DEFAULT_GRACE_SECONDS} s grace)`;
  }

  /** A job that ended without writing its outcome (killed, failed on the node, out of memory). */
  private lost(jobId: string, state: string | null, dir: string, began: number): TrialOutcome {
    const status: TrialStatus =
      state === "TIMEOUT" ? "timeout" : state === "OUT_OF_MEMORY" ? "oom" : "crashed";
    const log = path.join(dir, `slurm-${jobId}.out`);
    return {
      status,
      valBpb: null,
      result: null,
      message: `Slurm job ${jobId} ended ${state ?? "(forgotten by Slurm)"} without a result; its log: ${log}`,
      exitCode: null,
      durationMs: Date.now() - began,
      logPath: log,
    };
  }

  /** job.json and job.sh in the trial folder; returns the script's path. */
  private writeJob(trial: ExecutorTrial): string {
    const { signal: _signal, onProgress: _onProgress, ...request } = trial.request;
    const dir = request.workDir;
    const run = this.run_;
    const trainerEnv =
      run.trainer.kind === "python" || run.trainer.kind === "external" ? run.trainer.env : [];
    const job: JobFile = {
      config: run,
      request,
      env: childEnv(process.env, { allow: trainerEnv ?? [], secret: [run.llm.apiKeyEnv] }),
    };
    writeWhole(path.join(dir, "job.json"), job);
    const quote = (s: string) => `'${s.replaceAll("'", "'\\''")}'`;
    const lines = [
      "#!/bin/bash",
      `#SBATCH --job-name=${quote(this.jobName(trial.trialId))}`,
      `#SBATCH --output=${quote(path.join(dir, "slurm-%j.out"))}`,
      `#SBATCH --chdir=${quote(dir)}`,
      // Nothing of the run's environment (its LLM key) goes to the job; job.json has the trainer's.
      "#SBATCH --export=NONE",
      ...this.resourceArgs().map((a) => `#SBATCH ${a}`),
      `exec ${quote(process.execPath)} --no-node-snapshot --disable-warning=ExperimentalWarning ${quote(JOB_MAIN)} ${quote(path.join(dir, "job.json"))}`,
      "",
    ];
    const script = path.join(dir, "job.sh");
    writeFileSync(script, lines.join("\n"));
    return script;
  }

  private pollMs(): number {
    return (this.s.pollSeconds ?? 2) * 1000;
  }
}

/** `sbatch --parsable` prints "ID" or "ID;CLUSTER". */
function parseJobId(stdout: string): string {
  const id = stdout.trim().split(";")[0] ?? "";
  if (!/^\d+$/.test(id)) throw new ExecutorError(`sbatch printed no job id: ${stdout.trim() || "(nothing)"}`);
  return id;
}

function readJson<T>(file: string): T | null {
  try {
    return JSON.parse(readFileSync(file, "utf8")) as T;
  } catch {
    return null; // not there yet
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
