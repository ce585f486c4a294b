// What a Slurm job runs on its node: one trial of the run's own trainer, described by the job's
// job.json in the trial folder (on the filesystem the nodes share). It writes started.json when it
// starts and outcome.json (whole, by rename) when the trial ends; the run process reads both.
// SIGTERM (scancel, the time limit) aborts the trial, which kills the trainer's process tree.
import { readFileSync } from "node:fs";
import { hostname } from "node:os";
import path from "node:path";
import { createTrainer } from "../trainers.ts";
import { type JobFile, OUTCOME_FILE, STARTED_FILE, writeWhole } from "./job-files.ts";

async function main(file: string): Promise<void> {
  const job = JSON.parse(readFileSync(file, "utf8")) as JobFile;
  const dir = job.request.workDir;
  writeWhole(path.join(dir, STARTED_FILE), {
    atMs: Date.now(),
    host: hostname(),
    jobId: process.env.SLURM_JOB_ID ?? null,
  });
  for (const [name, value] of Object.entries(job.env)) process.env[name] ??= value;
  const controller = new AbortController();
  process.on("SIGTERM", () => controller.abort());
  const trainer = createTrainer(job.config, job.config.searchSpace);
  const outcome = await trainer.run({ ...job.request, signal: controller.signal });
  // A cancelled job has no outcome: the run decides (a stop leaves it for a resume to run again).
  if (controller.signal.aborted) process.exit(143);
  writeWhole(path.join(dir, OUTCOME_FILE), outcome);
}

const file = process.argv[2];
if (!file) {
  process.stderr.write("usage: slurm-job.ts JOB_JSON\n");
  process.exit(2);
}
main(file).catch((error: unknown) => {
  process.stderr.write(
    `slurm-job: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  process.exit(1);
});
