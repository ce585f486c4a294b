// What the sandbox child answers to one validated request. Kept apart from child.ts (which owns
// the process's pipes) so that the mapping of failures to answers can be tested on its own.
import type { CompileResult } from "./compiler.ts";
import { InvalidRequest, type Request, type Response } from "./protocol.ts";
import type { Runner } from "./runner.ts";
import { sanitize } from "./sanitize.ts";

export type RequestRunner = Pick<Runner, "load" | "call" | "unload">;

export async function handleRequest(runner: RequestRunner, request: Request): Promise<Response> {
  try {
    switch (request.op) {
      case "compile":
        return { id: request.id, op: "compile", result: await compile(request.source) };
      case "load":
        return {
          id: request.id,
          op: "load",
          error: await runner.load(request.mechanismId, request.mechanism),
        };
      case "call":
        return { id: request.id, op: "call", outcome: await runner.call(request) };
      case "unload":
        await runner.unload(request.mechanismId);
        return { id: request.id, op: "unload" };
    }
  } catch (e) {
    return failedRequest(request, e);
  }
}

/**
 * "invalid" (the caller's mistake, never blamed on a mechanism) only for an InvalidRequest, which
 * the runner throws while checking a request's data before any guest code runs. Anything else may
 * have followed guest code, so a call or a load fails as the mechanism's fault.
 */
export function failedRequest(request: Request, e: unknown): Response {
  if (e instanceof InvalidRequest) return { id: request.id, op: "invalid", message: sanitize(e.message) };
  const message = sanitize(`the sandbox failed while handling the ${request.op}: ${describe(e)}`);
  switch (request.op) {
    case "call":
      return {
        id: request.id,
        op: "call",
        outcome: { ok: false, error: { stage: request.hook, code: "crashed", message } },
      };
    case "load":
      return { id: request.id, op: "load", error: { stage: "load", code: "crashed", message } };
    default:
      return { id: request.id, op: "invalid", message };
  }
}

async function compile(source: string): Promise<CompileResult> {
  try {
    // Loaded on first use: a child that only runs hooks starts without the compiler.
    const { compileMechanism } = await import("./compiler.ts");
    return compileMechanism(source);
  } catch (e) {
    // Deep nesting and similar can overflow the compiler's stack: a clear error, not a crash.
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

function describe(e: unknown): string {
  try {
    return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
  } catch {
    return "unknown error";
  }
}
