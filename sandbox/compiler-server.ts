// The compiler process: the TypeScript compiler on mechanism source, apart from the isolates. One
// JSON request per line on stdin, one answer per line on stdout, strictly in order, {"ready":true}
// first. {"id":1,"source":"..."} compiles: {"id":1,"result":CompileResult,"mappings":"..."} (the
// source map's, when it compiled). {"id":1,"source":"...","js":"..."} asks only for the mappings of
// that JS: {"id":1,"mappings":"..." or null}. Any other line: {"id":1 or 0,"invalid":"..."}. The
// host (compiler-process.ts) kills it on a missed deadline. Started either from a V8 startup
// snapshot, which holds this module with TypeScript loaded and the lib files parsed and bound
// (compiler-blob.ts builds it from a bundle of this file), or as a plain process running this same
// file: same code, same answers, only the start differs.
import v8 from "node:v8";
import { type CompileResult, compileMechanism, mappingsFor } from "./compiler.ts";
import { LineReader, MAX_LINE_CHARS } from "./protocol.ts";
import { sanitize } from "./sanitize.ts";

export type CompilerAnswer =
  | { readonly id: number; readonly result: CompileResult; readonly mappings?: string }
  | { readonly id: number; readonly mappings: string | null }
  | { readonly id: number; readonly invalid: string };

/** A small valid mechanism: compiled once while the snapshot is built, so lib files and checker are warm. */
const WARM_UP = `import type { Mechanism } from "bilevel/mechanism-api";
export default {
  manifest: { name: "warm-up", version: 1, hooks: ["guide"], capabilities: ["tabu"] },
  guide(ctx) { return ctx.history.length > 0 ? "keep going" : "start"; },
} satisfies Mechanism;
`;

/** compileMechanism, with the compiler's own failures (deep nesting overflows its stack) as errors. */
export function compileSafely(source: string): CompileResult {
  try {
    return compileMechanism(source);
  } catch (e) {
    const message =
      e instanceof RangeError ? "the source is too deeply nested to compile" : "the compiler failed";
    return {
      ok: false,
      errors: [{ stage: "compile", code: "syntax-error", message: sanitize(`${message}: ${String(e)}`) }],
      compileMs: 0,
      lintMs: 0,
    };
  }
}

/** The answer to one line of input. */
export function answer(line: string): CompilerAnswer {
  let request: unknown;
  try {
    request = JSON.parse(line);
  } catch {
    return { id: 0, invalid: "the request is not JSON" };
  }
  const r = request as { id?: unknown; source?: unknown; js?: unknown } | null;
  const id = typeof r?.id === "number" && Number.isSafeInteger(r.id) && r.id > 0 ? r.id : 0;
  const keys = r !== null && typeof r === "object" && !Array.isArray(r) ? Object.keys(r).sort().join() : "";
  if (id !== 0 && typeof r?.source === "string") {
    if (keys === "id,source") {
      const result = compileSafely(r.source);
      const mappings = result.ok ? safeMappings(r.source, result.mechanism.js) : null;
      return mappings === null ? { id, result } : { id, result, mappings };
    }
    if (keys === "id,js,source" && typeof r.js === "string")
      return { id, mappings: safeMappings(r.source, r.js) };
  }
  return { id, invalid: USAGE };
}

const USAGE =
  'a request is {"id": a positive integer, "source": the mechanism text} (compile it), or that and "js": its compiled JavaScript (its source map\'s mappings)';

function safeMappings(source: string, js: string): string | null {
  try {
    return mappingsFor(source, js);
  } catch {
    return null;
  }
}

function serve(): void {
  const send = (a: CompilerAnswer | { ready: true }) => process.stdout.write(`${JSON.stringify(a)}\n`);
  const reader = new LineReader(
    MAX_LINE_CHARS,
    (line) => send(answer(line)),
    () => {
      process.stderr.write("bilevel compiler: request line too long\n");
      process.exit(70);
    },
  );
  process.stdin.setEncoding("utf8");
  process.stdin.on("data", (chunk: string) => reader.push(chunk));
  process.stdin.on("end", () => process.exit(0));
  send({ ready: true });
}

if (v8.startupSnapshot?.isBuildingSnapshot()) {
  compileSafely(WARM_UP);
  v8.startupSnapshot.setDeserializeMainFunction(serve);
} else if (process.argv.includes("--serve")) {
  serve();
}
