// Source text that runs INSIDE each isolate context. It is evaluated before any mechanism code, so
// it captures pristine built-ins, removes what must not be reachable, freezes the clock and the
// RNG, and defines one entry point, __bilevel_invoke(inputJson) -> outputJson. The only host object
// it holds is one ivm.Callback (`host`), kept in this closure: the guest never sees it.
//
// Nothing here is trusted by the child: whatever the guest does to these functions only changes
// its own output, which the child parses, size-checks and validates like any untrusted JSON.

/** File name the mechanism's compiled JS is run under (used to map stack positions back to TS). */
export const GUEST_FILE = "mechanism.js";

/** The default export of the compiled CommonJS module, wrapped as a factory: top-level code runs per call. */
export function wrapMechanismJs(js: string): string {
  return `var __bilevel_factory = function () { "use strict"; var exports = {}; var module = { exports: exports };\n${js}\n;return module.exports === exports ? exports.default : module.exports && module.exports.default; };`;
}

/** File name the bootstrap is compiled under (its frames never match a mechanism.js position). */
export const BOOTSTRAP_FILE = "bilevel-bootstrap.js";

/** Fixed clock: 2026-01-01T00:00:00Z. */
export const FIXED_NOW = 1767225600000;

/**
 * The bootstrap as one function, compiled once per isolate (its bytecode is shared by every context)
 * and called once per context with $0 = host callback (op, argsJson) -> resultJson, $1 = fixed clock,
 * $2 = max JSON chars, $3 = max nesting depth of the state and results. It returns the entry point
 * (__bilevel_invoke), which the child calls through a Reference: no closure is compiled per call.
 */
export const GUEST_BOOTSTRAP = `(function ($0, $1, $2, $3) {${String.raw`
"use strict";
const host = $0, FIXED_NOW = $1, MAX_JSON = $2, MAX_DEPTH = $3;
const G = globalThis;
const parse = JSON.parse, stringify = JSON.stringify, isRawJSON = JSON.isRawJSON;
const freeze = Object.freeze, defineProperty = Object.defineProperty, create = Object.create;
const getPrototypeOf = Object.getPrototypeOf, keysOf = Object.keys, getOwnDescriptor = Object.getOwnPropertyDescriptor;
const objectToString = Object.prototype.toString;
const ObjectProto = Object.prototype, ArrayProto = Array.prototype;
const StringCtor = String, ErrorCtor = Error, PromiseCtor = Promise;
const TypeErrorCtor = TypeError, RangeErrorCtor = RangeError, EvalErrorCtor = EvalError;
const isArray = Array.isArray, isFiniteNumber = Number.isFinite;
const apply = Reflect.apply, construct = Reflect.construct;
const execRe = RegExp.prototype.exec, sliceString = String.prototype.slice;
const callFn = Function.prototype.call;
const STACK_RE = /mechanism\.js:(\d+):(\d+)/;
const VOWEL_RE = /^[AEIOU]/;
function hide(target, name, value) {
  defineProperty(target, name, { value, writable: false, configurable: false, enumerable: false });
}

// Resizable and growable buffers: V8 reserves maxByteLength of address space and commits pages on
// resize()/grow() without asking the ArrayBuffer allocator, which is where isolated-vm counts
// memory, so they escape isolateMemoryMb entirely (a 1-byte buffer resized to 1 GB succeeds in a
// 32 MB isolate). The constructor option is refused here, before any mechanism code exists, and
// resize/grow are removed. Fixed-length buffers, typed arrays and transfer() go through the
// allocator and stay. The refusal is sticky (like a capability fault): catching it does not help.
let memoryFault = null;
function refuseMemory(message) {
  if (memoryFault === null) {
    memoryFault = message;
    try { host("fault", stringify({ code: "memory", message })); } catch (_) {}
  }
  throw new RangeErrorCtor(message);
}
const SharedBuffer = G.SharedArrayBuffer;
if (SharedBuffer) delete SharedBuffer.prototype.grow;
for (const name of ["WebAssembly", "SharedArrayBuffer", "Atomics", "Intl"]) {
  try { delete G[name]; } catch (_) {}
}
const RealArrayBuffer = ArrayBuffer;
const speciesGetter = getOwnDescriptor(RealArrayBuffer, Symbol.species);
const SafeArrayBuffer = function ArrayBuffer(length, options) {
  if (new.target === undefined) throw new TypeErrorCtor("Constructor ArrayBuffer requires 'new'");
  if (((typeof options === "object" && options !== null) || typeof options === "function") &&
      options.maxByteLength !== undefined) {
    refuseMemory("resizable ArrayBuffers (maxByteLength) are not available in the sandbox: their memory escapes isolateMemoryMb");
  }
  // The options object is never passed on: a getter could answer differently the second time.
  return construct(RealArrayBuffer, [length], new.target);
};
hide(SafeArrayBuffer, "prototype", RealArrayBuffer.prototype);
hide(SafeArrayBuffer, "isView", RealArrayBuffer.isView);
if (speciesGetter) defineProperty(SafeArrayBuffer, Symbol.species, speciesGetter);
hide(RealArrayBuffer.prototype, "constructor", SafeArrayBuffer);
delete RealArrayBuffer.prototype.resize;
freeze(SafeArrayBuffer);
hide(G, "ArrayBuffer", SafeArrayBuffer);

