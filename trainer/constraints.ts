// Constraint expressions over a script's constants, e.g.
// `TOTAL_BATCH_SIZE % (DEVICE_BATCH_SIZE * MAX_SEQ_LEN) == 0`. The language is a small subset of
// Python (so the text means what it would in the user's train.py): numbers, strings, True/False,
// names, + - * / // % ** (Python's floor division and modulo), comparisons (chained), and, or, not,
// parentheses, and the builtins abs, min, max, int, float, round. Evaluated here, in TypeScript,
// because the proposer, the filters and the adapter check every candidate before a trial starts.
import type { Config, ParamSpec } from "../mechanism-api/index.d.ts";

type Value = number | string | boolean;

interface Token {
  readonly kind: "num" | "str" | "name" | "op" | "end";
  readonly text: string;
  readonly start: number;
  readonly end: number;
}

type Node =
  | { readonly t: "lit"; readonly value: Value }
  | { readonly t: "name"; readonly name: string }
  | { readonly t: "unary"; readonly op: string; readonly arg: Node }
  | { readonly t: "bin"; readonly op: string; readonly left: Node; readonly right: Node }
  | { readonly t: "cmp"; readonly first: Node; readonly rest: readonly [string, Node][] }
  | { readonly t: "call"; readonly fn: string; readonly args: readonly Node[] };

const OPS = ["**", "//", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "<", ">", "(", ")", ","];
const FUNCTIONS = new Set(["abs", "min", "max", "int", "float", "round"]);
const KEYWORDS = new Set(["and", "or", "not", "True", "False"]);

export class ConstraintSyntaxError extends Error {
  override name = "ConstraintSyntaxError";
}

function tokenize(text: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < text.length) {
    const rest = text.slice(i);
    const space = /^\s+/.exec(rest);
    if (space) {
      i += space[0].length;
      continue;
    }
    const num = /^(?:\d[\d_]*\.?[\d_]*|\.\d[\d_]*)(?:[eE][+-]?\d+)?/.exec(rest);
    const str = /^(?:"[^"\\\n]*"|'[^'\\\n]*')/.exec(rest);
    const name = /^[A-Za-z_][A-Za-z0-9_]*(?:\[\d+\])?/.exec(rest);
    const op = OPS.find((o) => rest.startsWith(o));
    const [kind, match] = num
      ? (["num", num[0]] as const)
      : str
        ? (["str", str[0]] as const)
        : name
          ? (["name", name[0]] as const)
          : op
            ? (["op", op] as const)
            : (["end", ""] as const);
    if (kind === "end") throw new ConstraintSyntaxError(`unexpected ${JSON.stringify(rest[0])} at ${i + 1}`);
    tokens.push({ kind, text: match, start: i, end: i + match.length });
    i += match.length;
  }
  tokens.push({ kind: "end", text: "", start: text.length, end: text.length });
  return tokens;
}

/** Recursive descent, with Python's precedence: or < and < not < comparisons < + - < * / // % < unary < **. */
class Parser {
  private i = 0;
  private readonly tokens: readonly Token[];
  constructor(tokens: readonly Token[]) {
    this.tokens = tokens;
  }

  private peek(): Token {
    return this.tokens[this.i] as Token;
  }
  private take(): Token {
    return this.tokens[this.i++] as Token;
  }
  private accept(text: string): boolean {
    const t = this.peek();
    if ((t.kind === "op" || t.kind === "name") && t.text === text) {
      this.i++;
      return true;
    }
    return false;
  }

