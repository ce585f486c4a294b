// Finding the trainer's Python. The lookup itself is trainer/find_python.sh, shared with
// trainer/gpu_check.sh so the check and the trials can never disagree: $BILEVEL_PYTHON wins;
// for cuda (and auto) the first interpreter whose torch sees a CUDA device; for cpu Debian's
// /usr/bin/python3 first.
import { spawnSync } from "node:child_process";
import path from "node:path";
import { childEnv } from "./child-env.ts";

export const FIND_PYTHON = path.join(import.meta.dirname, "find_python.sh");

export type LookupDevice = "cpu" | "cuda" | "auto";

/** The interpreter chosen, and (module torch) what its torch is. */
export interface PythonInfo {
  readonly python: string;
  /** torch.__version__, or null when the lookup was for another module. */
  readonly torch: string | null;
  /** Whether its torch sees a CUDA device (false for other modules). */
  readonly cuda: boolean;
}

export type PythonLookup = ({ ok: true } & PythonInfo) | { ok: false; error: string };

const cache = new Map<string, PythonLookup>();

/**
 * Locate a Python with `module` (default torch) for `device` (default cpu). Never throws; the
 * result is cached per process (each candidate imports torch, about a second).
 */
export function findPython(
  module = "torch",
  env: NodeJS.ProcessEnv = process.env,
  device: LookupDevice = "cpu",
): PythonLookup {
  const key = [module, device, env.BILEVEL_PYTHON ?? "", env.PATH ?? ""].join("\0");
  const hit = cache.get(key);
  if (hit) return hit;
  const r = spawnSync("sh", [FIND_PYTHON, "--module", module, device], {
    encoding: "utf8",
    timeout: 180_000,
    env: childEnv(env),
  });
  let found: PythonLookup;
  const line = (r.stdout ?? "").trim().split("\n").at(-1) ?? "";
  if (r.status === 0 && line !== "") {
    const [python = "", version, kind] = line.split("\t");
    found = { ok: true, python, torch: version ?? null, cuda: kind === "cuda" };
  } else {
    const why = (r.stderr ?? "").trim() || (r.error ? r.error.message : `find_python.sh exited ${r.status}`);
    found = { ok: false, error: why };
  }
  cache.set(key, found);
  return found;
}

/** Whether the Python that CUDA trials would use sees a CUDA device (false when there is none). */
export function cudaAvailable(env: NodeJS.ProcessEnv = process.env): boolean {
  const found = findPython("torch", env, "cuda");
  return found.ok && found.cuda;
}
