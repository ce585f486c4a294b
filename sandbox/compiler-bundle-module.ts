// node:module as the compiler's bundle sees it (compiler-blob.ts puts it in place of the builtin).
// validation.ts loads ajv through createRequire, which reads files: a snapshot cannot, and esbuild
// cannot follow it. Here ajv is imported, so it is in the bundle; and there is no compile cache, so
// validation.ts compiles its validators (the snapshot holds them compiled).
import * as ajv from "ajv";

const bundled: Readonly<Record<string, unknown>> = {
  ajv,
  // Read only as part of validation.ts's cache key, and there is no cache here.
  "ajv/package.json": { version: "bundled" },
};

function createRequire(): (id: string) => unknown {
  return (id) => {
    if (!(id in bundled)) throw new Error(`the compiler bundle has no module "${id}"`);
    return bundled[id];
  };
}

function getCompileCacheDir(): undefined {
  return undefined;
}

export default { createRequire, getCompileCacheDir };