// Code generation from strings. isolated-vm creates each context with V8's per-context switch off,
// but it also installs an isolate-wide callback that allows any source shorter than memoryLimit/8,
// and nothing in its API removes that callback (--disallow-code-generation-from-strings only sets
// the switch the callback overrides). So the boundary is here: eval and the four function
// constructors (reachable from any function through .constructor) are replaced, before any
// mechanism code exists, by functions that throw, on non-writable, non-configurable properties.
const NO_CODE_GENERATION = "code generation from strings is disabled in the sandbox";
function blocked(name) {
  return { [name]: function () { throw new EvalErrorCtor(name + ": " + NO_CODE_GENERATION); } }[name];
}
function blockConstructor(proto, name) {
  const stub = blocked(name);
  hide(stub, "prototype", proto);
  hide(proto, "constructor", stub);
  return freeze(stub);
}
hide(G, "Function", blockConstructor(getPrototypeOf(function () {}), "Function"));
blockConstructor(getPrototypeOf(async function () {}), "AsyncFunction");
blockConstructor(getPrototypeOf(function* () {}), "GeneratorFunction");
blockConstructor(getPrototypeOf(async function* () {}), "AsyncGeneratorFunction");
hide(G, "eval", freeze(blocked("eval")));

// sfc32, identical to sandbox/rng.ts; seeded per call.
let a = 0, b = 0, c = 0, d = 0;
function next() {
  a >>>= 0; b >>>= 0; c >>>= 0; d >>>= 0;
  let t = (a + b) | 0;
  a = b ^ (b >>> 9);
  b = (c + (c << 3)) | 0;
  c = (c << 21) | (c >>> 11);
  d = (d + 1) | 0;
  t = (t + d) | 0;
  c = (c + t) | 0;
  return (t >>> 0) / 4294967296;
}
function seed(words) {
  a = words[0]; b = words[1]; c = words[2]; d = words[3];
  for (let i = 0; i < 12; i++) next();
}
const random = function random() { return next(); };
defineProperty(Math, "random", { value: random, writable: false, configurable: false, enumerable: false });

const RealDate = Date;
const FrozenDate = function Date(...args) {
  if (new.target === undefined) return new RealDate(FIXED_NOW).toString();
  return args.length === 0 ? new RealDate(FIXED_NOW) : new RealDate(...args);
};
FrozenDate.prototype = RealDate.prototype;
FrozenDate.now = function now() { return FIXED_NOW; };
FrozenDate.parse = RealDate.parse;
FrozenDate.UTC = RealDate.UTC;
defineProperty(RealDate.prototype, "constructor", { value: FrozenDate, writable: false, configurable: false });
freeze(FrozenDate);
defineProperty(G, "Date", { value: FrozenDate, writable: false, configurable: false, enumerable: false });

