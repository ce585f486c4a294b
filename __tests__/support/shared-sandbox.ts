// One sandbox for many `mechanism test` runs in a test file: the command's own sandbox API
// (batching included) over `sandbox()`, whose close() leaves the shared sandbox running.
import type { TestSandbox } from "../../runtime/commands/mechanism-test.ts";
import type { Sandbox } from "../../sandbox/index.ts";

export function sharedTestSandbox(sandbox: () => Sandbox): () => Promise<TestSandbox> {
  return () =>
    Promise.resolve({
      compile: (s, f) => sandbox().compile(s, f),
      load: (id, m) => sandbox().load(id, m),
      call: (c) => sandbox().call(c),
      callBatch: (b) => sandbox().callBatch(b),
      unload: (id) => sandbox().unload(id),
      validate: (s, t, f) => sandbox().validate(s, t, f),
      close: async () => {},
    });
}
