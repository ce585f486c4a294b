// ctx.params and ctx.history are built once and handed to every call while nothing they show
// changes: the same deeply frozen arrays (serialised once each on the way to the sandbox).
import { expect, test } from "@jest/globals";
import type { ParamSpec } from "../../mechanism-api/index.d.ts";
import { ContextParts, toApiTrial } from "../../runtime/level1/context-parts.ts";
import type { TrialRow } from "../../runtime/store.ts";

const PARAMS: ParamSpec[] = [
  { name: "lr", kind: "float", min: 1e-4, max: 1, log: true, default: 0.01, description: "learning rate" },
  { name: "depth", kind: "int", min: 1, max: 8, choices: [1, 2, 4, 8], default: 4, description: "layers" },
];

function row(id: number, lr: number): TrialRow {
  return {
    id,
    iteration: id,
    kind: "search",
    config: { lr, depth: 4 },
    changes: [{ param: "lr", value: lr }],
    status: "ok",
    valBpb: 2 - id / 100,
    kept: id % 2 === 0,
    delta: -0.01,
  } as unknown as TrialRow;
}

function deeplyFrozen(value: unknown): boolean {
  if (typeof value !== "object" || value === null) return true;
  return Object.isFrozen(value) && Object.values(value).every(deeplyFrozen);
}

test("the history is the same frozen array while its rows are the same rows, a new one when they change", () => {
  const parts = new ContextParts(PARAMS);
  const rows = [row(1, 0.1), row(2, 0.2)];
  const first = parts.trials(rows);
  expect(first).toEqual(rows.map(toApiTrial));
  expect(deeplyFrozen(first)).toBe(true);
  // Another call of the same iteration: the window is a new array of the same rows.
  expect(parts.trials([...rows])).toBe(first);
  // A trial finished: a new window, a new history; the rows themselves were not frozen.
  const next = parts.trials([...rows, row(3, 0.3)]);
  expect(next).not.toBe(first);
  expect(next).toEqual([...rows, row(3, 0.3)].map(toApiTrial));
  expect(Object.isFrozen(rows[0]!.config)).toBe(false);
  // The window slid (same length, other rows).
  expect(parts.trials([row(2, 0.2), row(3, 0.3), row(4, 0.4)]).map((t) => t.id)).toEqual([2, 3, 4]);
  expect(parts.trials([])).toEqual([]);
});

test("the search space marks the active and frozen sets, and is rebuilt when either changes", () => {
  const parts = new ContextParts(PARAMS);
  const all = parts.searchSpace(["lr", "depth"], []);
  expect(all).toEqual(PARAMS.map((p) => ({ ...p, active: true })));
  expect(deeplyFrozen(all)).toBe(true);
  expect(parts.searchSpace(["lr", "depth"], [])).toBe(all);
  const narrowed = parts.searchSpace(["lr"], ["depth"]);
  expect(narrowed).not.toBe(all);
  expect(narrowed).toEqual([
    { ...PARAMS[0], active: true },
    { ...PARAMS[1], active: false, frozen: true },
  ]);
  expect("frozen" in narrowed[0]!).toBe(false);
  // The run's own search space is untouched.
  expect(PARAMS[1]).toEqual({
    name: "depth",
    kind: "int",
    min: 1,
    max: 8,
    choices: [1, 2, 4, 8],
    default: 4,
    description: "layers",
  });
  expect(Object.isFrozen(PARAMS[1]!.choices)).toBe(false);
});
