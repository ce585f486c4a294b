// The sandbox child process: guest code runs here, in isolates (the TypeScript compiler on mechanism
// source runs in a process of its own, compiler-server.ts). The host spawns it with
// --no-node-snapshot, a heap cap and an RSS watchdog, and SIGKILLs it on any missed deadline; a
// worker thread here bounds each hook call's memory growth (memory-watchdog.ts). Requests arrive one
// JSON line at a time on stdin; responses leave on fd 3. Requests are handled strictly one after another.
import net from "node:net";
import { pathToFileURL } from "node:url";
import { warmCapabilityValidators } from "./capabilities/index.ts";
import { failedRequest, handleBatch, handleRequest } from "./child-handler.ts";
import { DEFAULT_POLICY, defaultPolicy } from "./policy.ts";
import {
  isHistory,
  isHookResult,
  isParamList,
  isRequest,
  LineReader,
  MAX_LINE_CHARS,
  type Response,
} from "./protocol.ts";
import { Runner } from "./runner.ts";
import type { ChainRuleModule, SandboxPolicy } from "./types.ts";

function readPolicy(): SandboxPolicy {
  const raw = process.env.BILEVEL_SANDBOX_POLICY;
  if (!raw) return DEFAULT_POLICY;
  return defaultPolicy(JSON.parse(raw) as Partial<SandboxPolicy>);
}

const out = new net.Socket({ fd: 3, readable: false, writable: true });
const send = (response: Response): void => {
  out.write(`${JSON.stringify(response)}\n`);
};

// The filter chain's rule, from the module the host named (its run's own; loaded on first use).
const chainRulePath = process.argv[process.argv.indexOf("--chain-rule") + 1];
let chainRule: Promise<ChainRuleModule> | undefined;
const loadChainRule =
  process.argv.includes("--chain-rule") && chainRulePath
    ? () => (chainRule ??= import(pathToFileURL(chainRulePath).href) as Promise<ChainRuleModule>)
    : undefined;

const runner = new Runner(readPolicy());
let queue: Promise<void> = Promise.resolve();

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
  queue = queue
    .then(async () => {
      const response =
        request.op === "batch"
          ? await handleBatch(runner, request, send, loadChainRule)
          : await handleRequest(runner, request);
      try {
        send(response);
      } catch (e) {
        // e.g. a response that cannot be serialised: answer anyway, or the host waits to its deadline.
        send(failedRequest(request, e));
      }
    })
    .catch(() => {});
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
// The validators of requests and of what guest code sends (capability arguments, results) are
// compiled (or loaded from the cache) before any request: never inside a hook call's time.
for (const v of [isRequest, isHookResult, isParamList, isHistory]) v.warm();
warmCapabilityValidators();
// Guest code runs only under the memory watchdog: ready once its worker is.
await runner.ready;
send({ id: 0, op: "ready" });
