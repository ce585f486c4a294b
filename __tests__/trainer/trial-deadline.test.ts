// The adapter's deadline: a trial's start (data, model, a cold torch.compile that the trainer
// excludes from its budget) has its own allowance; budget × factor + grace counts from the
// first progress record. Driven by a protocol stub that waits before its first progress record.
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { TorchTrainer } from "../../trainer/torch-trainer.ts";

const stub = path.resolve(import.meta.dirname, "../fixtures/trainer/protocol_stub.py");
let tmp: string;
beforeAll(() => {
  tmp = mkdtempSync(path.join(os.tmpdir(), "bilevel-deadline-"));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const request = (name: string) => ({
  config: {},
  budgetSeconds: 1,
  seed: 0,
  device: "cpu" as const,
  workDir: path.join(tmp, name),
});

test("a slow start (a long compile) is not a timeout: the budget's deadline starts at the first progress record", async () => {
  // budget 1 s × 1 + 1 s grace = 2 s; the stub compiles for 4 s first (the old deadline counted it).
  const trainer = new TorchTrainer({
    python: "/usr/bin/python3",
    entry: [stub],
    timeoutFactor: 1,
    graceSeconds: 1,
    startupSeconds: 60,
    env: { STUB_START_SECONDS: "4" },
  });
  const o = await trainer.run(request("slow-start"));
  expect(o.message).toBe("ok");
  expect(o.status).toBe("ok");
}, 60_000);

test("a start that never reaches a progress record times out after its own allowance", async () => {
  const trainer = new TorchTrainer({
    python: "/usr/bin/python3",
    entry: [stub],
    timeoutFactor: 1,
    graceSeconds: 1,
    startupSeconds: 2,
    env: { STUB_NO_PROGRESS: "1" },
  });
  const o = await trainer.run(request("no-progress"));
  expect(o.status).toBe("timeout");
  expect(o.message).toMatch(/killed after 2 s without a progress record/);
}, 60_000);