function trim(args) {
  let n = args.length;
  while (n > 0 && args[n - 1] === undefined) n--;
  return args.slice(0, n);
}
function capability(op, args) {
  const out = parse(host(op, stringify(trim(args))));
  if (out.ok) return out.value;
  const error = new ErrorCtor(out.message);
  // The mechanism's line that made the call: the fault is reported there even if it is caught.
  const at = describe(error);
  if (at.line !== undefined) {
    try { host("at", stringify({ line: at.line, column: at.column })); } catch (_) {}
  }
  throw error;
}
function api(methods) {
  const o = create(null);
  for (const k in methods) o[k] = methods[k];
  return freeze(o);
}
const tabu = api({
  add(list, config, tenure, options) { capability("tabu.add", [list, config, tenure, options]); },
  contains(list, config, tolerance) { return capability("tabu.contains", [list, config, tolerance]); },
  match(list, config, tolerance) { return capability("tabu.match", [list, config, tolerance]); },
  size(list) { return capability("tabu.size", [list]); },
  clear(list) { capability("tabu.clear", [list]); },
});
const bandit = api({
  arms(name, ids, settings) { capability("bandit.arms", [name, ids, settings]); },
  select(name, policy, options) { return capability("bandit.select", [name, policy, options]); },
  reward(name, arm, value) { capability("bandit.reward", [name, arm, value]); },
  stats(name) { return capability("bandit.stats", [name]); },
});
const space = api({
  clamp(param, value) { return capability("space.clamp", [param, value]); },
  toUnit(param, value) { return capability("space.toUnit", [param, value]); },
  fromUnit(param, u) { return capability("space.fromUnit", [param, u]); },
  neighbour(config, param, direction, step) { return capability("space.neighbour", [config, param, direction, step]); },
  neighbours(config, scale, params) { return capability("space.neighbours", [config, scale, params]); },
  distance(x, y, params) { return capability("space.distance", [x, y, params]); },
  sample(n, options) { return capability("space.sample", [n, options]); },
  latinHypercube(n, params) { return capability("space.latinHypercube", [n, params]); },
  orthogonalArray(params, levels) { return capability("space.orthogonalArray", [params, levels]); },
});
const log = function log(message) {
  let text;
  try { text = StringCtor(message); } catch (_) { text = "(unprintable)"; }
  host("log", text.length > 2000 ? text.slice(0, 2000) : text);
};

