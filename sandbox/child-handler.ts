// What the sandbox child answers to one validated request. Kept apart from child.ts (which owns
// the process's pipes) so that the mapping of failures to answers can be tested on its own.
import type { Proposal, Trial } from "../mechanism-api/index.d.ts";
import { batchCall, InvalidRequest, type Request, type Response } from "./protocol.ts";
import type { CheckedCall, Runner } from "./runner.ts";
import { sanitize } from "./sanitize.ts";
import type { ChainRuleModule } from "./types.ts";

export type RequestRunner = Pick<Runner, "load" | "call" | "unload">;
export type BatchRunner = Pick<Runner, "call" | "checkCall">;
type BatchRequest = Extract<Request, { op: "batch" }>;

export async function handleRequest(runner: RequestRunner, request: Request): Promise<Response> {
  try {
    switch (request.op) {
      case "load":
        return {
          id: request.id,
          op: "load",
          error: await runner.load(request.mechanismId, request.mechanism, request.mappings),
        };
      case "call":
        return { id: request.id, op: "call", outcome: await runner.call(request) };
      case "unload":
        await runner.unload(request.mechanismId);
        return { id: request.id, op: "unload" };
      case "batch":
        return { id: request.id, op: "invalid", message: "a batch is answered item by item (handleBatch)" };
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

/**
 * Run a batch's calls in order, answering each with an "item" line as soon as it is done (the host
 * resets its per-call deadline on each, and knows which call was running if it kills the child),
 * then "batch". Every call's data is checked before any guest code runs: bad data answers the whole
 * batch "invalid" (the host then calls one by one). A filter chain applies the run's rule
 * (`chainRule`, see ChainRuleModule) between the calls and stops after a `reject`.
 */
export async function handleBatch(
  runner: BatchRunner,
  request: BatchRequest,
  send: (response: Response) => void,
  chainRule?: () => Promise<ChainRuleModule>,
): Promise<Response> {
  let checked: CheckedCall | null = null;
  let chain: ChainRuleModule | null = null;
  try {
    if (request.chain && (request.hook !== "filter" || !isProposal(request.argument))) {
      throw new InvalidRequest("a chain is a filter batch with a proposal");
    }
    if (request.chain && !chainRule) throw new InvalidRequest("this sandbox has no filter-chain rule");
    for (let i = 0; i < request.calls.length; i++)
      checked = runner.checkCall(batchCall(request, i, request.argument));
    if (request.chain && chainRule) chain = await chainRule();
  } catch (e) {
    return failedRequest(request, e);
  }
  let argument = request.argument;
  let count = 0;
  if (checked === null) return failedRequest(request, new InvalidRequest("a batch of no calls"));
  const params = checked.params;
  try {
    for (let index = 0; index < request.calls.length; index++) {
      const t0 = performance.now();
      const outcome = await runner.call(batchCall(request, index, argument), checked);
      send({ id: request.id, op: "item", index, ms: performance.now() - t0, outcome });
      count++;
      if (!chain || !request.chain || !isProposal(argument)) continue;
      if (!outcome.ok || outcome.result.hook !== "filter") continue;
      const step = chain.filterStep(outcome.result.value, argument.changes, request.chain, params);
      if (step.kind === "rejected") break;
      if (step.kind === "modified")
        argument = chain.chainProposal(argument, request.chain.base, step.changes);
    }
  } catch {
    // Not expected (calls never throw once checked); the host goes on with the calls not answered.
  }
  return { id: request.id, op: "batch", count };
}

function isProposal(argument: Proposal | Trial | undefined): argument is Proposal {
  return argument !== undefined && "rationale" in argument;
}

function describe(e: unknown): string {
  try {
    return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
  } catch {
    return "unknown error";
  }
}
