// How the compiler process (compiler-server.ts) starts. Fast: from a V8 startup snapshot that holds
// TypeScript loaded and the lib files parsed and bound (loading those is most of a cold compile's
// time). The snapshot is built once into the cache folder, from an esbuild bundle of
// compiler-server.ts (a snapshot's entry must be one script that needs only Node's builtins), and
// named by a key of Node's version, this checkout and the bundle's inputs, so any change rebuilds
// it. Slow but always possible: a plain process running compiler-server.ts itself. Building never
// fails a caller: any problem (read-only folder, no esbuild, another Node) means the plain start.
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rename, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { pathToFileURL } from "node:url";
import type { Plugin } from "esbuild";

const ROOT = path.resolve(import.meta.dirname, "..");
const SERVER = path.join(import.meta.dirname, "compiler-server.ts");
/** The bundle's stand-in for node:module (see the file). */
const MODULE_STAND_IN = path.join(import.meta.dirname, "compiler-bundle-module.ts");
/** The checkout's files the last bundle was made of (relative to ROOT), one per line. */
const INPUTS_FILE = "inputs.txt";
/** Files the blob depends on besides the bundle's: read while it is built, and how it is built. */
const BUILD_INPUTS = [
  "package-lock.json",
  "tsconfig.json",
  "mechanism-api/index.d.ts",
  "sandbox/compiler-blob.ts",
];
const BUILD_TIMEOUT_MS = 120_000;

/** The node arguments that start the compiler process (before Node's own flags are added). */
export interface CompilerStart {
  readonly args: readonly string[];
  /** The blob it starts from; null: a plain start. */
  readonly blob: string | null;
}

/** The plain start: Node runs compiler-server.ts (its TypeScript is stripped as it loads). */
export const PLAIN_START: CompilerStart = {
  args: ["--disable-warning=ExperimentalWarning", SERVER, "--serve"],
  blob: null,
};

/**
 * Where the blob is kept: $BILEVEL_CACHE/compiler/<checkout> (default
 * <checkout>/.bilevel/cache/compiler/<checkout>). One folder per checkout, because a blob holds its
 * checkout's code: checkouts sharing a BILEVEL_CACHE then keep their own and do not remove each
 * other's.
 */
export function compilerCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  const checkout = createHash("sha256").update(ROOT).digest("hex").slice(0, 16);
  return path.join(env.BILEVEL_CACHE ?? path.join(ROOT, ".bilevel", "cache"), "compiler", checkout);
}

/** The snapshot start for `blob`. */
export function snapshotStart(blob: string): CompilerStart {
  return { args: ["--snapshot-blob", blob], blob };
}

/** The blob for the current sources: there; known not to start (a fresh build failed to); not built. */
export type BlobLookup =
  | { readonly kind: "ready"; readonly blob: string }
  | { readonly kind: "broken" | "absent" };

/**
 * The blob the current sources need in `dir`. Its name is a key of Node's version, the checkout,
 * BUILD_INPUTS and the checkout files of the last bundle (any change to one of those files
 * changes the key; a new import changes the file that imports).
 */
export function findBlob(dir: string): BlobLookup {
  try {
    const inputs = readFileSync(path.join(dir, INPUTS_FILE), "utf8").split("\n").filter(Boolean);
    const blob = path.join(dir, `compiler-${blobKey(inputs)}.blob`);
    if (existsSync(blob)) return { kind: "ready", blob };
    return existsSync(brokenMark(blob)) ? { kind: "broken" } : { kind: "absent" };
  } catch {
    return { kind: "absent" };
  }
}

const brokenMark = (blob: string) => blob.replace(/\.blob$/, ".broken");

function blobKey(inputs: readonly string[]): string {
  const hash = createHash("sha256").update(JSON.stringify([process.version, process.arch, ROOT]));
  for (const file of [...BUILD_INPUTS, ...inputs]) {
    hash.update(`\0${file}\0`).update(readFileSync(path.join(ROOT, file)));
  }
  return hash.digest("hex").slice(0, 32);
}

/**
 * Build the blob into `dir` (temp files, then a rename: a concurrent build or a reader never sees a
 * partial one; two builds at once both write the same thing), and remove older blobs. Returns its
 * path; throws if anything fails (the caller then starts plainly).
 */
