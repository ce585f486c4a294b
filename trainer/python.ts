// Finding a Python that can import torch: $BILEVEL_PYTHON first, then /usr/bin/python3
// (Debian's python3-torch), then python3 on PATH (which may be a pyenv shim without torch).
import { spawnSync } from "node:child_process";
import { childEnv } from "./child-env.ts";

export type PythonLookup = { ok: true; python: string } | { ok: false; error: string };

function hasModule(python: string, module: string, env: NodeJS.ProcessEnv): boolean {
  const r = spawnSync(python, ["-c", `import ${module}`], {
    stdio: "ignore",
    timeout: 60_000,
    env: childEnv(env),
  });
  return r.status === 0;
}

const cache = new Map<string, PythonLookup>();

/** Locate a Python with `module` (default torch). Never throws; the result is cached per process. */
export function findPython(module = "torch", env: NodeJS.ProcessEnv = process.env): PythonLookup {
  const key = `${module}\0${env.BILEVEL_PYTHON ?? ""}\0${env.PATH ?? ""}`;
  const hit = cache.get(key);
  if (hit) return hit;
  let found: PythonLookup;
  const explicit = env.BILEVEL_PYTHON;
  if (explicit) {
    found = hasModule(explicit, module, env)
      ? { ok: true, python: explicit }
      : { ok: false, error: `BILEVEL_PYTHON=${explicit} cannot import ${module}` };
  } else {
    const python = ["/usr/bin/python3", "python3"].find((p) => hasModule(p, module, env));
    found = python
      ? { ok: true, python }
      : {
          ok: false,
          error:
            `no Python with ${module} found (tried /usr/bin/python3, python3): on Debian ` +
            "`apt-get install python3-torch libopenblas0-pthread`, or set BILEVEL_PYTHON",
        };
  }
  cache.set(key, found);
  return found;
}

const cudaCache = new Map<string, boolean>();

/** Whether the Python that trials would use sees a CUDA device (false when there is no such Python). */
export function cudaAvailable(env: NodeJS.ProcessEnv = process.env): boolean {
  const found = findPython("torch", env);
  if (!found.ok) return false;
  const hit = cudaCache.get(found.python);
  if (hit !== undefined) return hit;
  const r = spawnSync(
    found.python,
    ["-c", "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"],
    {
      stdio: "ignore",
      timeout: 60_000,
    },
  );
  cudaCache.set(found.python, r.status === 0);
  return r.status === 0;
}