  parse(): Node {
    const node = this.or();
    const t = this.peek();
    if (t.kind !== "end")
      throw new ConstraintSyntaxError(`unexpected ${JSON.stringify(t.text)} at ${t.start + 1}`);
    return node;
  }
  private or(): Node {
    let left = this.and();
    while (this.accept("or")) left = { t: "bin", op: "or", left, right: this.and() };
    return left;
  }
  private and(): Node {
    let left = this.not();
    while (this.accept("and")) left = { t: "bin", op: "and", left, right: this.not() };
    return left;
  }
  private not(): Node {
    return this.accept("not") ? { t: "unary", op: "not", arg: this.not() } : this.comparison();
  }
  private comparison(): Node {
    const first = this.arith();
    const rest: [string, Node][] = [];
    for (;;) {
      const t = this.peek();
      if (t.kind !== "op" || !["==", "!=", "<", "<=", ">", ">="].includes(t.text)) break;
      this.take();
      rest.push([t.text, this.arith()]);
    }
    return rest.length === 0 ? first : { t: "cmp", first, rest };
  }
  private arith(): Node {
    let left = this.term();
    for (let t = this.peek(); t.kind === "op" && (t.text === "+" || t.text === "-"); t = this.peek()) {
      this.take();
      left = { t: "bin", op: t.text, left, right: this.term() };
    }
    return left;
  }
  private term(): Node {
    let left = this.factor();
    for (let t = this.peek(); t.kind === "op" && ["*", "/", "//", "%"].includes(t.text); t = this.peek()) {
      this.take();
      left = { t: "bin", op: t.text, left, right: this.factor() };
    }
    return left;
  }
  private factor(): Node {
    const t = this.peek();
    if (t.kind === "op" && (t.text === "-" || t.text === "+")) {
      this.take();
      return { t: "unary", op: t.text, arg: this.factor() };
    }
    return this.power();
  }
  private power(): Node {
    const base = this.atom();
    return this.accept("**") ? { t: "bin", op: "**", left: base, right: this.factor() } : base;
  }
  private atom(): Node {
    const t = this.take();
    if (t.kind === "num") return { t: "lit", value: Number(t.text.replaceAll("_", "")) };
    if (t.kind === "str") return { t: "lit", value: t.text.slice(1, -1) };
    if (t.kind === "op" && t.text === "(") {
      const inner = this.or();
      if (!this.accept(")")) throw new ConstraintSyntaxError(`missing ) at ${this.peek().start + 1}`);
      return inner;
    }
    if (t.kind === "name" && (t.text === "True" || t.text === "False"))
      return { t: "lit", value: t.text === "True" };
    if (t.kind === "name" && !KEYWORDS.has(t.text)) {
      if (!this.accept("(")) return { t: "name", name: t.text };
      if (!FUNCTIONS.has(t.text))
        throw new ConstraintSyntaxError(`unknown function ${t.text} (allowed: ${[...FUNCTIONS].join(", ")})`);
      const args: Node[] = [];
      if (!this.accept(")")) {
        do args.push(this.or());
        while (this.accept(","));
        if (!this.accept(")")) throw new ConstraintSyntaxError(`missing ) after the arguments of ${t.text}`);
      }
      return { t: "call", fn: t.text, args };
    }
    throw new ConstraintSyntaxError(
      t.kind === "end"
        ? "the expression ends too early"
        : `unexpected ${JSON.stringify(t.text)} at ${t.start + 1}`,
    );
  }
}

class ConstraintEvalError extends Error {}

function num(v: Value, what: string): number {
  if (typeof v === "number") return v;
  if (typeof v === "boolean") return v ? 1 : 0;
  throw new ConstraintEvalError(`${what} needs numbers, got ${JSON.stringify(v)}`);
}

function arithmetic(op: string, a: number, b: number): number {
  if ((op === "/" || op === "//" || op === "%") && b === 0) throw new ConstraintEvalError("division by zero");
  switch (op) {
    case "+":
      return a + b;
    case "-":
      return a - b;
    case "*":
      return a * b;
    case "/":
      return a / b;
    case "//":
      return Math.floor(a / b);
    case "%":
      return a - b * Math.floor(a / b); // Python: the result has the divisor's sign
    default:
      return a ** b;
  }
}

function compare(op: string, a: Value, b: Value): boolean {
  if (op === "==") return a === b;
  if (op === "!=") return a !== b;
  if (typeof a !== typeof b || typeof a === "boolean")
    throw new ConstraintEvalError(`cannot order ${JSON.stringify(a)} and ${JSON.stringify(b)}`);
  if (op === "<") return a < b;
  if (op === "<=") return a <= b;
  if (op === ">") return a > b;
  return a >= b;
}

function call(fn: string, args: readonly Value[]): Value {
  const nums = args.map((a) => num(a, fn));
  if ((fn === "min" || fn === "max") && nums.length === 0)
    throw new ConstraintEvalError(`${fn}() needs arguments`);
  if (fn !== "min" && fn !== "max" && nums.length !== 1 && !(fn === "round" && nums.length === 2))
    throw new ConstraintEvalError(`${fn}() takes one argument`);
  const x = nums[0] as number;
  switch (fn) {
    case "min":
      return Math.min(...nums);
    case "max":
      return Math.max(...nums);
    case "abs":
      return Math.abs(x);
    case "int":
      return Math.trunc(x);
    case "float":
      return x;
    default: {
      const scale = 10 ** (nums[1] ?? 0);
      return Math.round(x * scale) / scale;
    }
  }
}

