// The Slurm cluster the tests use: the one scripts/slurm-cluster.sh started (SLURM_CONF). Under
// the launcher (`./bilevel test` sets BILEVEL_SLURM_REQUIRED=1) a missing cluster fails the tests;
// a developer running jest without one sees them skipped, with the reason.
import { spawnSync } from "node:child_process";

export function slurmAvailable(): { ok: true } | { ok: false; why: string } {
  const ping = spawnSync("scontrol", ["ping"], { encoding: "utf8" });
  if (ping.error) return { ok: false, why: "scontrol is not installed" };
  if (!/\bUP\b/.test(ping.stdout))
    return { ok: false, why: `no Slurm controller answers (${ping.stdout.trim() || ping.stderr.trim()})` };
  return { ok: true };
}

/** `test`, or `test.skip` with a visible message when there is no cluster and none is required. */
export function slurmTest(): jest.It {
  const found = slurmAvailable();
  if (found.ok) return test;
  const message = `no Slurm cluster: ${found.why} (start one: scripts/slurm-cluster.sh start DIR, then export SLURM_CONF=DIR/slurm.conf)`;
  if (process.env.BILEVEL_SLURM_REQUIRED === "1")
    throw new Error(`the Slurm tests are required here, but ${message}`);
  process.stderr.write(`SKIPPED: the Slurm tests: ${message}\n`);
  return test.skip;
}

/** Our jobs Slurm knows as queued or running: name and state. */
export function queuedJobs(namePrefix: string): { name: string; state: string }[] {
  const q = spawnSync("squeue", ["-h", "-o", "%j %T"], { encoding: "utf8" });
  return q.stdout
    .split("\n")
    .map((l) => l.trim().split(/\s+/))
    .filter((p): p is [string, string] => p.length === 2 && (p[0] ?? "").startsWith(namePrefix))
    .map(([name, state]) => ({ name, state }));
}
