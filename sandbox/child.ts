// The sandbox child process: everything untrusted happens here (the TypeScript compiler on
// mechanism source, and the isolates). The host spawns it with --no-node-snapshot, a heap cap and
// an RSS watchdog, and SIGKILLs it on any missed deadline. Requests arrive one JSON line at a time
// on stdin; responses leave on fd 3. Requests are handled strictly one after another.
import net from "node:net";
import type { CompileResult } from "./compiler.ts";
import { DEFAULT_POLICY, defaultPolicy } from "./policy.ts";
import {
  InvalidRequest,
  isRequest,
  LineReader,
  MAX_LINE_CHARS,
  type Request,
  type Response,
} from "./protocol.ts";
import { Runner, sanitize } from "./runner.ts";
import type { SandboxPolicy } from "./types.ts";

function readPolicy(): SandboxPolicy {
  const raw = process.env.BILEVEL_SANDBOX_POLICY;
  if (!raw) return DEFAULT_POLICY;
  return defaultPolicy(JSON.parse(raw) as Partial<SandboxPolicy>);
}

const out = new net.Socket({ fd: 3, readable: false, writable: true });
const send = (response: Response): void => {
  out.write(`${JSON.stringify(response)}\n`);
};

const runner = new Runner(readPolicy());
let queue: Promise<void> = Promise.resolve();

async function handle(request: Request): Promise<void> {
  switch (request.op) {
    case "compile": {
      let result: CompileResult;
      try {
        // Loaded on first use: a child that only runs hooks starts without the compiler.
        const { compileMechanism } = await import("./compiler.ts");
        result = compileMechanism(request.source);
      } catch (e) {
        // Deep nesting and similar can overflow the compiler's stack: a clear error, not a crash.
        const message =
          e instanceof RangeError ? "the source is too deeply nested to compile" : "the compiler failed";
        result = {
          ok: false,
          errors: [{ stage: "compile", code: "syntax-error", message: sanitize(`${message}: ${String(e)}`) }],
          compileMs: 0,
          lintMs: 0,
        };
      }
      send({ id: request.id, op: "compile", result });
      return;
    }
    case "load":
      send({ id: request.id, op: "load", error: await runner.load(request.mechanismId, request.mechanism) });
      return;
    case "call":
      send({ id: request.id, op: "call", outcome: await runner.call(request) });
      return;
    case "unload":
      await runner.unload(request.mechanismId);
      send({ id: request.id, op: "unload" });
      return;
  }
}

function onLine(line: string): void {
  let message: unknown;
  try {
    message = JSON.parse(line);
  } catch {
    send({ id: 0, op: "invalid", message: "request is not JSON" });
    return;
  }
  if (!isRequest(message)) {
    const id = (message as { id?: unknown } | null)?.id;
    send({
      id: Number.isInteger(id) && (id as number) >= 0 ? (id as number) : 0,
      op: "invalid",
      message: `invalid request: ${isRequest.explain()}`,
    });
    return;
  }
  const request = message;
  queue = queue.then(() =>
    handle(request).catch((e: unknown) => {
      const message = e instanceof InvalidRequest ? e.message : `request failed: ${String(e)}`;
      send({ id: request.id, op: "invalid", message: sanitize(message) });
    }),
  );
}

const reader = new LineReader(MAX_LINE_CHARS, onLine, () => {
  process.stderr.write("bilevel sandbox child: request line too long\n");
  process.exit(70);
});
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk: string) => reader.push(chunk));
process.stdin.on("end", () => {
  runner.disposeAll();
  process.exit(0);
});
send({ id: 0, op: "ready" });