function evaluate(node: Node, values: Readonly<Record<string, Value>>): Value {
  switch (node.t) {
    case "lit":
      return node.value;
    case "name": {
      const v = values[node.name];
      if (v === undefined) throw new ConstraintEvalError(`${node.name} has no value`);
      return v;
    }
    case "unary": {
      const v = evaluate(node.arg, values);
      if (node.op === "not") return !truthy(v);
      return node.op === "-" ? -num(v, "-") : num(v, "+");
    }
    case "bin": {
      if (node.op === "and" || node.op === "or") {
        const left = evaluate(node.left, values);
        if (node.op === "and" ? !truthy(left) : truthy(left)) return left;
        return evaluate(node.right, values);
      }
      const a = evaluate(node.left, values);
      const b = evaluate(node.right, values);
      if (node.op === "+" && typeof a === "string" && typeof b === "string") return a + b;
      return arithmetic(node.op, num(a, node.op), num(b, node.op));
    }
    case "cmp": {
      let left = evaluate(node.first, values);
      for (const [op, rightNode] of node.rest) {
        const right = evaluate(rightNode, values);
        if (!compare(op, left, right)) return false;
        left = right;
      }
      return true;
    }
    case "call":
      return call(
        node.fn,
        node.args.map((a) => evaluate(a, values)),
      );
  }
}

function truthy(v: Value): boolean {
  return typeof v === "string" ? v !== "" : Boolean(v);
}

function namesOf(node: Node, out: Set<string>): Set<string> {
  switch (node.t) {
    case "name":
      out.add(node.name);
      break;
    case "unary":
      namesOf(node.arg, out);
      break;
    case "bin":
      namesOf(node.left, out);
      namesOf(node.right, out);
      break;
    case "cmp":
      namesOf(node.first, out);
      for (const [, n] of node.rest) namesOf(n, out);
      break;
    case "call":
      for (const a of node.args) namesOf(a, out);
      break;
  }
  return out;
}

export interface ParsedConstraint {
  readonly text: string;
  /** The constant names it reads, in order of first use. */
  readonly names: readonly string[];
  /** True when it holds; a string saying why it cannot be evaluated (a missing name, division by zero). */
  test(values: Readonly<Record<string, Value>>): boolean | string;
}

const cache = new Map<string, ParsedConstraint>();

/** Parse a constraint; throws ConstraintSyntaxError with the position of the problem. */
export function parseConstraint(text: string): ParsedConstraint {
  const hit = cache.get(text);
  if (hit) return hit;
  const tree = new Parser(tokenize(text)).parse();
  const parsed: ParsedConstraint = {
    text,
    names: [...namesOf(tree, new Set())],
    test(values) {
      try {
        return truthy(evaluate(tree, values));
      } catch (error) {
        if (error instanceof ConstraintEvalError) return error.message;
        throw error;
      }
    },
  };
  if (cache.size > 1000) cache.clear();
  cache.set(text, parsed);
  return parsed;
}

/** `text` with the named constants replaced by their values (imported constants the run cannot change). */
export function inlineNames(text: string, values: Readonly<Record<string, number | string>>): string {
  let out = "";
  let at = 0;
  for (const t of tokenize(text)) {
    const v = t.kind === "name" ? values[t.text] : undefined;
    if (v === undefined) continue;
    out += text.slice(at, t.start) + (typeof v === "string" ? JSON.stringify(v) : String(v));
    at = t.end;
  }
  return out + text.slice(at);
}

/**
 * The constraints of `params` that `config` breaks, one sentence each (empty: all hold). Each
 * sentence names the constraint and the values it read.
 */
export function checkConstraints(params: readonly ParamSpec[], config: Config): string[] {
  const broken: string[] = [];
  const seen = new Set<string>();
  for (const p of params) {
    for (const text of p.constraints ?? []) {
      if (seen.has(text)) continue;
      seen.add(text);
      let parsed: ParsedConstraint;
      try {
        parsed = parseConstraint(text);
      } catch (error) {
        broken.push(`constraint ${JSON.stringify(text)} does not parse: ${(error as Error).message}`);
        continue;
      }
      const result = parsed.test(config);
      if (result === true) continue;
      const read = parsed.names.map((n) => `${n}=${config[n] === undefined ? "?" : String(config[n])}`);
      const why = result === false ? "is false" : `cannot be evaluated (${result})`;
      broken.push(`constraint ${JSON.stringify(text)} ${why} for ${read.join(", ")}`);
    }
  }
  return broken;
}
