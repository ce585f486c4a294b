// frozenJson keeps the JSON text of deeply frozen plain data by identity, and of nothing else: any
// value that could serialise differently later is serialised afresh on every call.
import { afterEach, expect, jest, test } from "@jest/globals";
import { frozenCopy, frozenJson } from "../../sandbox/frozen-json.ts";

afterEach(() => {
  jest.restoreAllMocks();
});

function stringifyCalls(fn: () => void): number {
  const spy = jest.spyOn(JSON, "stringify");
  fn();
  const n = spy.mock.calls.length;
  spy.mockRestore();
  return n;
}

test("deeply frozen plain data is serialised once, then its text is reused", () => {
  const history = frozenCopy([{ id: 1, config: { lr: 0.1 }, changes: [{ param: "lr", value: 0.1 }] }]);
  expect(Object.isFrozen(history[0]!.changes[0])).toBe(true);
  const first = frozenJson(history);
  expect(first).toBe(JSON.stringify(history));
  expect(stringifyCalls(() => expect(frozenJson(history)).toBe(first))).toBe(0);
  // An equal but distinct value is its own entry (identity, not content).
  const copy = frozenCopy(history);
  expect(stringifyCalls(() => frozenJson(copy))).toBe(1);
  expect(stringifyCalls(() => frozenJson(copy))).toBe(0);
});

test("data that could change is serialised afresh every time", () => {
  const open = [{ id: 1 }];
  expect(frozenJson(open)).toBe('[{"id":1}]');
  open[0]!.id = 2;
  expect(frozenJson(open)).toBe('[{"id":2}]');

  // Frozen at the top, not below.
  const shallow = Object.freeze([{ id: 1 }]);
  expect(frozenJson(shallow)).toBe('[{"id":1}]');
  shallow[0]!.id = 3;
  expect(frozenJson(shallow)).toBe('[{"id":3}]');

  // Frozen all the way down, but a getter answers anew each time.
  let n = 0;
  const getter = Object.freeze({
    get n() {
      n += 1;
      return n;
    },
  });
  expect(frozenJson(getter)).toBe('{"n":1}');
  expect(frozenJson(getter)).toBe('{"n":2}');

  // A toJSON of its own, a class instance, a proxy over frozen data.
  let calls = 0;
  const withToJson = Object.freeze({ toJSON: () => ++calls });
  expect(frozenJson(withToJson)).toBe("1");
  expect(frozenJson(withToJson)).toBe("2");
  class Box {
    readonly v: number;
    constructor(v: number) {
      this.v = v;
    }
  }
  const box = Object.freeze(new Box(1));
  expect(frozenJson(box)).toBe('{"v":1}');
  expect(stringifyCalls(() => frozenJson(box))).toBe(1);
  const proxy = new Proxy(frozenCopy({ v: 0 }), {});
  expect(frozenJson(proxy)).toBe('{"v":0}');
  expect(stringifyCalls(() => frozenJson(proxy))).toBe(1);
});

test("while Object.prototype has a toJSON, no text is kept", () => {
  const fresh = frozenCopy({ a: { b: 1 } });
  Object.defineProperty(Object.prototype, "toJSON", {
    value: () => "patched",
    configurable: true,
    writable: true,
  });
  try {
    // JSON.stringify calls it for every object: what it answers may change from call to call.
    expect(frozenJson(fresh)).toBe('"patched"');
    expect(stringifyCalls(() => frozenJson(fresh))).toBe(1);
  } finally {
    delete (Object.prototype as { toJSON?: unknown }).toJSON;
  }
});

test("primitives and values JSON cannot represent pass through as JSON.stringify gives them", () => {
  expect(frozenJson(1.5)).toBe("1.5");
  expect(frozenJson("x")).toBe('"x"');
  expect(frozenJson(null)).toBe("null");
  expect(frozenJson(undefined)).toBeUndefined();
  const cyclic: Record<string, unknown> = {};
  cyclic.self = cyclic;
  Object.freeze(cyclic);
  expect(() => frozenJson(cyclic)).toThrow(TypeError);
});
