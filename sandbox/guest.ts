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

/** Fixed clock: 2026-01-01T00:00:00Z. */
export const FIXED_NOW = 1767225600000;

/** evalClosure body; $0 = host callback (op, argsJson) -> resultJson, $1 = fixed clock, $2 = max JSON chars. */
export const GUEST_BOOTSTRAP = String.raw`
"use strict";
const host = $0, FIXED_NOW = $1, MAX_JSON = $2;
const G = globalThis;
for (const name of ["WebAssembly", "SharedArrayBuffer", "Atomics", "Intl"]) {
  try { delete G[name]; } catch (_) {}
}
const parse = JSON.parse, stringify = JSON.stringify;
const freeze = Object.freeze, defineProperty = Object.defineProperty, create = Object.create;
const hasOwn = Object.prototype.hasOwnProperty;
const StringCtor = String, ErrorCtor = Error, PromiseCtor = Promise;
const isArray = Array.isArray;
const execRe = RegExp.prototype.exec;
const callFn = Function.prototype.call;
const STACK_RE = /mechanism\.js:(\d+):(\d+)/;

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
  throw new ErrorCtor(out.message);
}
function api(methods) {
  const o = create(null);
  for (const k in methods) o[k] = methods[k];
  return freeze(o);
}
const tabu = api({
  add(list, config, tenure) { capability("tabu.add", [list, config, tenure]); },
  contains(list, config, tolerance) { return capability("tabu.contains", [list, config, tolerance]); },
  size(list) { return capability("tabu.size", [list]); },
  clear(list) { capability("tabu.clear", [list]); },
});
const bandit = api({
  arms(name, ids) { capability("bandit.arms", [name, ids]); },
  select(name, policy, options) { return capability("bandit.select", [name, policy, options]); },
  reward(name, arm, value) { capability("bandit.reward", [name, arm, value]); },
  stats(name) { return capability("bandit.stats", [name]); },
});
const space = api({
  clamp(param, value) { return capability("space.clamp", [param, value]); },
  neighbour(config, param, direction, step) { return capability("space.neighbour", [config, param, direction, step]); },
  distance(x, y) { return capability("space.distance", [x, y]); },
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
    if ((typeof e === "object" && e !== null) || typeof e === "function") {
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
function encode(v, what) {
  let s;
  try { s = stringify(v); } catch (e) { return { error: what + " is not JSON (" + describe(e).message + ")" }; }
  if (s === undefined) return { error: what + " is not JSON (" + typeof v + ")" };
  if (s.length > MAX_JSON) return { error: what + " is too large (" + s.length + " characters)" };
  return { json: s };
}

defineProperty(G, "__bilevel_inspect", {
  value: function () {
    let m;
    try { m = G.__bilevel_factory(); } catch (e) { return fail("thrown", e); }
    if (m === null || typeof m !== "object") return failText("invalid-manifest", "the default export is not an object");
    const hooks = [];
    for (const h of ["init", "guide", "suggest", "filter", "observe"]) if (typeof m[h] === "function") hooks.push(h);
    const manifest = encode(m.manifest, "the manifest");
    if (manifest.error) return failText("invalid-manifest", manifest.error);
    return '{"ok":true,"hooks":' + stringify(hooks) + ',"manifest":' + manifest.json + "}";
  },
  writable: false, configurable: false, enumerable: false,
});

defineProperty(G, "__bilevel_invoke", {
  // head: {hook, seed, iteration, incumbent, best, state}; params/history parsed only if the hook reads them.
  value: function (headJson, paramsJson, historyJson, argumentJson) {
    const input = parse(headJson);
    seed(input.seed);
    let m;
    try { m = G.__bilevel_factory(); } catch (e) { return fail("thrown", e); }
    if (m === null || typeof m !== "object" || typeof m[input.hook] !== "function") {
      return failText("missing-hook", "the default export has no function " + input.hook);
    }
    let params, history;
    const ctx = {
      iteration: input.iteration,
      get params() { return params === undefined ? (params = parse(paramsJson)) : params; },
      incumbent: input.incumbent,
      best: input.best,
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
    const v = encode(value, "the result of " + input.hook);
    if (v.error) return failText("invalid-result", v.error);
    const s = encode(state, "the state");
    if (s.error) return failText("invalid-state", s.error);
    return '{"ok":true,"value":' + v.json + ',"state":' + s.json + "}";
  },
  writable: false, configurable: false, enumerable: false,
});
`;
