// TypeScript's diagnostics, reworded for the sandbox. Some read badly as the compiler says them:
// a global the sandbox does not have (`console` gets "add the DOM library"), a capability the manifest
// does not declare (named after a type the author never wrote), and a wrong hook result,
// which `satisfies Mechanism` reports at the hook's name rather than at the `return` that is wrong,
// and a state type that is not JSON, which the compiler reports as a constraint pages long.
// Runs in the sandbox child, with the compiler's program; changes only the message and position.
import { ts } from "ts-morph";
import type { HookName } from "../mechanism-api/index.d.ts";
import type { SandboxError } from "./types.ts";

const HOOKS: readonly string[] = ["init", "guide", "suggest", "filter", "observe"] satisfies HookName[];

/** Globals a mechanism author reaches for, and what the sandbox offers instead. */
const MISSING_GLOBALS: ReadonlyMap<string, string> = new Map([
  ["console", "use ctx.log(message) (`mechanism test --verbose` shows the lines)"],
  ["setTimeout", "hooks are synchronous, there are no timers"],
  ["setInterval", "hooks are synchronous, there are no timers"],
  ["setImmediate", "hooks are synchronous, there are no timers"],
  ["queueMicrotask", "hooks are synchronous, there is no task queue"],
  ["fetch", "there is no network"],
  ["document", "there is no DOM: use only ctx"],
  ["navigator", "there is no DOM: use only ctx"],
  ["performance", "there is no clock: use ctx.iteration"],
  ["structuredClone", "copy with JSON.parse(JSON.stringify(value))"],
]);

const CANNOT_FIND_NAME = /^Cannot find name '([^']+)'/;
const NOT_DECLARED = /CapabilityNotDeclared<"(tabu|bandit|space)">/;

export interface Position {
  readonly line: number;
  readonly column: number;
}

/** A compile error from a diagnostic, with the sandbox's wording where it has one. */
export function describeDiagnostic(
  d: ts.Diagnostic,
  code: "syntax-error" | "type-error",
  checker: ts.TypeChecker | null,
): SandboxError {
  const text = ts.flattenDiagnosticMessageText(d.messageText, " ").slice(0, 1000);
  const where = d.file && d.start !== undefined ? position(d.file, d.start) : {};
  const base: SandboxError = { stage: "compile", code, message: `TS${d.code}: ${text}`, ...where };
  if (code !== "type-error" || !d.file || d.start === undefined) return base;
  const missing = CANNOT_FIND_NAME.exec(text)?.[1];
  const hint = missing === undefined ? undefined : MISSING_GLOBALS.get(missing);
  if (hint !== undefined)
    return { ...base, message: `TS${d.code}: ${missing} is not available in the sandbox: ${hint}` };
  const undeclared = NOT_DECLARED.exec(text)?.[1];
  if (undeclared !== undefined)
    return {
      ...base,
      message: `TS${d.code}: ctx.${undeclared} is used but not declared: add "${undeclared}" to manifest.capabilities (${text})`,
    };
  if (!checker) return base;
  return returnError(d, d.file, d.start, checker) ?? stateError(d, d.file, d.start, checker) ?? base;
}

/** Objects that survive no JSON round trip, by their type's name. */
const NOT_JSON_OBJECTS = new Set(["Set", "Map", "WeakSet", "WeakMap", "Date", "RegExp", "Promise", "Error"]);

/**
 * `Mechanism<S>` whose S is not JSON (TS2344 at the type argument): which part of S is not, e.g.
 * "state type State is not JSON: seen[].inner is a Set".
 */
