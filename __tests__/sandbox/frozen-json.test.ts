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

test("while Object.prototype has a toJSON, no text is kept or used", () => {
  const kept = frozenCopy({ a: { b: 1 } });
  expect(frozenJson(kept)).toBe('{"a":{"b":1}}');
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
    // A text kept before the patch is not handed out while it stands.
    expect(frozenJson(kept)).toBe('"patched"');
  } finally {
    delete (Object.prototype as { toJSON?: unknown }).toJSON;
  }
});

test("holes and BigInts, which JSON.stringify reads through prototypes, are not kept", () => {
  const sparse = new Array<number>(3);
  sparse[0] = 1;
  sparse[2] = 3;
  const holes = Object.freeze(sparse);
  expect(frozenJson(holes)).toBe("[1,null,3]");
  expect(stringifyCalls(() => frozenJson(holes))).toBe(1);
  const big = Object.freeze({ v: 1n });
  const proto = BigInt.prototype as unknown as { toJSON?: () => string };
  proto.toJSON = function (this: bigint) {
    return `${this}n`;
  };
  try {
    expect(frozenJson(big)).toBe('{"v":"1n"}');
    expect(stringifyCalls(() => frozenJson(big))).toBe(1);
  } finally {
    delete proto.toJSON;
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