function describe(e) {
  let message = "a value that is not an Error was thrown";
  let line, column;
  try {
    let isError = false;
    try { isError = e instanceof ErrorCtor || typeof e.stack === "string"; } catch (_) {}
    if (((typeof e === "object" && e !== null) || typeof e === "function") && !isError) {
      // A plain object or a function: show it (its JSON, cut), since it has no name, message or stack.
      let preview = "(not JSON)";
      try { const j = stringify(e); if (typeof j === "string") preview = callFn.call(sliceString, j, 0, 200); } catch (_) {}
      message = "a non-Error value was thrown: " + typeof e + " " + preview +
        " (throw new Error(...) for a message with the line and column)";
    } else if (isError) {
      let name = "Error", text = "";
      try { name = StringCtor(e.name); } catch (_) {}
      try { text = StringCtor(e.message); } catch (_) { text = "(unreadable message)"; }
      message = name + ": " + text;
      try {
        const stack = e.stack;
        if (typeof stack === "string") {
          const m = callFn.call(execRe, STACK_RE, stack);
          if (m) { line = +m[1]; column = +m[2]; }
        }
      } catch (_) {}
    } else {
      message = "a non-Error value was thrown: " + typeof e + " " + StringCtor(e);
    }
  } catch (_) {}
  return { message: message.length > 1000 ? message.slice(0, 1000) : message, line, column };
}
function fail(code, e) {
  // A refused allocation is the root cause of whatever the hook did after it.
  if (memoryFault !== null) return failText("memory", memoryFault);
  const info = describe(e);
  return stringify({ ok: false, code, message: info.message, line: info.line, column: info.column });
}
function failText(code, message) {
  return stringify({ ok: false, code, message });
}
function isThenable(v) {
  if (v === null || (typeof v !== "object" && typeof v !== "function")) return false;
  if (v instanceof PromiseCtor) return true;
  return typeof v.then === "function";
}
// Strict JSON. JSON.stringify changes what it cannot represent without a word (a Set becomes {},
// NaN and Infinity null, a Date a string, undefined in an array null, functions vanish), and after
// it the information is gone. So the state and results are serialised here by a walk that accepts
// only null, booleans, finite numbers, strings, arrays without holes and plain objects (undefined
// properties are dropped, as JSON does; a plain object's toJSON() is honoured), names the JSON
// pointer of anything else, and reads every property once (no getter can answer differently to a
// check and to the serialiser). Only functions captured above are used: the guest may have
// replaced any built-in method by now.
function NotJson(node, problem) { this.node = node; this.problem = problem; }
function TooDeep(node) { this.node = node; }
function TooLarge() {}
function pointerOf(node) {
  let out = "";
  for (let n = node; n !== null && n.up !== null; n = n.up) {
    const key = StringCtor(n.key);
    let escaped = "";
    for (let i = 0; i < key.length; i++) escaped += key[i] === "~" ? "~0" : key[i] === "/" ? "~1" : key[i];
    out = "/" + escaped + out;
  }
  return out;
}
function shortPointer(node) {
  const where = pointerOf(node);
  return where.length > 300 ? apply(sliceString, where, [0, 300]) + "…" : where;
}
function article(name) {
  return (callFn.call(execRe, VOWEL_RE, name) ? "an " : "a ") + name;
}
function kindOf(value, proto) {
  let tag = "Object";
  try { tag = apply(sliceString, apply(objectToString, value, []), [8, -1]); } catch (_) {}
  if (tag !== "Object" && tag !== "Array") return article(tag);
  try {
    const name = proto.constructor.name;
    if (typeof name === "string" && name !== "") return "an instance of " + name;
  } catch (_) {}
  return "an object with a custom prototype";
}
function primitiveText(value, node) {
  switch (typeof value) {
    case "string": return stringify(value);
    case "boolean": return value ? "true" : "false";
    case "number":
      if (isFiniteNumber(value)) return stringify(value);
      throw new NotJson(node, value !== value ? "is NaN" : value > 0 ? "is Infinity" : "is -Infinity");
    case "undefined": throw new NotJson(node, "is undefined");
    case "function": throw new NotJson(node, "is a function");
    case "symbol": throw new NotJson(node, "is a symbol");
    case "bigint": throw new NotJson(node, "is a BigInt");
  }
  return null;
}
function count(st, text) {
  st.chars += text.length;
  if (st.chars > MAX_JSON) throw new TooLarge();
  return text;
}
function jsonText(value, node, depth, st, viaToJSON) {
  if (value === null) return count(st, "null");
  const primitive = primitiveText(value, node);
  if (primitive !== null) return count(st, primitive);
  if (depth > MAX_DEPTH) throw new TooDeep(node);
  for (let n = node.up; n !== null; n = n.up) {
    if (n.value === value) throw new NotJson(node, "refers back to an enclosing object (a cycle)");
  }
  if (isRawJSON !== undefined && isRawJSON(value)) throw new NotJson(node, "is a JSON.rawJSON value");
  const array = isArray(value);
  const proto = getPrototypeOf(value);
  if (array ? proto !== ArrayProto : proto !== ObjectProto && proto !== null) {
    throw new NotJson(node, "is " + kindOf(value, proto));
  }
  if (!viaToJSON) {
    const toJSON = value.toJSON;
    if (typeof toJSON === "function") {
      const replaced = apply(toJSON, value, [node.up === null ? "" : StringCtor(node.key)]);
      return jsonText(replaced, { key: node.key, up: node.up, value: replaced }, depth, st, true);
    }
  }
  return array ? arrayText(value, node, depth, st) : objectText(value, node, depth, st);
}
function arrayText(value, node, depth, st) {
  const length = value.length;
  let out = count(st, "[");
  for (let i = 0; i < length; i++) {
    if (!(i in value)) throw new NotJson({ key: i, up: node, value: undefined }, "is an empty array slot");
    const item = value[i];
    if (i > 0) out += count(st, ",");
    out += jsonText(item, { key: i, up: node, value: item }, depth + 1, st, false);
  }
  return out + count(st, "]");
}
function objectText(value, node, depth, st) {
  const keys = keysOf(value);
  let out = count(st, "{"), first = true;
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i];
    const item = value[key];
    if (item === undefined) continue;
    out += count(st, (first ? "" : ",") + stringify(key) + ":");
    out += jsonText(item, { key, up: node, value: item }, depth + 1, st, false);
    first = false;
  }
  return out + count(st, "}");
}
function encode(v, what) {
  const st = { chars: 0 };
  try {
    return { json: jsonText(v, { key: "", up: null, value: v }, 1, st, false) };
  } catch (e) {
    if (e instanceof TooLarge) return { error: what + " is too large (over " + MAX_JSON + " characters)" };
    if (e instanceof TooDeep) {
      return { error: what + " nests deeper than " + MAX_DEPTH + " levels (at " + shortPointer(e.node) + ")" };
    }
    if (e instanceof NotJson) {
      const where = shortPointer(e.node);
      return { error: what + " is not JSON: " + (where === "" ? "it" : where) + " " + e.problem +
        " (only plain objects, arrays, strings, finite numbers, booleans and null cross the boundary)" };
    }
    return { error: what + " could not be serialised: " + describe(e).message };
  }
}

