// The environment a subprocess starts with: an allow-list of names taken from the parent's
// environment, never the LLM key or anything that looks like a secret (docs/trainer.md,
// "What a trial sees"). Every subprocess of trainer/ is started with one of these.

/**
 * Inherited by default. An entry ending in `*` is a prefix. Why each is here:
 * PATH (python3, uv, compilers for torch.compile), HOME/USER/LOGNAME (Python's user site,
 * caches under ~, getpass for torch's compile cache folder), LANG/LC_* (text encoding),
 * TZ and TMPDIR, LD_LIBRARY_PATH (CUDA libraries in many containers), PYTHONPATH (where a
 * user's modules are), XDG_CACHE_HOME (where caches go), CUDA_* (which GPU, CUDA_HOME),
 * TORCH_*, PYTORCH_*, TORCHINDUCTOR_*, TRITON_* (allocator and compile settings), the BLAS
 * thread variables (the trainer sets OPENBLAS_NUM_THREADS=1 only when unset), GLIBC_TUNABLES
 * (the trainer adds malloc's huge pages unless it chooses them), and the
 * BILEVEL_* variables trainer/*.py reads.
 */
export const DEFAULT_ENV_ALLOW: readonly string[] = [
  "PATH",
  "HOME",
  "USER",
  "LOGNAME",
  "LANG",
  "LANGUAGE",
  "LC_*",
  "TZ",
  "TMPDIR",
  "LD_LIBRARY_PATH",
  "PYTHONPATH",
  "XDG_CACHE_HOME",
  "CUDA_*",
  "TORCH_*",
  "PYTORCH_*",
  "TORCHINDUCTOR_*",
  "TRITON_*",
  "OMP_NUM_THREADS",
  "MKL_NUM_THREADS",
  "OPENBLAS_NUM_THREADS",
  "OPENBLAS_CORETYPE",
  "GLIBC_TUNABLES",
  "BILEVEL_CACHE",
  "BILEVEL_THREADS",
  "BILEVEL_PEAK_TFLOPS",
  "BILEVEL_PYTHON",
];

/** A name that is never passed on, whatever the allow-list says. */
export const SECRET_NAME = /KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL/i;

/** What an allow-list entry may look like: a variable name, or a prefix ending in `*`. */
export const ENV_ALLOW_ENTRY = /^[A-Za-z_][A-Za-z0-9_]*\*?$/;

export interface ChildEnvOptions {
  /** Names (or `PREFIX*`) inherited in addition to DEFAULT_ENV_ALLOW. */
  readonly allow?: readonly string[];
  /** Names never passed on (e.g. the LLM key's variable), besides those matching SECRET_NAME. */
  readonly secret?: readonly string[];
  /** Values set by the caller: they override inherited ones, undefined removes one; the deny rule still wins. */
  readonly set?: Readonly<Record<string, string | undefined>>;
}

function allowed(name: string, allow: readonly string[]): boolean {
  return allow.some((entry) => (entry.endsWith("*") ? name.startsWith(entry.slice(0, -1)) : name === entry));
}

/** The environment for a child process, built from `parent` (normally process.env). */
export function childEnv(
  parent: Readonly<Record<string, string | undefined>>,
  options: ChildEnvOptions = {},
): Record<string, string> {
  const allow = [...DEFAULT_ENV_ALLOW, ...(options.allow ?? [])];
  const secret = new Set(options.secret ?? []);
  const denied = (name: string) => secret.has(name) || SECRET_NAME.test(name);
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(parent)) {
    if (value !== undefined && allowed(name, allow) && !denied(name)) env[name] = value;
  }
  for (const [name, value] of Object.entries(options.set ?? {})) {
    if (value === undefined) delete env[name];
    else if (!denied(name)) env[name] = value;
  }
  return env;
}