function stateError(
  d: ts.Diagnostic,
  sf: ts.SourceFile,
  start: number,
  checker: ts.TypeChecker,
): SandboxError | null {
  if (d.code !== 2344) return null;
  let argument: ts.TypeNode | null = null;
  const visit = (node: ts.Node): void => {
    if (argument || start < node.getFullStart() || start >= node.getEnd()) return;
    const parent = node.parent;
    if (
      ts.isTypeNode(node) &&
      node.getStart(sf) === start &&
      parent &&
      ts.isTypeReferenceNode(parent) &&
      parent.typeName.getText(sf) === "Mechanism" &&
      parent.typeArguments?.[0] === node
    ) {
      argument = node;
      return;
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  if (!argument) return null;
  const node: ts.TypeNode = argument;
  const found = notJson(checker.getTypeFromTypeNode(node), checker, "", 0);
  if (!found) return null;
  const where = found.path === "" ? "it" : found.path;
  return {
    stage: "compile",
    code: "type-error",
    message:
      `TS${d.code}: state type ${node.getText(sf)} is not JSON: ${where} is ${found.what} ` +
      "(state is stored as JSON: use objects, arrays, strings, numbers, booleans and null, e.g. an array for a set)",
    ...position(sf, start),
  };
}

/** The first part of `type` that is not JSON (depth-first), with its path; null when it all is. */
function notJson(
  type: ts.Type,
  checker: ts.TypeChecker,
  path: string,
  depth: number,
): { path: string; what: string } | null {
  if (depth > 8) return null;
  if (type.isUnion()) {
    for (const member of type.types) {
      const found = notJson(member, checker, path, depth + 1);
      if (found) return found;
    }
    return null;
  }
  if (type.flags & ts.TypeFlags.BigIntLike) return { path, what: "a bigint" };
  if (type.flags & ts.TypeFlags.ESSymbolLike) return { path, what: "a symbol" };
  if (!(type.flags & ts.TypeFlags.Object)) return null;
  if (type.getCallSignatures().length > 0) return { path, what: "a function" };
  const name = type.getSymbol()?.getName();
  if (name !== undefined && NOT_JSON_OBJECTS.has(name)) return { path, what: `a ${name}` };
  if (checker.isArrayType(type) || checker.isTupleType(type)) {
    for (const element of checker.getTypeArguments(type as ts.TypeReference)) {
      const found = notJson(element, checker, `${path}[]`, depth + 1);
      if (found) return found;
    }
    return null;
  }
  for (const property of type.getProperties()) {
    const inner = `${path === "" ? "" : `${path}.`}${property.getName()}`;
    const found = notJson(checker.getTypeOfSymbol(property), checker, inner, depth + 1);
    if (found) return found;
  }
  return null;
}

export function position(sf: ts.SourceFile, pos: number): Position {
  const { line, character } = sf.getLineAndCharacterOfPosition(Math.min(Math.max(0, pos), sf.text.length));
  return { line: line + 1, column: character + 1 };
}

/**
 * A diagnostic at a hook's name whose function has a `return` that does not give the hook's result
 * type: the error at that return (the first such), with the part of the message about the value.
 */
function returnError(
  d: ts.Diagnostic,
  sf: ts.SourceFile,
  start: number,
  checker: ts.TypeChecker,
): SandboxError | null {
  const hook = hookAt(sf, start);
  if (!hook) return null;
  const expected = expectedReturn(hook, checker);
  if (!expected) return null;
  for (const value of returnedValues(hook.fn)) {
    const actual = checker.getTypeAtLocation(value.expression);
    if (checker.isTypeAssignableTo(actual, expected)) continue;
    // A Set, Map, Date … is the commonest cause and the compiler's detail does not say it: say so.
    const objectName = actual.getSymbol()?.getName();
    const detail =
      objectName !== undefined && NOT_JSON_OBJECTS.has(objectName)
        ? `a ${objectName} is not JSON: keep arrays and plain objects`
        : deepest(d.messageText);
    const message =
      `TS${d.code}: ${hook.name} must return ${checker.typeToString(expected)}; ` +
      `this returns ${checker.typeToString(actual)}${detail ? ` (${detail})` : ""}`;
    return {
      stage: "compile",
      code: "type-error",
      message: message.slice(0, 1000),
      ...position(sf, value.at.getStart(sf)),
    };
  }
  return null;
}

/** The most specific line of a chained message (the first chain's leaf), if it is chained. */
function deepest(text: string | ts.DiagnosticMessageChain): string | null {
  if (typeof text === "string" || !text.next?.length) return null;
  let node = text.next[0]!;
  while (node.next?.length) node = node.next[0]!;
  return node.messageText;
}

interface HookNode {
  readonly name: string;
  readonly element: ts.ObjectLiteralElementLike;
  readonly fn: ts.FunctionLikeDeclaration;
}

/** The hook (a method or a function-valued property of an object literal) whose name starts at `start`. */
function hookAt(sf: ts.SourceFile, start: number): HookNode | null {
  let found: HookNode | null = null;
  const visit = (node: ts.Node): void => {
    if (found || start < node.getFullStart() || start >= node.getEnd()) return;
    if (
      (ts.isMethodDeclaration(node) || ts.isPropertyAssignment(node)) &&
      ts.isObjectLiteralExpression(node.parent) &&
      (ts.isIdentifier(node.name) || ts.isStringLiteral(node.name)) &&
      HOOKS.includes(node.name.text) &&
      node.name.getStart(sf) === start
    ) {
      const fn = ts.isMethodDeclaration(node) ? node : functionOf(node.initializer);
      if (fn) found = { name: node.name.text, element: node, fn };
      return;
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return found;
}

function functionOf(expr: ts.Expression): ts.FunctionLikeDeclaration | null {
  let e = expr;
  while (ts.isParenthesizedExpression(e)) e = e.expression;
  return ts.isArrowFunction(e) || ts.isFunctionExpression(e) ? e : null;
}

/** The result type the object literal's contextual type (e.g. `Mechanism<S>`) expects of the hook. */
function expectedReturn(hook: HookNode, checker: ts.TypeChecker): ts.Type | null {
  const literal = hook.element.parent;
  if (!ts.isObjectLiteralExpression(literal)) return null;
  const contextual = checker.getContextualType(literal);
  const property = contextual?.getProperty(hook.name);
  if (!property) return null;
  const type = checker.getNonNullableType(checker.getTypeOfSymbol(property));
  const signature = type.getCallSignatures()[0];
  return signature ? signature.getReturnType() : null;
}

/** The values the function returns: each `return x` outside nested functions, or an arrow's expression body. */
function returnedValues(fn: ts.FunctionLikeDeclaration): { expression: ts.Expression; at: ts.Node }[] {
  const body = fn.body;
  if (!body) return [];
  if (!ts.isBlock(body)) return [{ expression: body, at: body }];
  const out: { expression: ts.Expression; at: ts.Node }[] = [];
  const visit = (node: ts.Node): void => {
    if (ts.isFunctionLike(node) || ts.isClassLike(node)) return;
    if (ts.isReturnStatement(node) && node.expression) out.push({ expression: node.expression, at: node });
    ts.forEachChild(node, visit);
  };
  ts.forEachChild(body, visit);
  return out;
}
