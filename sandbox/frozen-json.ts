// JSON texts of values that cannot change, kept by identity. A hook call carries its context's
// search space and history as JSON texts; the loop hands every call of an iteration the same
// deeply frozen arrays, so each is serialised once rather than once per call (~300 µs a call for a
// 200-trial history). Only data that is frozen all the way down, with nothing that could answer
// differently on a later serialisation (getters, toJSON, proxies, other prototypes), is kept;
// anything else is serialised afresh every time.
import { types } from "node:util";

/** Deeper than this is not checked (and so not kept): nothing the loop sends nests so deep. */
const MAX_DEPTH = 32;

const texts = new WeakMap<object, string>();

/** `JSON.stringify(value)`, from the kept text when `value` is deeply frozen plain data (see above). */
export function frozenJson(value: unknown): string | undefined {
  if (typeof value !== "object" || value === null || !prototypesPlain()) return JSON.stringify(value);
  const kept = texts.get(value);
  if (kept !== undefined) return kept;
  const text: string | undefined = JSON.stringify(value);
  if (text !== undefined && isFrozenData(value, MAX_DEPTH)) texts.set(value, text);
  return text;
}

/**
 * Neither shared prototype has a toJSON, which JSON.stringify would call on every object (checked
 * on every call: one added after a text was kept would change what the text should be).
 */
function prototypesPlain(): boolean {
  return !("toJSON" in Object.prototype) && !("toJSON" in Array.prototype);
}

function isFrozenData(value: object, depth: number): boolean {
  if (depth === 0 || types.isProxy(value) || !Object.isFrozen(value)) return false;
  const proto: unknown = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== Array.prototype && proto !== null) return false;
  const descriptors = Object.values(Object.getOwnPropertyDescriptors(value));
  // An array with holes: JSON.stringify reads them through the prototype chain.
  if (Array.isArray(value) && descriptors.length !== value.length + 1) return false;
  for (const descriptor of descriptors) {
    if (!("value" in descriptor)) return false; // an accessor
    const v: unknown = descriptor.value;
    // A function (toJSON, or a value JSON skips) or a BigInt (JSON.stringify asks BigInt.prototype for toJSON).
    if (typeof v === "function" || typeof v === "bigint") return false;
    if (typeof v === "object" && v !== null && !isFrozenData(v, depth - 1)) return false;
  }
  return true;
}

/**
 * A deeply frozen copy of JSON data, as it will cross (what frozenJson keeps by identity). Copied
 * through JSON rather than structuredClone, whose objects may come from another realm.
 */
export function frozenCopy<T>(value: T): T {
  return deepFreeze(JSON.parse(JSON.stringify(value)) as T);
}

function deepFreeze<T>(value: T): T {
  if (typeof value === "object" && value !== null && !Object.isFrozen(value)) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}
