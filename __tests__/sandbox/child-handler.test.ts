// How the sandbox child answers a request whose handling threw: "invalid" (the caller's mistake,
// no quarantine) only for bad call data found before guest code runs; anything else that escapes
// a call or a load is the mechanism's fault, in a response the host accepts.
import { failedRequest, handleRequest, type RequestRunner } from "../../sandbox/child-handler.ts";
import { InvalidRequest, isResponse, type Request, toWireCall } from "../../sandbox/protocol.ts";
import { hookCall, rawMechanism } from "./helpers.ts";

const call = { id: 7, op: "call", ...toWireCall(hookCall("m", "guide")) } as const satisfies Request;
const load: Request = {
  id: 8,
  op: "load",
  mechanismId: "m",
  mechanism: rawMechanism("exports.default = {};", { hooks: ["guide"] }),
};

function runner(fail: () => never): RequestRunner {
  return { load: async () => fail(), call: async () => fail(), unload: async () => fail() };
}

test("bad call data (InvalidRequest) is answered invalid", async () => {
  const response = await handleRequest(
    runner(() => {
      throw new InvalidRequest("invalid search space: /0 must have required property 'kind'");
    }),
    call,
  );
  expect(response).toEqual({ id: 7, op: "invalid", message: expect.stringMatching(/invalid search space/) });
  expect(isResponse(response)).toBe(true);
});

test("any other exception during a call is the mechanism's fault: a call outcome, code crashed", async () => {
  const response = await handleRequest(
    runner(() => {
      throw new RangeError("Maximum call stack size exceeded at /work/main/sandbox/runner.ts:229");
    }),
    call,
  );
  expect(response).toMatchObject({
    id: 7,
    op: "call",
    outcome: { ok: false, error: { stage: "guide", code: "crashed" } },
  });
  expect(isResponse(response)).toBe(true);
  const message = response.op === "call" && !response.outcome.ok ? response.outcome.error.message : "";
  expect(message).toMatch(/failed while handling the call: RangeError: Maximum call stack size exceeded/);
  expect(message).not.toMatch(/\/work|runner\.ts/);
});

test("an exception during a load fails the load (crashed), not the request", async () => {
  const response = await handleRequest(
    runner(() => {
      throw new TypeError("boom");
    }),
    load,
  );
  expect(response).toEqual({
    id: 8,
    op: "load",
    error: { stage: "load", code: "crashed", message: expect.stringMatching(/TypeError: boom/) },
  });
  expect(isResponse(response)).toBe(true);
});

test("failedRequest survives a thrown value that cannot be printed", () => {
  const hostile = {
    toString() {
      throw new Error("no");
    },
  };
  const response = failedRequest(call, hostile);
  expect(response).toMatchObject({ op: "call", outcome: { ok: false, error: { code: "crashed" } } });
  expect(isResponse(response)).toBe(true);
});

test("successful handling passes the runner's answers through", async () => {
  const outcome = {
    ok: false as const,
    error: { stage: "guide" as const, code: "thrown" as const, message: "x" },
  };
  const ok: RequestRunner = { load: async () => null, call: async () => outcome, unload: async () => {} };
  expect(await handleRequest(ok, call)).toEqual({ id: 7, op: "call", outcome });
  expect(await handleRequest(ok, load)).toEqual({ id: 8, op: "load", error: null });
  expect(await handleRequest(ok, { id: 9, op: "unload", mechanismId: "m" })).toEqual({ id: 9, op: "unload" });
});