defineProperty(G, "__bilevel_inspect", {
  value: function () {
    let m;
    try { m = G.__bilevel_factory(); } catch (e) { return fail("thrown", e); }
    if (m === null || typeof m !== "object") return failText("invalid-manifest", "the default export is not an object");
    const hooks = [];
    for (const h of ["init", "guide", "suggest", "filter", "observe"]) if (typeof m[h] === "function") hooks.push(h);
    if (memoryFault !== null) return failText("memory", memoryFault);
    const manifest = encode(m.manifest, "the manifest");
    if (manifest.error) return failText("invalid-manifest", manifest.error);
    return '{"ok":true,"hooks":' + stringify(hooks) + ',"manifest":' + manifest.json + "}";
  },
  writable: false, configurable: false, enumerable: false,
});

// The warm-up's stand-in for the mechanism: it returns values of the hooks' usual shapes. It is the
// bootstrap's own code; no mechanism code runs in a warm-up.
const STAND_IN = freeze({
  init(ctx) { return ctx.state; },
  guide(ctx) { return null; },
  suggest(ctx) { return null; },
  filter(argument, ctx) { return { verdict: "accept" }; },
  observe(argument, ctx) { return ctx.state; },
});
// head: {hook, seed, iteration, incumbent, best, acceptance, pending, state}; params/history parsed
// only if the hook reads them. warm === true: a warm-up (see STAND_IN), run by the child in a
// context built ahead, on the previous call's input, so that this path's parsing, ctx and result
// encoding (object shapes, compiled code) are ready when the call comes; it leaves nothing the
// mechanism can observe (the RNG is seeded by every call; the fault flag stays clear).
const invoke = function (headJson, paramsJson, historyJson, argumentJson, warm) {
  const input = parse(headJson);
  seed(input.seed);
  let m;
  if (warm === true) m = STAND_IN;
  else try { m = G.__bilevel_factory(); } catch (e) { return fail("thrown", e); }
  if (m === null || typeof m !== "object" || typeof m[input.hook] !== "function") {
    return failText("missing-hook", "the default export has no function " + input.hook);
  }
  let params, history;
  const ctx = {
    iteration: input.iteration,
    get params() { return params === undefined ? (params = parse(paramsJson)) : params; },
    incumbent: input.incumbent,
    best: input.best,
    acceptance: input.acceptance,
    pending: input.pending,
    get history() { return history === undefined ? (history = parse(historyJson)) : history; },
    state: input.state,
    random, log, tabu, bandit, space,
  };
  if (argumentJson !== null) input.argument = parse(argumentJson);
  let ret;
  try {
    ret = input.hook === "filter" || input.hook === "observe" ? m[input.hook](input.argument, ctx) : m[input.hook](ctx);
  } catch (e) { return fail("thrown", e); }
  try {
    if (isThenable(ret)) return failText("invalid-result", input.hook + " returned a promise: hooks are synchronous");
  } catch (e) { return fail("invalid-result", e); }
  let value = null, state;
  try { state = ctx.state; } catch (e) { return fail("invalid-state", e); }
  switch (input.hook) {
    case "init":
      if (ret === undefined) return failText("invalid-result", "init must return the initial state");
      state = ret;
      value = ret;
      break;
    case "observe":
      if (ret !== undefined) state = ret;
      break;
    case "filter":
      if (ret === undefined || ret === null) return failText("invalid-result", "filter must return a verdict");
      value = ret;
      break;
    default:
      value = ret === undefined ? null : ret;
  }
  if (memoryFault !== null) return failText("memory", memoryFault);
  // init's result is the state: encoded once, and its faults are the state's.
  const v = input.hook === "init" ? null : encode(value, "the result of " + input.hook);
  if (v !== null && v.error) return failText("invalid-result", v.error);
  const s = encode(state, "the state");
  if (s.error) return failText("invalid-state", s.error);
  return '{"ok":true,"value":' + (v === null ? s.json : v.json) + ',"state":' + s.json + "}";
};
hide(G, "__bilevel_invoke", invoke);
return invoke;
`}\n})`;