export async function buildBlob(dir: string): Promise<string> {
  await mkdir(dir, { recursive: true });
  const work = await mkdtemp(path.join(dir, "build-"));
  try {
    const { code, inputs } = await bundle();
    // The key of the sources as bundled: if one changes while the snapshot is built (an edit, a
    // checkout), the blob would hold the old code under the new key, so it is not kept.
    const key = blobKey(inputs);
    const entry = path.join(work, "compiler.cjs");
    await writeFile(entry, code);
    const partial = path.join(work, "compiler.blob");
    await run(process.execPath, ["--snapshot-blob", partial, "--build-snapshot", entry], work);
    if (blobKey(inputs) !== key)
      throw new Error("the compiler's sources changed while its snapshot was built");
    const blob = path.join(dir, `compiler-${key}.blob`);
    await rename(partial, blob);
    const list = path.join(work, INPUTS_FILE);
    await writeFile(list, `${inputs.join("\n")}\n`);
    await rename(list, path.join(dir, INPUTS_FILE));
    removeOtherBlobs(dir, blob);
    return blob;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/**
 * Remove `blob`, which would not start. `fresh` (this process just built it): mark its key broken, so
 * that later starts go plain instead of building again (another Node that runs no snapshot, say);
 * otherwise (damaged on disk, say) the next start builds it again.
 */
export function discardBlob(blob: string, fresh: boolean): void {
  try {
    rmSync(blob, { force: true });
    if (fresh) writeFileSync(brokenMark(blob), "");
  } catch {
    // A read-only folder: nothing is built there either.
  }
}

/** Remove the blobs (and marks) of other sources, and what builds that were killed left behind. */
function removeOtherBlobs(dir: string, keep: string): void {
  for (const name of readdirSync(dir)) {
    const file = path.join(dir, name);
    try {
      const stale = name.startsWith("build-") && Date.now() - statSync(file).mtimeMs > 2 * BUILD_TIMEOUT_MS;
      if ((name.startsWith("compiler-") && file !== keep) || stale)
        rmSync(file, { recursive: true, force: true });
    } catch {
      // Removed meanwhile by a concurrent build.
    }
  }
}

/** compiler-server.ts and everything it imports as one script, and the checkout's files in it. */
async function bundle(): Promise<{ code: string; inputs: string[] }> {
  const esbuild = await import("esbuild");
  const result = await esbuild.build({
    entryPoints: [SERVER],
    bundle: true,
    platform: "node",
    // A script, not a module: the snapshot builder runs it as such (no `module` or `require` of files).
    format: "iife",
    target: `node${process.versions.node.split(".")[0]}`,
    write: false,
    metafile: true,
    logLevel: "silent",
    plugins: [checkoutSources()],
  });
  const code = result.outputFiles[0]?.text;
  if (code === undefined) throw new Error("esbuild wrote no bundle");
  const inputs = Object.keys(result.metafile.inputs)
    .map((p) => path.relative(ROOT, path.resolve(ROOT, p)))
    .filter((p) => !p.startsWith("..") && !p.split(path.sep).includes("node_modules"))
    .sort();
  return { code, inputs };
}

/**
 * The checkout's own files in the bundle: `import.meta.dirname` and `import.meta.url` become each
 * file's own (a script has no import.meta), and node:module is the stand-in that gives validation.ts
 * the bundled ajv (its createRequire would load files, which a snapshot cannot).
 */
function checkoutSources(): Plugin {
  const own = (file: string) => file.startsWith(ROOT) && !file.includes(`${path.sep}node_modules${path.sep}`);
  return {
    name: "bilevel-checkout-sources",
    setup(build) {
      build.onResolve({ filter: /^node:module$/ }, (args) =>
        own(args.importer) ? { path: MODULE_STAND_IN } : undefined,
      );
      build.onLoad({ filter: /\.ts$/ }, async (args) => {
        if (!own(args.path)) return undefined;
        const text = await readFile(args.path, "utf8");
        const contents = text
          .replaceAll("import.meta.dirname", JSON.stringify(path.dirname(args.path)))
          .replaceAll("import.meta.url", JSON.stringify(pathToFileURL(args.path).href));
        return { contents, loader: "ts" };
      });
    },
  };
}

function run(file: string, args: readonly string[], cwd: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { cwd, timeout: BUILD_TIMEOUT_MS, killSignal: "SIGKILL" }, (error, _out, stderr) =>
      error ? reject(new Error(`${error.message}\n${stderr.slice(-2000)}`)) : resolve(),
    );
  });
}

// `node sandbox/compiler-blob.ts --prebuild`: the launcher builds the blob after installing the
// dependencies, so that a user's first `mechanism check` starts fast too.
if (process.argv[1] === import.meta.filename && process.argv.includes("--prebuild")) {
  const dir = compilerCacheDir();
  if (findBlob(dir).kind === "absent") {
    await buildBlob(dir).catch((e: unknown) => {
      process.stderr.write(
        `bilevel: the compiler snapshot was not built (${String(e).split("\n")[0]}); checks start without it\n`,
      );
    });
  }
}
